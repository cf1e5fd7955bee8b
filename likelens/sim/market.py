"""The like market, inside the simulator only: orders, delivery schedules and three kinds of supply.

Sellers take orders (a package of likes, followers or a live-room crowd for a customer's video,
maybe region-pinned, maybe bundled with comments and shares) and deliver them on a schedule from
one of three supplies:

- bot networks: new accounts on a few reused emulator images, datacenter ranges or rotating
  residential proxies, tiny watch or none, and camouflage likes on popular videos;
- account pools: aged accounts with real history, bought or rented, run from phone farms with
  several accounts per device on a few network ranges, nurtured with browsing; the owner of a
  rented account may still use it from their own phone (those events stay organic);
- crowd workers: real people on their own phones who open the task video from a task list, watch
  the required minimum, like, and paste a templated comment.

Everything here is labelled synthetic data for testing detectors. Nothing talks to a platform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from likelens.sim.events import ACTION, Batch
from likelens.sim.organic import pick_videos
from likelens.sim.texts import TEMPLATES, organic_comment_ids, templated_comment_ids
from likelens.sim.world import HOUR, World, random_prefixes

MINUTE = 60_000


@dataclass
class Supply:
    """Accounts a seller can deliver from, with where each acts from."""

    kind: str
    accounts: np.ndarray   # account indices
    device: np.ndarray     # device index per account
    region: np.ndarray     # int8 per account
    ranges: np.ndarray     # /24 prefixes the supply's traffic comes from (empty: own addresses)


@dataclass
class Orders:
    """What was sold: one row per order."""

    kind: np.ndarray       # "like" | "follow" | "live"
    supply: np.ndarray     # "bot" | "pool" | "crowd"
    package: np.ndarray
    price: np.ndarray
    video: np.ndarray      # target video (or live room index) ; -1 for follow orders
    creator: np.ndarray
    start: np.ndarray
    delivery: np.ndarray


def not_in_pool(world: World, pool_accounts: np.ndarray) -> np.ndarray:
    """Organic users the farms did not buy: who can still take crowd tasks on their own phone."""
    taken = np.zeros(world.n_users, dtype=bool)
    taken[pool_accounts] = True
    return np.flatnonzero(~taken)


def build_supplies(world: World, rng: np.random.Generator, next_account: int, next_device: int
                   ) -> tuple[dict[str, Supply], np.ndarray, int]:
    """Create the bot network, the pool and the crowd. Returns supplies, pool owners' state, ids."""
    cfg = world.cfg["supply"]
    n, biggest = world.n_users, max(world.cfg["market"]["packages"])
    n_bot = max(int(cfg["bot"]["accounts_per_1k_users"] * n / 1000), int(1.3 * biggest))
    bot_acc = np.arange(next_account, next_account + n_bot)
    images = next_device + np.arange(cfg["bot"]["device_images"])
    bot_dev = rng.choice(images, size=n_bot)
    dc = random_prefixes(rng, cfg["bot"]["datacenter_ranges"], (47, 120, 139, 150))
    bots = Supply("bot", bot_acc, bot_dev, rng.integers(0, len(world.cfg["world"]["regions"]),
                                                        n_bot).astype(np.int8), dc)
    next_device += len(images)

    # Pool: aged organic accounts bought or rented, moved onto farm phones.
    n_pool = min(max(int(cfg["pool"]["accounts_per_1k_users"] * n / 1000), int(1.2 * biggest)),
                 n // 20)
    pool_acc = np.sort(rng.choice(world.n_users, size=n_pool, replace=False))
    lo, hi = cfg["pool"]["accounts_per_device"]
    per_dev = rng.integers(lo, hi + 1, size=n_pool)
    farm_dev = next_device + np.repeat(np.arange(n_pool), per_dev)[:n_pool]
    next_device = int(farm_dev.max()) + 1
    farm_ranges = random_prefixes(rng, cfg["pool"]["farm_ranges"], (27, 42, 171, 175))
    pool = Supply("pool", pool_acc, farm_dev, world.region[pool_acc], farm_ranges)

    # Crowd: regular workers among real users, on their own phones and addresses.
    free = not_in_pool(world, pool_acc)
    n_crowd = min(max(int(cfg["crowd"]["workers_per_1k_users"] * n / 1000), int(0.6 * biggest)),
                  len(free) // 3)
    crowd_acc = np.sort(rng.choice(free, size=n_crowd, replace=False))
    crowd = Supply("crowd", crowd_acc, world.device[crowd_acc], world.region[crowd_acc],
                   np.empty(0, np.uint32))
    owner_active = rng.random(n_pool) < cfg["pool"]["owner_use_prob"]
    return {"bot": bots, "pool": pool, "crowd": crowd}, pool_acc[~owner_active], next_device


def draw_orders(world: World, rng: np.random.Generator, target_likes: int) -> Orders:
    """Orders until the sold likes reach ``target_likes``; followers and live crowds beside them."""
    m = world.cfg["market"]
    pk = np.array(m["packages"])
    pw = np.array(m["package_weights"], dtype=float)
    prices = np.array(m["prices"], dtype=float)
    fans = world.fans.astype(float)
    cw = (1.0 + fans) ** (-0.5 * m["small_creator_bias"])
    cw /= cw.sum()
    mean_pk = float((pk * pw).sum() / pw.sum())
    n = max(1, int(target_likes / mean_pk * 1.05))
    idx = rng.choice(len(pk), size=n, p=pw / pw.sum())
    package, price = pk[idx], prices[idx]
    kind = rng.choice(["like", "follow", "live"], size=n,
                      p=[1 - m["follower_order_frac"] - m["live_order_frac"],
                         m["follower_order_frac"], m["live_order_frac"]])
    supply = rng.choice(m["supply"], size=n,
                        p=np.array(m["supply_weights"]) / sum(m["supply_weights"]))
    creator = world.creators[rng.choice(len(world.creators), size=n, p=cw)]
    repeat = rng.random(n) < m["repeat_customer_prob"]
    for i in range(1, n):  # repeat customers come back with another order
        if repeat[i]:
            creator[i] = creator[rng.integers(0, i)]
    start = world.start_ms + rng.integers(0, world.end_ms - world.start_ms - HOUR, n)
    video = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        if kind[i] == "like":
            mine = np.flatnonzero(world.video_creator == creator[i])
            v = int(rng.choice(mine))
            video[i] = v
            start[i] = max(int(start[i]), int(world.publish[v]) + int(rng.integers(0, HOUR)))
        elif kind[i] == "live":
            rooms = np.flatnonzero(world.live_creator == creator[i])
            if len(rooms) == 0:
                kind[i] = "follow"
            else:
                video[i] = world.n_videos + int(rng.choice(rooms))
    delivery = rng.choice(m["delivery"], size=n,
                          p=np.array(m["delivery_weights"]) / sum(m["delivery_weights"]))
    delivery = np.where(kind == "live", "10min", delivery)
    start = np.minimum(start, world.end_ms - HOUR)
    return Orders(kind, supply, package, price, video, creator, start, delivery)


def delivery_times(rng: np.random.Generator, start: int, n: int, mode: str, adapt: dict,
                   end: int) -> np.ndarray:
    """When each of an order's ``n`` units lands."""
    slow = float(adapt["drip_slowdown"])
    if mode == "10min":
        t = rng.uniform(0, 10 * MINUTE * slow, n)
    elif mode == "1h":
        t = rng.uniform(0, HOUR * slow, n)
    elif mode == "drip24h":
        t = rng.uniform(0, 24 * HOUR * slow, n)
    else:  # slots: a few five-minute slots the customer picked
        slots = rng.integers(0, 20, size=int(rng.integers(2, 5))) * HOUR
        t = rng.choice(slots, n) + rng.uniform(0, 5 * MINUTE, n)
    jitter = float(adapt["jitter"])
    if jitter > 0:
        t = t + rng.exponential(jitter * 20 * MINUTE, n)
    return np.minimum(start + t.astype(np.int64), end - 1)


def _addresses(world: World, rng: np.random.Generator, sup: Supply, acc_pos: np.ndarray,
               ts: np.ndarray) -> np.ndarray:
    """Where each delivered unit comes from, by supply kind."""
    n = len(acc_pos)
    if sup.kind == "crowd":
        return world.ip_at(sup.accounts[acc_pos], ts)
    host = rng.integers(2, 255, n, dtype=np.uint32)
    if sup.kind == "bot":
        proxy = (acc_pos % 10) < int(world.cfg["supply"]["bot"]["proxy_frac"] * 10)
        res = world.residential[rng.integers(0, len(world.residential), n)]
        dc = sup.ranges[acc_pos % len(sup.ranges)]
        return np.where(proxy, res, dc) | host
    return sup.ranges[(sup.device[acc_pos] % len(sup.ranges))] | host


def fulfil(world: World, rng: np.random.Generator, orders: Orders, sups: dict[str, Supply],
           ) -> Batch:
    """Every event the sellers create for the orders, labelled with the order."""
    cfg, adapt, m = world.cfg["supply"], world.cfg["adapt"], world.cfg["market"]
    out: list[Batch] = []
    n_regions = len(world.cfg["world"]["regions"])
    templates_by_seller = {k: rng.choice(len(TEMPLATES), size=3, replace=False) for k in sups}
    casual_pool = not_in_pool(world, sups["pool"].accounts)
    for o in range(len(orders.package)):
        sup = sups[str(orders.supply[o])]
        size = int(orders.package[o])
        candidates = np.arange(len(sup.accounts))
        if rng.random() < m["region_pin_prob"]:
            pinned = candidates[sup.region == rng.integers(0, n_regions)]
            if len(pinned) >= size:
                candidates = pinned
        size = min(size, len(candidates))
        pos = rng.choice(candidates, size=size, replace=False)
        t = delivery_times(rng, int(orders.start[o]), size, str(orders.delivery[o]), adapt,
                           world.end_ms)
        acc = sup.accounts[pos]
        dev = sup.device[pos]
        ip = _addresses(world, rng, sup, pos, t)
        if sup.kind == "crowd":  # part regular workers, part casual ones from the whole world
            casual = np.flatnonzero(rng.random(size) > cfg["crowd"]["task_participation"])
            acc[casual] = rng.choice(casual_pool, size=len(casual))
            dev[casual] = world.device[acc[casual]]
            ip[casual] = world.ip_at(acc[casual], t[casual])
        common = dict(kind=sup.kind, order=o, creator=int(orders.creator[o]))
        if orders.kind[o] == "follow":
            out.append(Batch.make(size, ts=t, user=acc, action=ACTION["follow"], device=dev,
                                  ip=ip, **common))
            continue
        video = int(orders.video[o])
        if orders.kind[o] == "live":
            out.append(Batch.make(size, ts=t, user=acc, action=ACTION["live_join"], video=video,
                                  device=dev, ip=ip, **common))
            continue
        dur = world.video_ms[video]
        if sup.kind == "bot":
            lo, hi = cfg["bot"]["watch_ms"]
            watch = rng.integers(lo, hi, size)
            lw = float(adapt["longer_watch"])
            if lw > 0:
                watch = np.maximum(watch, (dur * rng.uniform(0, lw, size)).astype(np.int64))
            has_view = rng.random(size) < cfg["bot"]["view_before_prob"]
        elif sup.kind == "pool":
            lo, hi = cfg["pool"]["watch_frac"]
            hi = hi + (1 - hi) * float(adapt["longer_watch"]) * 0.5
            watch = (dur * rng.uniform(lo, hi, size)).astype(np.int64) + 500
            has_view = np.ones(size, dtype=bool)
        else:
            need = cfg["crowd"]["min_watch_s"] * 1000
            watch = np.maximum(need + rng.integers(0, 6000, size),
                               (dur * rng.uniform(0.05, 0.6, size)).astype(np.int64))
            watch = np.minimum(watch, np.maximum(dur, need + 2000))
            has_view = np.ones(size, dtype=bool)
        like_ts = t
        view_ts = t - watch - rng.integers(200, 1500, size)
        vi = np.flatnonzero(has_view)
        out.append(Batch.make(len(vi), ts=view_ts[vi], user=acc[vi], action=ACTION["view"],
                              video=video, watch=watch[vi], device=dev[vi], ip=ip[vi], **common))
        out.append(Batch.make(size, ts=like_ts, user=acc, action=ACTION["like"], video=video,
                              device=dev, ip=ip, **common))
        for action, p in (("comment", m["bundle_comment_prob"]),
                          ("share", m["bundle_share_prob"])):
            if rng.random() < p:
                b = Batch.make(size, ts=like_ts + rng.integers(1_000, 8_000, size), user=acc,
                               action=ACTION[action], video=video, device=dev, ip=ip, **common)
                if action == "comment":
                    b.text = templated_comment_ids(rng, size, templates_by_seller[sup.kind])
                    if adapt["organic_comments"] > 0:  # written to look like real comments
                        mine = rng.random(size) < adapt["organic_comments"]
                        b.text[mine] = organic_comment_ids(rng, int(mine.sum()))
                out.append(b)
    return Batch.concat(out) if out else Batch.make(0)


def camouflage_and_nurture(world: World, rng: np.random.Generator, sups: dict[str, Supply],
                           ) -> Batch:
    """Bots like popular videos to look normal; farms browse with pool accounts to nurture them."""
    cfg, adapt = world.cfg["supply"], world.cfg["adapt"]
    out = []
    bots = sups["bot"]
    n_cam = rng.poisson(cfg["bot"]["camouflage_per_bot"] * adapt["camouflage_boost"],
                        len(bots.accounts))
    pos = np.repeat(np.arange(len(bots.accounts)), n_cam)
    t = world.start_ms + rng.integers(0, world.end_ms - world.start_ms, len(pos))
    top = np.argsort(world.popularity)[::-1][: max(20, world.n_videos // 50)]
    top = top[world.publish[top] < world.start_ms]
    video = top[rng.integers(0, len(top), len(pos))]
    ip = _addresses(world, rng, bots, pos, t)
    watch = rng.integers(*cfg["bot"]["watch_ms"], len(pos))
    common = dict(kind="bot", user=bots.accounts[pos], video=video,
                  creator=world.video_creator[video], device=bots.device[pos], ip=ip)
    out.append(Batch.make(len(pos), ts=t - watch - 500, action=ACTION["view"], watch=watch,
                          **common))
    out.append(Batch.make(len(pos), ts=t, action=ACTION["like"], **common))

    pool = sups["pool"]
    n_nur = rng.poisson(cfg["pool"]["nurture_views"], len(pool.accounts))
    pos = np.repeat(np.arange(len(pool.accounts)), n_nur)
    t = world.start_ms + rng.integers(0, world.end_ms - world.start_ms, len(pos))
    video = pick_videos(world, rng, len(pos), t)
    watch = (world.video_ms[video] * rng.uniform(0.1, 0.9, len(pos))).astype(np.int64)
    out.append(Batch.make(len(pos), kind="pool", ts=t, user=pool.accounts[pos],
                          action=ACTION["view"], video=video, creator=world.video_creator[video],
                          watch=watch, device=pool.device[pos],
                          ip=_addresses(world, rng, pool, pos, t)))
    return Batch.concat(out)
