"""Organic traffic: feed sessions of views, and the likes, comments, shares and follows they cause.

A session is a run of views, one after another, each lasting its watch time plus a swipe gap. A
session may open on a forced video: a push notification to a creator's fans minutes after a
publish, or a share link passed within a friend group. Those two are the organic bursts that look
most like bought likes, and they exist here on purpose.
"""

from __future__ import annotations

import numpy as np

from likelens.sim.events import ACTION, Batch
from likelens.sim.texts import organic_comment_ids
from likelens.sim.world import World, diurnal_times


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
             forced: np.ndarray, push: np.ndarray | None = None) -> Batch:
    """Views of the given sessions (user, start, forced first video or -1) and their engagement."""
    org = world.cfg["organic"]
    n_s = len(users)
    length = rng.geometric(1.0 / org["views_per_session"], size=n_s)
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
    if push is not None:
        logit = logit + np.where(first & push[sess], world.cfg["lookalikes"]["push_like_boost"],
                                 0.0)
    liked = rng.random(n_v) < 1.0 / (1.0 + np.exp(-logit))
    creator = world.video_creator[video]
    views = Batch.make(n_v, ts=ts, user=user, action=ACTION["view"], video=video,
                       creator=creator, watch=watch)
    li = np.flatnonzero(liked)
    like_ts = ts[li] + (watch[li] * rng.uniform(0.6, 1.0, len(li))).astype(np.int64)
    likes = Batch.make(len(li), ts=like_ts, user=user[li], action=ACTION["like"], video=video[li],
                       creator=creator[li])
    out = [views, likes]
    for action, rate, delay in (("comment", org["comment_rate"], 4_000),
                                ("share", org["share_rate"], 2_000),
                                ("follow", org["follow_rate"], 1_000)):
        k = li[rng.random(len(li)) < rate]
        b = Batch.make(len(k), ts=ts[k] + watch[k] + rng.integers(200, delay, len(k)),
                       user=user[k], action=ACTION[action],
                       video=video[k] if action != "follow" else -1, creator=creator[k])
        if action == "comment":
            b.text = organic_comment_ids(rng, len(k))
        out.append(b)
    lj = np.flatnonzero(rng.random(n_v) < org["live_join_rate"])
    room = rng.integers(0, len(world.live_creator), len(lj))
    out.append(Batch.make(len(lj), ts=ts[lj] + watch[lj], user=user[lj],
                          action=ACTION["live_join"], video=world.n_videos + room,
                          creator=world.live_creator[room]))
    return Batch.concat(out)


def organic_day(world: World, rng: np.random.Generator, active: np.ndarray) -> Batch:
    """The organic day: feed sessions, push bursts after publishes, and share-link bursts."""
    lk = world.cfg["lookalikes"]
    users = np.flatnonzero(active)
    n_sess = rng.poisson(world.activity[users])
    s_user = np.repeat(users, n_sess)
    s_start = diurnal_times(rng, len(s_user), world.start_ms, world.cfg["world"]["hours"])
    s_forced = np.full(len(s_user), -1, dtype=np.int64)
    s_push = np.zeros(len(s_user), dtype=bool)

    # Push bursts: fans open a new video within minutes of its publish.
    fresh = np.flatnonzero(world.publish >= world.start_ms)
    pu, ps, pv = [], [], []
    for v in fresh:
        fans = world.fan_set(int(world.video_creator[v]), rng)
        fans = fans[active[fans]]
        p = np.clip(lk["push_rate"] * world.activity[fans] / world.activity.mean(), 0, 0.9)
        chosen = fans[rng.random(len(fans)) < p]
        pu.append(chosen)
        ps.append(world.publish[v] + rng.exponential(240_000, len(chosen)).astype(np.int64))
        pv.append(np.full(len(chosen), v))
    if pu:
        s_user = np.concatenate([s_user, *pu])
        s_start = np.concatenate([s_start, *ps])
        s_forced = np.concatenate([s_forced, *pv])
        s_push = np.concatenate([s_push, np.ones(sum(len(x) for x in pu), dtype=bool)])
    day = sessions(world, rng, s_user, s_start, s_forced, s_push)

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
        friends = sessions(world, rng, np.concatenate(fu), np.concatenate(fs),
                           np.concatenate(fv), np.ones(sum(len(x) for x in fu), dtype=bool))
        day = Batch.concat([day, friends])
    return day
