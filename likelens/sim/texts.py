"""Comment texts: a diverse organic vocabulary and the templates that crowd workers paste.

Organic comments include very common short ones ("哈哈哈", "好看") that many people write on their
own: a text detector must not take those for a template. Bought comments come from a seller's
short template list with small edits (emoji, punctuation, a counter), the pattern near-duplicate
detection is for.
"""

from __future__ import annotations

import numpy as np

COMMON = ["哈哈哈", "哈哈哈哈哈", "好看", "👍", "❤️", "太好笑了", "第一", "来了", "绝了", "笑死",
          "牛", "666", "awesome", "lol", "😂😂😂", "好听", "爱了爱了", "可爱"]
PIECES = ["这个视频", "今天", "我家猫", "真的", "有点", "太", "看了三遍", "学到了", "下次", "一起",
          "什么时候", "更新", "教程", "背景音乐", "叫什么", "在哪里", "拍的", "好美", "好厉害",
          "哈哈", "不会吧", "我也是", "同款", "求链接", "期待", "加油", "辛苦了", "打卡", "周末",
          "上班", "下班", "路过", "支持", "原来如此", "笑不活了", "蹲一个", "后续", "同城",
          "姐妹们", "兄弟", "这里", "评论区", "the", "song", "so", "good", "why", "cat", "dog",
          "!!", "?",
          "。", "，", "~", "😭", "🔥", "🤣", "🙏", "✨"]
TEMPLATES = ["主播太棒了，支持一下{e}", "好视频，已赞已关注{e}", "拍得真好，加油加油{e}",
             "内容优质，必须点赞{e}", "来支持了，一起加油{e}", "作品很棒，期待更新{e}",
             "great video, followed{e}", "支持原创，点赞{e}"]
EMOJI = ["", "！", "!!", "👍", "👍👍", "❤️", "🌹", "💪", "~", "。"]

N_ORGANIC = 60_000  # composed comments: large enough that two people rarely write the same


def build_texts(seed: int) -> list[str]:
    """All texts the world can write: organic ones first, then templated variants."""
    rng = np.random.default_rng([seed, 11])
    n = N_ORGANIC - len(COMMON)
    picks = rng.integers(0, len(PIECES), size=(n, 6))
    lengths = rng.integers(2, 7, size=n)
    organic = list(COMMON) + ["".join(PIECES[j] for j in row[:k])
                              for row, k in zip(picks.tolist(), lengths.tolist(), strict=True)]
    templated = [t.format(e=e) for t in TEMPLATES for e in EMOJI]
    return organic + templated


def organic_comment_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Indices of organic comments: common short ones often, composed ones otherwise."""
    common = rng.random(n) < 0.35
    return np.where(common, rng.integers(0, len(COMMON), n),
                    rng.integers(len(COMMON), N_ORGANIC, n)).astype(np.int32)


def templated_comment_ids(rng: np.random.Generator, n: int, templates: np.ndarray) -> np.ndarray:
    """Indices of templated comments; ``templates`` restricts which templates a seller uses."""
    t = rng.choice(templates, size=n)
    return (N_ORGANIC + t * len(EMOJI) + rng.integers(0, len(EMOJI), n)).astype(np.int32)
