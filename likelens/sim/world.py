"""The organic world: users, their networks and devices, creators, videos and live rooms.

Distributions are fitted to KuaiRand-Pure (docs/simulator.md): fan counts and video durations are
lognormal with the fitted parameters in ``scenarios/default.toml``. Network addresses are drawn so
that the look-alikes a naive detector trips on exist: carrier-grade NAT addresses carrying
thousands of users, campus addresses by day, and phones shared within families.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from likelens.arrays import distinct
from likelens.sim.config import Config

HOUR = 3_600_000
DAY = 24 * HOUR


def random_prefixes(rng: np.random.Generator, n: int, first_octets: tuple[int, ...]) -> np.ndarray:
    """``n`` distinct random /24 prefixes (as uint32 with host octet 0) under ``first_octets``."""
    firsts = rng.choice(np.array(first_octets, dtype=np.uint32), size=n * 2)
    mids = rng.integers(0, 1 << 16, size=n * 2, dtype=np.uint32)
    prefixes = distinct((firsts << 24) | (mids << 8))
    rng.shuffle(prefixes)
    return prefixes[:n]


# Hourly session weights from local midnight: a platform's daily rhythm.
DIURNAL = {
    # lunch and evening peaks of China-time short-video use
    "evening": (3, 2, 1, 1, 1, 1, 2, 4, 5, 5, 5, 6, 9, 8, 6, 5, 5, 6, 7, 9, 11, 12, 10, 6),
    # one broad late-night peak (a young audience)
    "night": (9, 8, 6, 3, 2, 1, 1, 2, 3, 4, 4, 5, 5, 5, 5, 5, 6, 7, 8, 9, 10, 11, 12, 11),
    # commuting peaks, morning and evening
    "commute": (1, 1, 1, 1, 1, 2, 5, 9, 10, 6, 4, 5, 6, 5, 4, 4, 5, 8, 10, 9, 7, 6, 4, 2),
    "flat": (1,) * 24,
}


def diurnal_times(rng: np.random.Generator, n: int, start_ms: int, hours: int,
                  platform: dict | None = None) -> np.ndarray:
    """Session start times following the platform's daily curve (``platform.diurnal``, shifted
    by ``platform.diurnal_shift_h`` hours)."""
    platform = platform or {"diurnal": "evening", "diurnal_shift_h": 0}
    w = np.roll(np.array(DIURNAL[platform["diurnal"]], dtype=float),
                int(platform["diurnal_shift_h"]))
    w = np.resize(w, hours)
    hour = rng.choice(hours, size=n, p=w / w.sum())
    return start_ms + hour.astype(np.int64) * HOUR + rng.integers(0, HOUR, size=n)


@dataclass
class World:
    """Everything organic that exists before the day's events are drawn."""

    cfg: Config
    n_users: int
    start_ms: int
    end_ms: int
    region: np.ndarray        # int8 per user
    activity: np.ndarray      # expected sessions per day
    patience: np.ndarray      # 0..1
    like_bias: np.ndarray     # log-odds added to every like
    quick: np.ndarray         # bool: likes in the first seconds and swipes on
    power: np.ndarray         # bool: likes much of what they watch
    home_ip: np.ndarray       # uint32
    campus_ip: np.ndarray     # uint32, 0 for none
    device: np.ndarray        # int64 device index (families share one)
    friend_group: np.ndarray  # int64 group id, -1 for none
    creators: np.ndarray      # user indices of creators
    fans: np.ndarray          # fan count per creator (aligned with creators)
    video_creator: np.ndarray  # user index per video
    video_ms: np.ndarray
    quality: np.ndarray
    publish: np.ndarray       # ms; before start_ms for older videos
    popularity: np.ndarray    # feed weight per video
    live_creator: np.ndarray  # user index per live room
    residential: np.ndarray   # /24 prefixes of home broadband
    n_devices: int
    fan_only: np.ndarray | None = None  # bool per creator: an audience of fans only

    def fan_only_of(self, creator: int) -> bool:
        """Whether ``creator``'s audience is almost only their fans (no feed reach)."""
        if self.fan_only is None:
            return False
        return bool(self.fan_only[np.searchsorted(self.creators, creator)])

    @property
    def n_videos(self) -> int:
        return len(self.video_ms)

    def ip_at(self, users: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """The address each user acts from at each time: campus by day, else home."""
        hour = ((ts - self.start_ms) // HOUR) % 24
        campus = self.campus_ip[users]
        by_day = (campus != 0) & (hour >= 8) & (hour < 18)
        return np.where(by_day, campus, self.home_ip[users])

    def fan_set(self, creator: int, rng: np.random.Generator) -> np.ndarray:
        """A creator's fans, stable for the day (the same fans come back to each new video)."""
        pos = np.searchsorted(self.creators, creator)
        size = int(self.fans[pos])
        crng = np.random.default_rng([int(self.cfg["seed"]), 7, creator])
        cum = self.activity_cum
        picks = np.searchsorted(cum, crng.random(size) * cum[-1])
        return distinct(np.minimum(picks, self.n_users - 1))

    @property
    def activity_cum(self) -> np.ndarray:
        """Cumulative activity, for drawing users in proportion to how active they are."""
        if not hasattr(self, "_activity_cum"):
            self._activity_cum = np.cumsum(self.activity)
        return self._activity_cum


def build_world(cfg: Config, rng: np.random.Generator) -> World:
    """Draw the organic world from the scenario's knobs."""
    w, lk = cfg["world"], cfg["lookalikes"]
    n = int(w["users"])
    start = int(w["start_ms"])
    end = start + int(w["hours"]) * HOUR
    region = rng.integers(0, len(w["regions"]), size=n).astype(np.int8)
    org = cfg["organic"]
    activity = rng.lognormal(org["sessions_log_mean"], org["sessions_log_sd"], size=n)
    patience = rng.beta(2.0, 2.0, size=n)
    like_bias = rng.normal(0.0, 0.7, size=n)
    quick = rng.random(n) < lk["quick_liker_frac"]
    power = rng.random(n) < lk["power_liker_frac"]

    # Network: home broadband in shared /24s, carrier NAT, campus by day.
    n_res = max(4, n // 40)
    residential = random_prefixes(rng, n_res, (36, 39, 58, 59, 60, 61, 101, 106, 111, 112, 113,
                                               114, 115, 116, 117, 118, 119, 120, 121, 122, 123,
                                               124, 125, 180, 182, 183, 218, 220, 221, 222, 223))
    home_ip = residential[rng.integers(0, n_res, size=n)] | rng.integers(1, 255, size=n,
                                                                         dtype=np.uint32)
    cgnat = rng.random(n) < lk["cgnat_user_frac"]
    n_cgnat = max(1, int(cgnat.sum() // lk["cgnat_users_per_ip"]))
    cgnat_ips = random_prefixes(rng, n_cgnat, (112, 117, 223)) | np.uint32(1)
    home_ip[cgnat] = cgnat_ips[rng.integers(0, n_cgnat, size=int(cgnat.sum()))]
    campus = rng.random(n) < lk["campus_user_frac"]
    n_campus = max(1, int(campus.sum() // lk["campus_users_per_ip"]))
    campus_ips = random_prefixes(rng, n_campus, (166, 202, 210, 211, 219)) | np.uint32(10)
    campus_ip = np.zeros(n, dtype=np.uint32)
    campus_ip[campus] = campus_ips[rng.integers(0, n_campus, size=int(campus.sum()))]

    # Devices: one each, except families who share a phone (2 to 4 accounts).
    device = np.arange(n, dtype=np.int64)
    fam = np.flatnonzero(rng.random(n) < lk["family_frac"])
    rng.shuffle(fam)
    i = 0
    while i + 1 < len(fam):
        size = int(rng.integers(2, 5))
        members = fam[i:i + size]
        device[members] = device[members[0]]
        home_ip[members] = home_ip[members[0]]
        i += size

    # Friend groups of 3 to 10 that pass share links.
    friend_group = np.full(n, -1, dtype=np.int64)
    fr = np.flatnonzero(rng.random(n) < lk["friend_group_frac"])
    rng.shuffle(fr)
    sizes = rng.integers(3, 11, size=max(1, len(fr) // 3))
    bounds = np.cumsum(sizes)
    bounds = bounds[bounds < len(fr)]
    friend_group[fr] = np.searchsorted(bounds, np.arange(len(fr)), side="right")

    # Creators, fans and videos.
    n_creators = max(5, int(n * w["creator_frac"]))
    creators = np.sort(rng.choice(n, size=n_creators, replace=False))
    fans = np.expm1(rng.normal(w["fans_log1p_mean"], w["fans_log1p_sd"], size=n_creators))
    fans = np.clip(fans, 0, w["max_fan_frac"] * n).astype(np.int64)
    per = rng.poisson(w["videos_per_creator_mean"] - 1, size=n_creators) + 1
    video_creator = np.repeat(creators, per)
    n_videos = len(video_creator)
    video_ms = np.clip(rng.lognormal(w["video_ms_log_mean"], w["video_ms_log_sd"], n_videos),
                       3_000, 900_000).astype(np.int64)
    quality = rng.beta(2.0, 3.0, size=n_videos)
    in_day = rng.random(n_videos) < w["in_day_publish_frac"]
    publish = np.where(in_day, start + rng.integers(0, end - start - HOUR, n_videos),
                       start - rng.integers(HOUR, 7 * DAY, n_videos))
    fans_of_video = np.repeat(fans, per)
    popularity = (quality ** 2.5) * np.sqrt(1.0 + fans_of_video) * rng.lognormal(0, 1.0, n_videos)
    live_creator = rng.choice(creators, size=int(w["live_rooms"]),
                              p=(1 + fans) / (1 + fans).sum(), replace=True)
    fan_only = None
    if cfg["zoo"]["fan_only_creator_frac"] > 0:  # the feed hardly shows them: fans only
        fan_only = rng.random(n_creators) < cfg["zoo"]["fan_only_creator_frac"]
        popularity = popularity * np.where(np.repeat(fan_only, per), 0.03, 1.0)
    return World(cfg, n, start, end, region, activity, patience, like_bias, quick, power, home_ip,
                 campus_ip, device, friend_group, creators, fans, video_creator, video_ms, quality,
                 publish, popularity, live_creator, residential, n, fan_only)
