"""Organic traffic: feed sessions of views, and the likes, comments, shares and follows they cause.

A session is a run of views, one after another, each lasting its watch time plus a swipe gap. A
session may open on a forced video: a push notification to a creator's fans minutes after a
publish, or a share link passed within a friend group. Those two are the organic bursts that look
most like bought likes, and they exist here on purpose.
"""

from __future__ import annotations

import numpy as np

from likelens.sim.events import ACTION, CAUSE, Batch
from likelens.sim.texts import organic_comment_ids
from likelens.sim.world import HOUR, World, diurnal_times


def _segment_starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def pick_videos(world: World, rng: np.random.Generator, n: int, at: np.ndarray) -> np.ndarray:
    """Feed picks weighted by popularity, only among videos already published at ``at``."""
    cum = np.cumsum(world.popularity)
    videos = np.searchsorted(cum, rng.random(n) * cum[-1])
    videos = np.minimum(videos, world.n_videos - 1)
    for _ in range(4):  # redraw the picks of videos not yet out
        late = world.publish[videos] > at
        if not late.any():
            break
        videos[late] = np.minimum(np.searchsorted(cum, rng.random(int(late.sum())) * cum[-1]),
                                  world.n_videos - 1)
    late = world.publish[videos] > at
    old = np.flatnonzero(world.publish < world.start_ms)
    videos[late] = old[rng.integers(0, len(old), size=int(late.sum()))]
    return videos


def sessions(world: World, rng: np.random.Generator, users: np.ndarray, starts: np.ndarray,
             forced: np.ndarray, push: np.ndarray | None = None, *,
             cause: str | np.ndarray = "feed", alone: np.ndarray | None = None,
             boost: np.ndarray | None = None) -> Batch:
    """Views of the given sessions (user, start, forced first video or -1) and their engagement.

    ``push`` marks sessions opened from a push or a link (warmer viewers: the like on the first
    video gets ``push_like_boost``; ``boost`` gives each session its own log-odds instead).
    ``alone`` marks sessions that end after the first video: the app was opened for that video
    and closed again, which is what a task list looks like too. ``cause`` labels the first
    view and what it leads to (truth's ``organic_cause``); later views are the feed's.
    """
    org = world.cfg["organic"]
    n_s = len(users)
    length = rng.geometric(1.0 / org["views_per_session"], size=n_s)
    if alone is not None:
        length = np.where(alone, 1, length)
    n_v = int(length.sum())
    sess = np.repeat(np.arange(n_s), length)
    pos = np.arange(n_v) - np.repeat(_segment_starts(length), length)
    user = users[sess]
    approx_ts = starts[sess]
    video = pick_videos(world, rng, n_v, approx_ts)
    first = pos == 0
    forced_v = forced[sess]
    video = np.where(first & (forced_v >= 0), forced_v, video)

    # Watch: completion rises with quality and patience; replays go past 100 %.
    q = world.quality[video]
    mean = np.clip(0.15 + 0.55 * q + 0.35 * world.patience[user], 0.05, 0.95)
    conc = 3.0
    completion = rng.beta(mean * conc, (1 - mean) * conc)
    replay = rng.random(n_v) < org["replay_prob"] * (0.5 + q)
    completion = np.where(replay, 1.0 + rng.exponential(0.6, n_v), completion)
    quick = world.quick[user] & (rng.random(n_v) < 0.5)
    dur = world.video_ms[video]
    watch = (np.minimum(completion, 3.0) * dur).astype(np.int64)
    watch = np.where(quick, rng.integers(900, 4000, n_v), watch)
    watch = np.maximum(watch, 300)
    gap = rng.integers(300, 2500, n_v)
    step = watch + gap
    offset = np.cumsum(step) - step
    offset = offset - np.repeat(offset[_segment_starts(length)], length)
    ts = approx_ts + offset

    # Likes depend on watch; quick likers like in the first seconds; pushes bring warm fans.
    logit = (org["like_logit"] + org["like_completion_weight"] * np.minimum(completion, 1.5)
             + org["like_quality_weight"] * q + world.like_bias[user])
    logit = logit + np.where(world.power[user], 3.0, 0.0) + np.where(quick, 3.5, 0.0)
    if boost is None and push is not None:
        boost = np.where(push, float(world.cfg["lookalikes"]["push_like_boost"]), 0.0)
    if boost is not None:
        logit = logit + np.where(first, boost[sess], 0.0)
    liked = rng.random(n_v) < 1.0 / (1.0 + np.exp(-logit))
    creator = world.video_creator[video]
    s_cause = (np.full(n_s, CAUSE[cause], dtype=np.int8) if isinstance(cause, str)
               else np.asarray(cause, dtype=np.int8))
    view_cause = np.where(first, s_cause[sess], CAUSE["feed"]).astype(np.int8)
    views = Batch.make(n_v, ts=ts, user=user, action=ACTION["view"], video=video,
                       creator=creator, watch=watch, cause=view_cause)
    li = np.flatnonzero(liked)
    like_ts = ts[li] + (watch[li] * rng.uniform(0.6, 1.0, len(li))).astype(np.int64)
    likes = Batch.make(len(li), ts=like_ts, user=user[li], action=ACTION["like"], video=video[li],
                       creator=creator[li], cause=view_cause[li])
    out = [views, likes]
    for action, rate, delay in (("comment", org["comment_rate"], 4_000),
                                ("share", org["share_rate"], 2_000),
                                ("follow", org["follow_rate"], 1_000)):
        k = li[rng.random(len(li)) < rate]
        b = Batch.make(len(k), ts=ts[k] + watch[k] + rng.integers(200, delay, len(k)),
                       user=user[k], action=ACTION[action],
                       video=video[k] if action != "follow" else -1, creator=creator[k],
                       cause=view_cause[k])
        if action == "comment":
            b.text = organic_comment_ids(rng, len(k))
        out.append(b)
    lj = np.flatnonzero(rng.random(n_v) < org["live_join_rate"])
    room = rng.integers(0, len(world.live_creator), len(lj))
    out.append(Batch.make(len(lj), ts=ts[lj] + watch[lj], user=user[lj],
                          action=ACTION["live_join"], video=world.n_videos + room,
                          creator=world.live_creator[room]))
    return Batch.concat(out)


def _stranger_arrivals(world: World, rng: np.random.Generator, active: np.ndarray,
                       frac: float, viewers: float, spread_h: tuple[float, float]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strangers sent to a few videos by the platform itself (a hot list, search results):
    (users, session starts, videos). Each chosen video gets about ``viewers`` arrivals, drawn by
    activity from the whole world, spread over a window of ``spread_h`` hours."""
    n_pick = int(rng.binomial(world.n_videos, frac))
    if n_pick == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    videos = rng.choice(world.n_videos, size=n_pick, replace=False)
    counts = rng.poisson(viewers * rng.lognormal(0.0, 0.6, n_pick))
    cum = world.activity_cum
    users = np.minimum(np.searchsorted(cum, rng.random(int(counts.sum())) * cum[-1]),
                       world.n_users - 1)
    v = np.repeat(videos, counts)
    begin = np.maximum(world.publish[videos], world.start_ms) + rng.integers(
        0, max(1, world.end_ms - world.start_ms) // 2, n_pick)
    width = rng.uniform(*spread_h, n_pick) * HOUR
    start = np.repeat(begin, counts) + (rng.random(len(v)) * np.repeat(width, counts)).astype(
        np.int64)
    keep = active[users] & (start < world.end_ms)
    return users[keep], start[keep], v[keep]


def organic_day(world: World, rng: np.random.Generator, active: np.ndarray) -> Batch:
    """The organic day: feed sessions, push bursts after publishes, and share-link bursts; in
    zoo worlds also fan clubs, hot-list and search arrivals, group-chat links, live-room crowds
    at the start of a stream and re-watchers (every knob 0 turns its mechanism off)."""
    lk = world.cfg["lookalikes"]
    z = world.cfg["zoo"]
    users = np.flatnonzero(active)
    n_sess = rng.poisson(world.activity[users])
    s_user = np.repeat(users, n_sess)
    s_start = diurnal_times(rng, len(s_user), world.start_ms, world.cfg["world"]["hours"],
                            world.cfg["platform"])
    s_forced = np.full(len(s_user), -1, dtype=np.int64)
    s_push = np.zeros(len(s_user), dtype=bool)

    # Push bursts: fans open a new video within minutes of its publish.
    fresh = np.flatnonzero(world.publish >= world.start_ms)
    delay_ms = float(lk["push_delay_s"]) * 1000
    pu, ps, pv = [], [], []
    for v in fresh:
        c = int(world.video_creator[v])
        fans = world.fan_set(c, rng)
        fans = fans[active[fans]]
        rate = lk["push_rate"] * (z["fan_only_push_boost"] if world.fan_only_of(c) else 1.0)
        p = np.clip(rate * world.activity[fans] / world.activity.mean(), 0, 0.9)
        chosen = fans[rng.random(len(fans)) < p]
        pu.append(chosen)
        ps.append(world.publish[v] + rng.exponential(delay_ms, len(chosen)).astype(np.int64))
        pv.append(np.full(len(chosen), v))
    s_cause = np.zeros(len(s_user), dtype=np.int8)
    if pu:
        s_user = np.concatenate([s_user, *pu])
        s_start = np.concatenate([s_start, *ps])
        s_forced = np.concatenate([s_forced, *pv])
        n_push = sum(len(x) for x in pu)
        s_push = np.concatenate([s_push, np.ones(n_push, dtype=bool)])
        s_cause = np.concatenate([s_cause, np.full(n_push, CAUSE["push"], np.int8)])
    boost = np.where(s_push, float(lk["push_like_boost"]), 0.0)
    alone = np.zeros(len(s_user), dtype=bool)
    if z["push_alone_frac"] > 0:
        alone = s_push & (rng.random(len(s_user)) < z["push_alone_frac"])
    extra = [_fan_clubs(world, rng, active), *(
        _strangers(world, rng, active, cause) for cause in ("trend", "search"))]
    for u, st, fv, al, bo, ca in extra:
        s_user, s_start, s_forced = (np.concatenate([s_user, u]), np.concatenate([s_start, st]),
                                     np.concatenate([s_forced, fv]))
        alone, boost = np.concatenate([alone, al]), np.concatenate([boost, bo])
        s_cause = np.concatenate([s_cause, np.full(len(u), CAUSE[ca], np.int8)])
    day = sessions(world, rng, s_user, s_start, s_forced, cause=s_cause, alone=alone,
                   boost=boost)

    # Share-link bursts: a share inside a friend group brings friends to the video.
    sh = np.flatnonzero((day.action == ACTION["share"]) & (world.friend_group[day.user] >= 0))
    group_of = world.friend_group
    order = np.argsort(group_of, kind="stable")
    sorted_groups = group_of[order]
    fu, fs, fv = [], [], []
    for i in sh:
        g = group_of[day.user[i]]
        lo, hi = np.searchsorted(sorted_groups, [g, g + 1])
        members = order[lo:hi]
        members = members[(members != day.user[i]) & active[members]]
        go = members[rng.random(len(members)) < lk["share_follow_prob"]]
        fu.append(go)
        fs.append(day.ts[i] + rng.exponential(300_000, len(go)).astype(np.int64))
        fv.append(np.full(len(go), day.video[i]))
    if fu and sum(len(x) for x in fu):
        n_f = sum(len(x) for x in fu)
        f_alone = (rng.random(n_f) < z["share_alone_frac"] if z["share_alone_frac"] > 0
                   else None)
        friends = sessions(world, rng, np.concatenate(fu), np.concatenate(fs),
                           np.concatenate(fv), np.ones(n_f, dtype=bool), cause="share",
                           alone=f_alone)
        day = Batch.concat([day, friends])
    parts = [day]
    if z["chat_share_prob"] > 0:
        parts.append(_group_chats(world, rng, active, day))
    if z["live_fan_join"] > 0:
        parts.append(_live_crowds(world, rng, active))
    if z["rewatch_prob"] > 0:
        liked = np.flatnonzero((day.action == ACTION["like"])
                               & (rng.random(day.n) < z["rewatch_prob"]))
        later = day.ts[liked] + rng.exponential(3 * HOUR, len(liked)).astype(np.int64)
        ok = later < world.end_ms
        parts.append(sessions(world, rng, day.user[liked[ok]], later[ok], day.video[liked[ok]],
                              cause="rewatch", alone=rng.random(int(ok.sum())) < 0.7))
    return Batch.concat(parts) if len(parts) > 1 else day


Extra = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]


def _fan_clubs(world: World, rng: np.random.Generator, active: np.ndarray) -> Extra:
    """Fan clubs: a creator's most devoted fans open and like every video the creator has out,
    new ones right after the publish, older ones at some time in the day; mostly alone."""
    z = world.cfg["zoo"]
    out_u, out_s, out_v = [], [], []
    if z["fanclub_prob"] > 0:
        has = world.creators[rng.random(len(world.creators)) < z["fanclub_prob"]]
        lo, hi = z["fanclub_size"]
        for c in has:
            fans = world.fan_set(int(c), rng)
            fans = fans[active[fans]]
            club = fans[: int(rng.integers(lo, hi + 1))]
            for v in np.flatnonzero(world.video_creator == c):
                at = (world.publish[v] if world.publish[v] >= world.start_ms
                      else world.start_ms + int(rng.integers(0, world.end_ms - world.start_ms)))
                go = club[rng.random(len(club)) < 0.85]
                out_u.append(go)
                out_s.append(at + rng.exponential(float(z["fanclub_delay_s"]) * 1000,
                                                  len(go)).astype(np.int64))
                out_v.append(np.full(len(go), v))
    u = np.concatenate(out_u) if out_u else np.empty(0, np.int64)
    n = len(u)
    st = np.concatenate(out_s) if out_s else np.empty(0, np.int64)
    fv = np.concatenate(out_v) if out_v else np.empty(0, np.int64)
    alone = rng.random(n) < z["push_alone_frac"] if n else np.zeros(0, bool)
    return u, st, fv, alone, np.full(n, float(z["fanclub_like_boost"])), "fanclub"


def _strangers(world: World, rng: np.random.Generator, active: np.ndarray, cause: str) -> Extra:
    """Hot-list (``trend``) or search arrivals: strangers, often opening the video alone."""
    z = world.cfg["zoo"]
    frac, viewers = z[f"{cause}_video_frac"], z[f"{cause}_viewers"]
    if frac <= 0:
        e = np.empty(0, np.int64)
        return e, e, e, np.zeros(0, bool), np.zeros(0), cause
    spread = (1.0, 4.0) if cause == "trend" else (6.0, 20.0)
    u, st, v = _stranger_arrivals(world, rng, active, frac, viewers, spread)
    alone = rng.random(len(u)) < z[f"{cause}_alone_frac"]
    return u, st, v, alone, np.zeros(len(u)), cause


def _group_chats(world: World, rng: np.random.Generator, active: np.ndarray, day: Batch
                 ) -> Batch:
    """A share posted to a group chat: members (strangers to the creator, and to each other's
    habits) open the link within the hour, many alone; some forward it to another chat."""
    z = world.cfg["zoo"]
    sh = np.flatnonzero((day.action == ACTION["share"]) & (rng.random(day.n)
                                                          < z["chat_share_prob"]))
    lo, hi = z["chat_size"]
    cum = world.activity_cum
    us, ss, vs = [], [], []
    frontier = [(int(day.ts[i]), int(day.video[i])) for i in sh]
    depth = 0
    while frontier and depth < 3:
        nxt = []
        for t, v in frontier:
            size = int(rng.integers(lo, hi + 1))
            members = np.minimum(np.searchsorted(cum, rng.random(size) * cum[-1]),
                                 world.n_users - 1)
            members = members[active[members] & (rng.random(size) < z["chat_open_prob"])]
            start = t + rng.exponential(20 * 60_000, len(members)).astype(np.int64)
            us.append(members)
            ss.append(start)
            vs.append(np.full(len(members), v))
            fwd = rng.random(len(members)) < z["chat_forward_prob"]
            nxt += [(int(x), v) for x in start[fwd]]
        frontier, depth = nxt, depth + 1
    if not us:
        return Batch.make(0)
    u, st = np.concatenate(us), np.concatenate(ss)
    ok = st < world.end_ms
    n = int(ok.sum())
    return sessions(world, rng, u[ok], st[ok], np.concatenate(vs)[ok], np.ones(n, dtype=bool),
                    cause="chat", alone=rng.random(n) < z["share_alone_frac"])


def _live_crowds(world: World, rng: np.random.Generator, active: np.ndarray) -> Batch:
    """Followers crowding into a live room in the minutes after the stream starts."""
    z = world.cfg["zoo"]
    out = []
    for room, c in enumerate(world.live_creator):
        fans = world.fan_set(int(c), rng)
        fans = fans[active[fans]]
        go = fans[rng.random(len(fans)) < z["live_fan_join"]]
        start = world.start_ms + int(rng.integers(0, max(1, world.end_ms - world.start_ms
                                                          - HOUR)))
        ts = start + rng.exponential(4 * 60_000, len(go)).astype(np.int64)
        out.append(Batch.make(len(go), ts=ts, user=go, action=ACTION["live_join"],
                              video=world.n_videos + room, creator=int(c), cause=CAUSE["live"]))
    return Batch.concat(out) if out else Batch.make(0)
