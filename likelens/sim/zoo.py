"""The organic look-alike zoo: one world per seed, its knobs drawn from ranges.

Detection is judged on logs written by other hands, so no single world may be the one it is
tuned on (domain randomisation). Every organic cause of collective engagement (pushes, links in
friend groups and group chats, hot lists, search, live-room starts, fan clubs, re-watchers,
fan-only creators), the platform's shape (integer or string ids, IPv4 or IPv6, watch time
reported or not, views exported or not, daily rhythm, like rate) and the market's adaptations
(camouflage, residential proxies, drip, longer watch, organic-looking comments) are drawn here,
independently per world. ``RANGES`` is the whole list; docs/simulator.md explains each knob.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from likelens.sim.config import Config

Draw = Callable[[np.random.Generator, Any], Any]


def _u(lo: float, hi: float) -> Draw:
    return lambda rng, _: float(rng.uniform(lo, hi))


def _i(lo: int, hi: int) -> Draw:
    return lambda rng, _: int(rng.integers(lo, hi + 1))


def _choice(*options: Any) -> Draw:
    return lambda rng, _: options[int(rng.integers(0, len(options)))]


def _maybe(p_off: float, off: Any, on: Draw) -> Draw:
    """``off`` with probability ``p_off``, else a draw from ``on``."""
    return lambda rng, cur: off if rng.random() < p_off else on(rng, cur)


def _dirichlet(concentration: float) -> Draw:
    """Weights around the default ones (the current value), more spread when smaller."""
    return lambda rng, cur: [round(float(x), 4) for x in rng.dirichlet(
        np.asarray(cur, dtype=float) / np.sum(cur) * concentration + 0.05)]


def _pair(lo: Draw, hi: Draw) -> Draw:
    return lambda rng, cur: [lo(rng, cur), hi(rng, cur)]


RANGES: dict[str, dict[str, Draw]] = {
    "world": {
        "hours": _choice(24, 24, 36, 48),
        "creator_frac": _u(0.03, 0.10), "fans_log1p_mean": _u(3.0, 4.5),
        "videos_per_creator_mean": _u(1.3, 3.0), "in_day_publish_frac": _u(0.15, 0.45),
        "live_rooms": _i(10, 80),
    },
    "organic": {
        "sessions_log_mean": _u(0.3, 0.9), "views_per_session": _u(8.0, 25.0),
        "like_logit": _u(-6.8, -5.2), "comment_rate": _u(0.02, 0.10),
        "share_rate": _u(0.02, 0.08), "follow_rate": _u(0.01, 0.05),
        "replay_prob": _u(0.05, 0.2),
    },
    "lookalikes": {
        "cgnat_user_frac": _u(0.1, 0.5), "cgnat_users_per_ip": _i(500, 3000),
        "campus_user_frac": _u(0.02, 0.12), "family_frac": _u(0.02, 0.10),
        "quick_liker_frac": _u(0.01, 0.06), "power_liker_frac": _u(0.005, 0.03),
        "push_rate": _u(0.04, 0.2), "push_like_boost": _u(1.0, 3.0),
        "push_delay_s": _u(60.0, 900.0), "friend_group_frac": _u(0.05, 0.3),
        "share_follow_prob": _u(0.3, 0.8),
    },
    "zoo": {
        "push_alone_frac": _u(0.2, 0.8), "share_alone_frac": _u(0.2, 0.8),
        "fan_only_creator_frac": _u(0.0, 0.15), "fanclub_prob": _u(0.0, 0.08),
        "fanclub_size": _pair(_i(8, 15), _i(20, 80)), "fanclub_delay_s": _u(120.0, 1800.0),
        "fanclub_like_boost": _u(2.0, 5.0),
        "trend_video_frac": _u(0.0, 0.01), "trend_viewers": _u(100.0, 600.0),
        "trend_alone_frac": _u(0.2, 0.8),
        "search_video_frac": _u(0.0, 0.03), "search_viewers": _u(10.0, 60.0),
        "search_alone_frac": _u(0.3, 0.8),
        "chat_share_prob": _u(0.0, 0.3), "chat_size": _pair(_i(3, 8), _i(20, 80)),
        "chat_open_prob": _u(0.2, 0.7), "chat_forward_prob": _u(0.0, 0.05),
        "live_fan_join": _u(0.0, 0.15), "rewatch_prob": _u(0.0, 0.1),
    },
    "platform": {
        "ids": _choice("int", "string"),
        "ipv6_frac": _maybe(0.4, 0.0, _u(0.2, 0.9)),
        "watch_report_prob": _maybe(0.6, 1.0, _u(0.3, 0.95)),
        "engagement_only": lambda rng, _: bool(rng.random() < 0.1),
        "diurnal": _choice("evening", "night", "commute", "flat"),
        "diurnal_shift_h": _i(-3, 3),
    },
    "market": {
        "fake_like_share": _u(0.03, 0.15), "package_weights": _dirichlet(8.0),
        "delivery_weights": _dirichlet(6.0), "supply_weights": _dirichlet(6.0),
        "small_creator_bias": _u(0.0, 2.0), "bundle_comment_prob": _u(0.05, 0.4),
        "bundle_share_prob": _u(0.02, 0.15), "region_pin_prob": _u(0.0, 0.4),
        "follower_order_frac": _u(0.03, 0.12), "live_order_frac": _u(0.02, 0.08),
        "repeat_customer_prob": _u(0.1, 0.5),
    },
    "supply.bot": {
        "accounts_per_1k_users": _u(4.0, 12.0), "device_images": _i(3, 20),
        "datacenter_ranges": _i(1, 6), "proxy_frac": _u(0.0, 0.9),
        "view_before_prob": _u(0.4, 1.0), "watch_ms": _pair(_i(500, 1500), _i(2000, 8000)),
        "camouflage_per_bot": _u(0.5, 6.0),
    },
    "supply.pool": {
        "accounts_per_1k_users": _u(3.0, 10.0), "accounts_per_device": _pair(_i(2, 5),
                                                                             _i(6, 15)),
        "farm_ranges": _i(1, 5), "nurture_views": _u(10.0, 60.0),
        "owner_use_prob": _u(0.2, 0.8), "watch_frac": _pair(_u(0.02, 0.1), _u(0.25, 0.6)),
    },
    "supply.crowd": {
        "workers_per_1k_users": _u(5.0, 30.0), "min_watch_s": _i(5, 20),
        "task_participation": _u(0.3, 0.8),
    },
    "adapt": {
        "jitter": _u(0.0, 1.0), "drip_slowdown": _u(1.0, 2.5), "camouflage_boost": _u(1.0, 4.0),
        "longer_watch": _u(0.0, 0.8), "organic_comments": _u(0.0, 0.7),
    },
}


def draw(cfg: Config, seed: int) -> Config:
    """``cfg`` with every knob in ``RANGES`` drawn for world ``seed`` (same seed, same world)."""
    rng = np.random.default_rng([seed, 0x200])
    out = copy.deepcopy(cfg)
    for section, knobs in RANGES.items():
        node = out
        for part in section.split("."):
            node = node[part]
        for knob, fn in knobs.items():
            node[knob] = fn(rng, node[knob])
    return out
