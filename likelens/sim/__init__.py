"""The like-market simulator: a platform day with a labelled like market inside it.

``simulate(cfg, seed)`` returns the events (input contract) and the truth (labels) as two Arrow
tables, kept apart so that a scan never sees a label. Same scenario, seed and version give the
same tables, row for row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from likelens.arrays import distinct
from likelens.schema import ACTIONS
from likelens.sim.config import Config, load_scenario, scenario_names
from likelens.sim.events import ACTION, KIND, KINDS, Batch
from likelens.sim.market import Orders, build_supplies, camouflage_and_nurture, draw_orders, fulfil
from likelens.sim.organic import organic_day
from likelens.sim.texts import build_texts
from likelens.sim.world import World, build_world

__all__ = ["SimResult", "load_scenario", "scenario_names", "simulate", "write"]


@dataclass(frozen=True)
class SimResult:
    """Events in the input contract, their labels, and latent video quality."""

    events: pa.Table
    truth: pa.Table
    videos: pa.Table


def _dedupe(day: Batch) -> Batch:
    """One like per (account, video) and one follow per (account, creator), the first one."""
    once = np.flatnonzero(np.isin(day.action, [ACTION["like"], ACTION["follow"]]))
    key_v = np.where(day.action[once] == ACTION["follow"], -1, day.video[once])
    order = np.lexsort((day.ts[once], key_v, day.creator[once], day.user[once],
                        day.action[once]))
    o = once[order]
    k = key_v[order]
    same = np.zeros(len(o), dtype=bool)
    same[1:] = ((day.action[o[1:]] == day.action[o[:-1]]) & (day.user[o[1:]] == day.user[o[:-1]])
                & (k[1:] == k[:-1]) & (day.creator[o[1:]] == day.creator[o[:-1]]))
    keep = np.ones(day.n, dtype=bool)
    keep[o[same]] = False
    return day.take(np.flatnonzero(keep))


def _opaque_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct random ids, so that no id range tells organic from fake."""
    ids = distinct(rng.integers(10**9, 10**12, size=int(n * 1.1) + 16))
    rng.shuffle(ids)
    return ids[:n]


def _ip_text(ip: np.ndarray) -> pa.Array:
    parts = [pa.array(((ip >> s) & 255).astype(np.int64)).cast(pa.string())
             for s in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*parts, ".")


def simulate(cfg: Config, seed: int) -> SimResult:
    """Draw one day of the scenario ``cfg`` with ``seed``."""
    cfg = {**cfg, "seed": seed}
    rng = np.random.default_rng(seed)
    world = build_world(cfg, rng)
    next_account, next_device = world.n_users, world.n_devices
    active = np.ones(world.n_users, dtype=bool)
    orders = None
    parts: list[Batch] = []
    account_region = world.region
    if cfg["market"]["enabled"]:
        sups, sold, next_device = build_supplies(world, rng, next_account, next_device)
        next_account += len(sups["bot"].accounts)
        account_region = np.concatenate([world.region, sups["bot"].region])
        active[sold] = False  # sold outright: the owner no longer uses it
        organic = organic_day(world, rng, active)
        organic = _assign_network(world, organic)
        n_likes = int((organic.action == ACTION["like"]).sum())
        share = float(cfg["market"]["fake_like_share"])
        orders = draw_orders(world, rng, int(n_likes * share / (1 - share) * 0.85))
        parts = [organic, fulfil(world, rng, orders, sups),
                 camouflage_and_nurture(world, rng, sups)]
    else:
        parts = [_assign_network(world, organic_day(world, rng, active))]
    day = _dedupe(Batch.concat(parts))
    day = day.take(np.argsort(day.ts, kind="stable"))
    return _tables(world, cfg, rng, day, orders, account_region, next_device)


def _assign_network(world: World, b: Batch) -> Batch:
    """Organic events come from the user's own phone and current address."""
    b.device = world.device[b.user]
    b.ip = world.ip_at(b.user, b.ts)
    return b


def _tables(world: World, cfg: Config, rng: np.random.Generator, day: Batch,
            orders: Orders | None, account_region: np.ndarray, n_devices: int) -> SimResult:
    user_ids = _opaque_ids(rng, len(account_region))
    video_ids = _opaque_ids(rng, world.n_videos + len(world.live_creator))
    device_ids = _opaque_ids(rng, n_devices)
    texts = np.array(build_texts(int(cfg["seed"])), dtype=object)
    n = day.n
    is_video = day.video >= 0
    video_ms = np.where(is_video & (day.video < world.n_videos),
                        world.video_ms[np.clip(day.video, 0, world.n_videos - 1)], -1)
    mask_ms = video_ms < 0
    regions = np.array(cfg["world"]["regions"], dtype=object)
    events = pa.table({
        "event_id": pa.array(np.arange(n, dtype=np.int64)),
        "ts": pa.array(day.ts),
        "user_id": pa.array(user_ids[day.user]),
        "action": pa.array(np.array(ACTIONS, dtype=object)[day.action], pa.string()),
        "video_id": pa.array(np.where(is_video, video_ids[np.maximum(day.video, 0)], 0),
                             mask=~is_video),
        "creator_id": pa.array(user_ids[day.creator]),
        "watch_ms": pa.array(day.watch, mask=day.watch < 0),
        "video_ms": pa.array(video_ms, mask=mask_ms),
        "ip": _ip_text(day.ip),
        "device_id": pa.array(device_ids[day.device]).cast(pa.string()),
        "region": pa.array(regions[account_region[day.user]], pa.string()),
        "text": pa.array(np.where(day.text >= 0, texts[np.maximum(day.text, 0)], None),
                         pa.string()),
    })
    fake = day.kind != KIND["organic"]
    has_order = day.order >= 0
    o = np.maximum(day.order, 0)
    package = orders.package[o] if orders is not None else np.zeros(n, np.int64)
    price = orders.price[o] if orders is not None else np.zeros(n)
    truth = pa.table({
        "event_id": events["event_id"],
        "fake": pa.array(fake),
        "kind": pa.array(np.array(KINDS, dtype=object)[day.kind], pa.string()),
        "order_id": pa.array(day.order, mask=~has_order),
        "package": pa.array(np.asarray(package, np.int64), mask=~has_order),
        "price": pa.array(np.asarray(price, float), mask=~has_order),
    })
    videos = pa.table({"video_id": pa.array(video_ids[: world.n_videos]),
                       "creator_id": pa.array(user_ids[world.video_creator]),
                       "quality": pa.array(world.quality)})
    return SimResult(events, truth, videos)


def write(result: SimResult, out: Path) -> dict[str, Path]:
    """Write events.parquet, truth.parquet and video_quality.parquet into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"events": out / "events.parquet", "truth": out / "truth.parquet",
             "videos": out / "video_quality.parquet"}
    pq.write_table(result.events, paths["events"])
    pq.write_table(result.truth, paths["truth"])
    pq.write_table(result.videos, paths["videos"])
    return paths
