"""The small-batch reader gives ``ingest_raw``'s table or declines: never a third answer."""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from likelens.errors import LikeLensError
from likelens.ingest import ingest_raw
from likelens.ingest.readers import ndjson_to_raw
from likelens.ingest.small import MAX_LINES, parse_small

KEY = b"small-batch-test-key-0123456789"

ADDRESSES = ["1.2.3.4", "10.0.0.255", "01.2.3.004", "256.1.1.1", "1.2.3", "2001:db8::1",
             "2001:DB8:0:0:0:0:0:1", "::1", "::", "::ffff:1.2.3.4", "fe80::1%eth0",
             "1:2:3:4:5:6:7:8:9", " 1.2.3.4", "1.2.3.4\n", "", "  ", "junk", "0.0.0.0"]
IDS = st.one_of(st.integers(-5, 10**12), st.sampled_from(
    ["7", " 7 ", "007", "-3", "u_8f3a", "", " ", "12345678901234567890", "1e3", "٣"]),
    st.just(2**63), st.booleans(), st.floats(allow_nan=False, allow_infinity=False))
ACTIONS = st.sampled_from(["like", "view", "Like ", " follow", "\tcomment", "share",
                           "live_join", "LIKE\n", "poke", "\x0blike", "", "lıke"])
TEXT = st.one_of(st.none(), st.text(max_size=6), st.integers(0, 9))


def clean_event(i: int) -> dict:
    """An event nothing in it should make the reader doubt."""
    return {"event_id": 1000 + i, "ts": 1_795_622_422_467 + i, "user_id": 12 + i % 3,
            "action": ["like", "view", "comment", "follow"][i % 4], "video_id": 55,
            "creator_id": 9, "watch_ms": None if i % 2 else 4000, "video_ms": 19372,
            "ip": ["117.239.189.72", "2001:db8:1:2::7", None][i % 3], "device_id": f"dev{i}",
            "region": "FJ", "text": None if i % 3 else "nice"}


def messy_event() -> st.SearchStrategy[dict]:
    values = {"event_id": IDS, "ts": st.one_of(st.integers(-10, 2**40), st.none(),
                                                st.just("123"), st.just(1.5)),
              "user_id": IDS, "action": st.one_of(ACTIONS, st.none()),
              "video_id": IDS, "creator_id": st.one_of(IDS, st.none()),
              "watch_ms": st.one_of(st.integers(-2, 10**6), st.none()),
              "video_ms": st.one_of(st.integers(-1, 10**6), st.none()),
              "ip": st.one_of(st.sampled_from(ADDRESSES), st.none()),
              "device_id": st.one_of(st.sampled_from(["d1", " d1", "d\u00a0", "ü", ""]), TEXT),
              "region": TEXT, "text": TEXT, "TS": st.integers(0, 9), "other": st.integers()}
    optional = {k: v for k, v in values.items() if k not in ("ts", "user_id", "action")}
    return st.fixed_dictionaries({k: values[k] for k in ("ts", "user_id", "action")},
                                 optional=optional)


def varied_event() -> st.SearchStrategy[dict]:
    """Events of every shape the reader should take: ids as integers or text (int-like or
    opaque, padded with spaces), actions in any case with whitespace, follows without a
    video, addresses of both families, optional columns absent or null."""
    ints = st.integers(0, 10**15)
    ids = st.one_of(ints, ints.map(str), ints.map(lambda i: f" {i} "),
                    st.sampled_from(["u_1", "acct-7", " x "]))
    values = {"event_id": ids, "ts": st.integers(0, 2**41), "user_id": ids,
              "action": st.sampled_from(["like", "VIEW", " Comment", "share\n", "live_join",
                                         "follow"]),
              "video_id": st.one_of(ids, st.none()), "creator_id": ids,
              "watch_ms": st.one_of(st.integers(0, 10**6), st.none()),
              "video_ms": st.one_of(st.integers(1, 10**6), st.none()),
              "ip": st.sampled_from(["1.2.3.4", "010.1.1.1", "2001:db8::1", "::1", "",
                                     "2001:DB8:0:0:1::2", None]),
              "device_id": st.sampled_from(["d1", "D-2", "", None]),
              "region": st.one_of(st.none(), st.text(max_size=3)),
              "text": st.one_of(st.none(), st.text(max_size=8))}
    required = ("event_id", "ts", "user_id", "action", "video_id", "creator_id")
    return st.fixed_dictionaries({k: values[k] for k in required},
                                 optional={k: v for k, v in values.items() if k not in required})


def general(lines: list[bytes]) -> tuple[pa.Table, pa.Table] | None:
    try:
        return ingest_raw(ndjson_to_raw(b"\n".join(lines)), source="t", key=KEY,
                          require_event_id=True, keep_rows=True)
    except LikeLensError:
        return None


def assert_same_or_declined(lines: list[bytes]) -> bool:
    small = parse_small(lines, KEY)
    if small is None:
        return False
    full = general(lines)
    assert full is not None, "the general path refused a batch the small reader took"
    good, bad = full
    assert bad.num_rows == 0, bad.to_pylist()
    assert small.schema == good.schema
    assert small.to_pylist() == good.to_pylist()
    return True


def test_clean_batches_take_the_small_reader_with_the_general_paths_table() -> None:
    taken = [assert_same_or_declined([json.dumps(clean_event(i)).encode()
                                      for i in range(s, s + n)])
             for s, n in ((0, 1), (1, 1), (2, 1), (3, 1), (0, 7), (5, MAX_LINES))]
    assert all(taken)
    assert parse_small([json.dumps(clean_event(0)).encode()] * (MAX_LINES + 1), KEY) is None


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(messy_event(), st.integers(0, 50).map(clean_event)),
                min_size=1, max_size=5), st.booleans())
@example([{"event_id": 1, "ts": 1, "user_id": 1, "action": "like", "video_id": 1,
           "text": "\ud800"}], False)
def test_messy_batches_give_the_same_table_or_are_declined(events: list[dict],
                                                          ascii_only: bool) -> None:
    lines = [json.dumps(e, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
             for e in events]
    assert_same_or_declined(lines)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(varied_event(), min_size=1, max_size=4))
def test_varied_clean_batches_give_the_same_table(events: list[dict]) -> None:
    lines = [json.dumps(e).encode() for e in events]
    full = general(lines)
    clean = full is not None and full[1].num_rows == 0
    mixed = any(len({type(e[c]) for e in events if e.get(c) is not None}) > 1
                for c in ("event_id", "user_id", "video_id", "creator_id"))
    # Declining is allowed only where the general path quarantines (a follow's null video is
    # fine, a like's is not) or a column mixes integers and text (Arrow's reader refuses it):
    # every other batch of these shapes is taken.
    assert assert_same_or_declined(lines) == (clean and not mixed)


def test_doubtful_lines_are_declined() -> None:
    base = clean_event(0)
    doubtful = [b'{"event_id": 1, "event_id": 2, "ts": 1, "user_id": 1, "action": "like", '
                b'"video_id": 1}',                                    # a repeated key
                b"[1, 2]", b"not json", b"\xff\xfe{}", b"[" * 100_000,
                json.dumps({**base, "watch_ms": -1}).encode(),       # would be quarantined
                json.dumps({**base, "ip": "300.1.1.1"}).encode(),
                json.dumps({**base, "ts": 1.5}).encode(),
                json.dumps({**base, "Action": "like"}).encode(),
                json.dumps({k: v for k, v in base.items() if k != "event_id"}).encode()]
    for line in doubtful:
        assert parse_small([line], KEY) is None, line
