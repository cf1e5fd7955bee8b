"""The like-market simulator: a platform day with a labelled like market inside it.

``simulate(cfg, seed)`` returns the events (input contract) and the truth (labels) as two Arrow
tables, kept apart so that a scan never sees a label. Same scenario, seed and version give the
same tables, row for row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from likelens.arrays import distinct
from likelens.schema import ACTIONS
from likelens.sim import zoo
from likelens.sim.config import Config, load_scenario, scenario_names
from likelens.sim.events import ACTION, CAUSES, KIND, KINDS, Batch
from likelens.sim.market import Orders, build_supplies, camouflage_and_nurture, draw_orders, fulfil
from likelens.sim.organic import organic_day
from likelens.sim.texts import build_texts
from likelens.sim.world import World, build_world

__all__ = ["SimResult", "load_scenario", "scenario_names", "simulate", "write"]


@dataclass(frozen=True)
class SimResult:
    """Events in the input contract, their labels, latent video quality, and the knobs."""

    events: pa.Table
    truth: pa.Table
    videos: pa.Table
    config: Config | None = None


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


def _mix(x: np.ndarray, salt: int) -> np.ndarray:
    """A deterministic 64-bit scramble (splitmix64) of ``x``: stable pseudo-random per value."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _ip_column(day: Batch, rng: np.random.Generator, platform: dict) -> pa.Array:
    """Client addresses as text. A share ``ipv6_frac`` of the /24 ranges is rendered as IPv6
    mobile traffic: every range lies in one of a few carrier /48s shared by thousands; a phone
    of one's own gets a /64 of its own, while a farm's or a datacenter's accounts share the /64
    of their range; interface ids change from event to event (privacy addresses)."""
    text = _ip_text(day.ip)
    frac = float(platform["ipv6_frac"])
    if frac <= 0:
        return text
    salt = int(rng.integers(1, 2**31))
    prefix = (day.ip >> np.uint32(8)).astype(np.uint64)
    v6 = (_mix(prefix, salt) % np.uint64(10_000)).astype(np.int64) < frac * 10_000
    if not v6.any():
        return text
    idx = np.flatnonzero(v6)
    carriers = 2 + int(rng.integers(0, 5))
    carrier = (_mix(prefix[idx], salt + 1) % np.uint64(carriers)).astype(np.int64)
    own = day.kind[idx] == KIND["organic"]
    own |= day.kind[idx] == KIND["crowd"]
    subnet_of = np.where(own, _mix(day.user[idx].astype(np.uint64), salt + 2),
                         _mix(prefix[idx], salt + 3))
    iid = rng.integers(0, 2**63, size=(len(idx),), dtype=np.int64).astype(np.uint64)
    hexes = [f"2408:{0x8000 + 0x1000 * k + int(rng.integers(0, 0x100)):x}:"
             f"{int(rng.integers(0, 0x10000)):x}" for k in range(carriers)]  # carrier /48s
    sub = (subnet_of % np.uint64(1 << 16)).astype(np.int64)
    words = [(iid >> np.uint64(s)) & np.uint64(0xFFFF) for s in (48, 32, 16, 0)]
    v6_text = [f"{hexes[c]}:{s:x}:{a:x}:{b:x}:{cc:x}:{d:x}" for c, s, a, b, cc, d in zip(
        carrier.tolist(), sub.tolist(), *(w.tolist() for w in words), strict=True)]
    out = np.array(text.to_pylist(), dtype=object)
    out[idx] = v6_text
    return pa.array(out, pa.string())


def _id_column(ids: np.ndarray, rng: np.random.Generator, platform: dict, kind: str
               ) -> np.ndarray:
    """Ids as the platform writes them: opaque integers, or opaque strings."""
    if platform["ids"] == "int":
        return ids
    style = int(rng.integers(0, 3))
    salt = int(rng.integers(1, 2**31))
    h = _mix(ids.astype(np.uint64), salt)
    if style == 0:
        return np.array([f"{kind}_{x:016x}" for x in h.tolist()], dtype=object)
    if style == 1:
        return np.array([f"{x:x}"[:12].upper() for x in h.tolist()], dtype=object)
    return np.array([f"{kind[0]}{x % 10**13:013d}" for x in h.tolist()], dtype=object)


def simulate(cfg: Config, seed: int) -> SimResult:
    """Draw one day of the scenario ``cfg`` with ``seed``."""
    if cfg.get("randomise"):
        cfg = zoo.draw(cfg, seed)
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
    plat = cfg["platform"]
    user_ids = _opaque_ids(rng, len(account_region))
    video_ids = _opaque_ids(rng, world.n_videos + len(world.live_creator))
    device_ids = _opaque_ids(rng, n_devices)
    if plat["engagement_only"]:
        day = day.take(np.flatnonzero(day.action != ACTION["view"]))
    if plat["watch_report_prob"] < 1:  # clients that do not report how long a view played
        lost = (day.action == ACTION["view"]) & (rng.random(day.n) >= plat["watch_report_prob"])
        day.watch = np.where(lost, -1, day.watch)
    user_ids = _id_column(user_ids, rng, plat, "user")
    video_ids = _id_column(video_ids, rng, plat, "video")
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
        "ip": _ip_column(day, rng, plat),
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
        "organic_cause": pa.array(np.array(CAUSES, dtype=object)[day.cause], pa.string(),
                                  mask=fake),
    })
    videos = pa.table({"video_id": pa.array(video_ids[: world.n_videos]),
                       "creator_id": pa.array(user_ids[world.video_creator]),
                       "quality": pa.array(world.quality)})
    return SimResult(events, truth, videos, cfg)


def write(result: SimResult, out: Path) -> dict[str, Path]:
    """Write events.parquet, truth.parquet, video_quality.parquet and world.json (the knobs the
    world was drawn with: labels too, kept apart from the events) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"events": out / "events.parquet", "truth": out / "truth.parquet",
             "videos": out / "video_quality.parquet", "world": out / "world.json"}
    pq.write_table(result.events, paths["events"])
    pq.write_table(result.truth, paths["truth"])
    pq.write_table(result.videos, paths["videos"])
    paths["world"].write_text(json.dumps(result.config, indent=2, sort_keys=True,
                                         default=str) + "\n", encoding="utf-8")
    return paths
