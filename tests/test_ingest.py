"""Ingest against real malformed files: every quarantine reason, every fatal error."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from likelens.errors import InputError, SchemaError
from likelens.ingest import ingest, split_views

HEADER = "ts,user_id,action,video_id,creator_id,event_id,watch_ms,video_ms,ip,device_id,text\n"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def reasons(result) -> dict[int, str]:
    return dict(zip(result.quarantine["row"].to_pylist(), result.quarantine["reason"].to_pylist(),
                    strict=True))


def test_csv_good_and_bad_rows(tmp_path: Path, key: bytes) -> None:
    rows = [
        "1000,1,like,10,5,,2000,9000,1.2.3.4,devA,\"nice, really\"",   # 0 good, quoted comma
        "1001,2,poke,10,5,,,,,,",                                      # 1 unknown action
        "1002,,like,10,5,,,,,,",                                       # 2 missing user_id
        "yesterday,3,like,10,5,,,,,,",                                 # 3 unparseable time
        "1004,4,view,10,5,,-5,9000,,,",                                # 4 negative watch
        "1005,5,view,10,5,,abc,9000,,,",                               # 5 not a number
        "1006,6,like,10,5,,,,300.1.1.1,,",                             # 6 bad ip
        "2026-11-26T08:00:00+08:00,7,LIKE,10,5,,,,,,",                 # 7 good ISO time, any case
        "2026-11-26T08:00:00,8,like,10,5,,,,,,",                       # 8 time without offset
        "1009,9,like,,5,,,,,,",                                        # 9 like without video
        "1010,10,follow,,5,,,,,,",                                     # 10 good follow
        "1011,11",                                                     # 11 wrong field count
    ]
    path = write(tmp_path / "log.csv", "\ufeff" + HEADER + "\n".join(rows) + "\n")
    r = ingest([path], key=key)
    assert sorted(r.events["event_id"].to_pylist()) == [0, 7, 10]
    got = reasons(r)
    assert got[1] == "unknown_action"
    assert got[2] == "missing_value:user_id"
    assert got[3] == "bad_time"
    assert got[4] == "bad_number:watch_ms"
    assert got[5] == "bad_number:watch_ms"
    assert got[6] == "bad_ip"
    assert got[8] == "bad_time"
    assert got[9] == "missing_value:video_id"
    assert got[11] == "malformed_row"
    first = r.events.filter(pa.compute.equal(r.events["event_id"], 0)).to_pylist()[0]
    assert first["text"] == "nice, really"
    assert first["ts"] == 1000 and first["watch_ms"] == 2000
    iso = r.events.filter(pa.compute.equal(r.events["event_id"], 7)).to_pylist()[0]
    assert iso["ts"] == 1795651200000 and iso["action"] == "like"
    assert set(r.quarantine["source"].to_pylist()) == {str(path)}


def test_invalid_utf8_row_is_quarantined_others_kept(tmp_path: Path, key: bytes) -> None:
    data = (HEADER.encode() + b"1,1,like,10,5,,,,,,ok\n" + b"2,2,comment,10,5,,,,,,\xff\xfe\n"
            + b"3,3,like,11,5,,,,,,fine\n")
    r = ingest([write(tmp_path / "bad.csv", data)], key=key)
    assert r.events["event_id"].to_pylist() == [0, 2]
    assert reasons(r) == {1: "invalid_utf8"}


def test_duplicate_event_id_keeps_first(tmp_path: Path, key: bytes) -> None:
    text = HEADER + "1,1,like,10,5,e1,,,,,\n2,2,like,10,5,e2,,,,,\n3,3,like,10,5,e1,,,,,\n"
    r = ingest([write(tmp_path / "dup.csv", text)], key=key)
    assert r.events["event_id"].to_pylist() == ["e1", "e2"]
    assert reasons(r) == {2: "duplicate_event_id"}
    assert "e1" in r.quarantine["raw"][0].as_py()


def test_integer_ids_increasing_in_each_file_but_repeated_across_files_are_found(
        tmp_path: Path, key: bytes) -> None:
    """The cheap "ids strictly increase" pass looks across chunk (and file) boundaries."""
    d = tmp_path / "two"
    d.mkdir()
    for name, ids in (("a", [1, 2, 3]), ("b", [3, 4])):
        pq.write_table(pa.table({"event_id": ids, "ts": ids, "user_id": ids,
                                 "action": ["like"] * len(ids), "video_id": [9] * len(ids)}),
                       d / f"{name}.parquet")
    r = ingest([d], key=key)
    assert r.events["event_id"].to_pylist() == [1, 2, 3, 4]
    assert r.quarantine["reason"].to_pylist() == ["duplicate_event_id"]
    assert r.quarantine["source"][0].as_py().endswith("b.parquet")


def test_missing_required_column_is_schema_error(tmp_path: Path, key: bytes) -> None:
    path = write(tmp_path / "nouser.csv", "ts,action,video_id\n1,like,2\n")
    with pytest.raises(SchemaError) as info:
        ingest([path], key=key)
    msg = str(info.value)
    assert "nouser.csv" in msg and "user_id" in msg and "\n" not in msg


def test_a_column_given_twice_in_any_case_is_schema_error(tmp_path: Path, key: bytes) -> None:
    path = write(tmp_path / "twice.jsonl",
                 '{"ts": 1, "TS": 2, "user_id": 1, "action": "like", "video_id": 1}\n')
    with pytest.raises(SchemaError, match="more than once") as err:
        ingest([path], key=key)
    assert err.value.column == "ts" and err.value.file == str(path)


def test_a_line_nested_past_the_stack_is_quarantined_not_fatal(tmp_path: Path,
                                                                 key: bytes) -> None:
    good = '{"ts": 1, "user_id": 1, "action": "like", "video_id": 1}'
    path = write(tmp_path / "deep.jsonl", good + "\n" + "[" * 100_000 + "\n" + good + "\n")
    result = ingest([path], key=key)
    assert result.events.num_rows == 2 and reasons(result) == {1: "malformed_row"}


def test_truncated_parquet_is_input_error(tmp_path: Path, key: bytes) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"ts": [1], "user_id": [1], "action": ["like"], "video_id": [2]}),
                   good)
    data = good.read_bytes()
    bad = write(tmp_path / "cut.parquet", data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.parquet"):
        ingest([bad], key=key)


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl"])
def test_empty_file_is_input_error(tmp_path: Path, key: bytes, name: str) -> None:
    with pytest.raises(InputError, match=name.replace(".", r"\.") + ".*empty"):
        ingest([write(tmp_path / name, b"")], key=key)


def test_parquet_timestamps_and_typed_ids(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "typed.parquet"
    ts = pa.array([1_700_000_000_000, 1_700_000_001_000], pa.timestamp("ms", tz="UTC"))
    pq.write_table(pa.table({"ts": ts, "user_id": pa.array([7, 8], pa.int64()),
                             "action": ["view", "like"], "video_id": [1, 1],
                             "watch_ms": [1000, None]}), path)
    r = ingest([path], key=key)
    assert r.events["ts"].to_pylist() == [1_700_000_000_000, 1_700_000_001_000]
    assert r.events.schema.field("user_id").type == pa.int64()
    assert r.quarantine.num_rows == 0


def test_jsonl_mixed_types_and_broken_lines(tmp_path: Path, key: bytes) -> None:
    lines = [json.dumps({"ts": 1, "user_id": 5, "action": "like", "video_id": "v1"}),
             "{not json",
             json.dumps({"ts": "2026-01-01T00:00:00Z", "user_id": "u6", "action": "view",
                         "video_id": "v1", "watch_ms": 3000})]
    r = ingest([write(tmp_path / "log.jsonl", "\n".join(lines) + "\n")], key=key)
    assert r.events.num_rows == 2
    assert reasons(r) == {1: "malformed_row"}
    assert r.events["user_id"].to_pylist() == ["5", "u6"]


def test_directory_reads_files_as_one_log_with_global_row_numbers(tmp_path: Path,
                                                                  key: bytes) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    write(d / "a.csv", "ts,user_id,action,video_id\n1,1,like,2\n2,1,like,3\n")
    write(d / "b.csv", "ts,user_id,action,video_id\n3,2,like,2\n")
    r = ingest([d], key=key)
    assert r.events["event_id"].to_pylist() == [0, 1, 2]
    assert len(r.files) == 2


def test_ip_and_device_are_pseudonymised_with_ranges_kept(tmp_path: Path, key: bytes) -> None:
    text = HEADER + ("1,1,like,10,5,,,,10.1.2.3,phone-1,\n2,2,like,10,5,,,,10.1.2.99,phone-1,\n"
                     "3,3,like,10,5,,,,10.1.3.3,phone-2,\n")
    r = ingest([write(tmp_path / "net.csv", text)], key=key)
    nets = r.events["ip_net"].to_pylist()
    ips = r.events["ip_hash"].to_pylist()
    assert nets[0] == nets[1] != nets[2]
    assert len(set(ips)) == 3
    assert r.events["device_hash"][0] == r.events["device_hash"][1]
    dumped = str(r.events.to_pylist())
    assert "10.1.2.3" not in dumped and "phone-1" not in dumped
    other = ingest([tmp_path / "net.csv"], key=b"another-key-0123456789")
    assert other.events["ip_hash"][0] != r.events["ip_hash"][0]


def test_quarantine_raw_never_holds_clear_ip(tmp_path: Path, key: bytes) -> None:
    text = HEADER + "1,1,poke,10,5,,,,10.9.8.7,phone-9,\n1,2,3\n10.9.8.7,x\n"
    r = ingest([write(tmp_path / "q.csv", text)], key=key)
    raw = " ".join(r.quarantine["raw"].to_pylist())
    assert r.quarantine.num_rows == 3
    assert "10.9.8.7" not in raw and "phone-9" not in raw


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_views_addresses_are_checked_and_a_quarantined_views_is_hashed(
        tmp_path: Path, key: bytes, suffix: str) -> None:
    """Ingest leaves a view's address unhashed (nothing reads it), but still quarantines a
    view whose address is bad, and a quarantined view shows its address hashed as an
    engagement's would be (its file is hashed whole), never in clear and never missing."""
    clean = [("1", "1", "view", "10", "5", "1", "", "", "10.0.0.1", "", ""),
             ("2", "1", "like", "10", "5", "2", "", "", "10.0.0.1", "", ""),
             ("3", "2", " VIEW ", "10", "5", "3", "", "", "10.0.0.2", "", "")]
    messy = [("4", "3", "view", "10", "5", "4", "", "", "not-an-ip", "", ""),
             ("soon", "4", "view", "10", "5", "5", "", "", "10.0.0.1", "", ""),
             ("6", "4", "view", "10", "5", "6", "", "", "10.0.0.2", "", "")]
    for name, rows in (("a", clean), ("b", messy)):
        path = write(tmp_path / f"{name}.csv", HEADER + "".join(",".join(r) + "\n"
                                                              for r in rows))
        if suffix == "parquet":
            import pyarrow.csv as pacsv
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in HEADER.strip().split(",")}))
            path.unlink()
            path = tmp_path / f"{name}.parquet"
            pq.write_table(table, path)
    r = ingest([tmp_path], key=key)
    assert r.events["event_id"].to_pylist() == [1, 2, 3, 6]
    like_hash = r.events["ip_hash"][1].as_py()
    assert like_hash is not None
    hashes = r.events["ip_hash"].to_pylist()
    assert hashes[0] is None and hashes[2] is None  # the clean file's views
    assert hashes[3] is not None  # the messy file was hashed whole
    assert r.quarantine["reason"].to_pylist() == ["bad_ip", "bad_time"]
    raw = [json.loads(t) for t in r.quarantine["raw"].to_pylist()]
    assert raw[0]["ip"] is not None and raw[1]["ip"] == like_hash
    assert "10.0.0.1" not in " ".join(r.quarantine["raw"].to_pylist())
    assert "not-an-ip" not in " ".join(r.quarantine["raw"].to_pylist())


def test_typed_parquet_fast_path_matches_the_general_path(tmp_path: Path, key: bytes) -> None:
    import pyarrow.csv as pacsv

    from likelens import sim

    events = sim.simulate(sim.load_scenario("demo", users=300), 3).events
    pq.write_table(events, tmp_path / "e.parquet")
    pacsv.write_csv(events, tmp_path / "e.csv")
    fast = ingest([tmp_path / "e.parquet"], key=key).events
    general = ingest([tmp_path / "e.csv"], key=key).events
    assert fast.num_rows == general.num_rows == events.num_rows
    for col in ("event_id", "ts", "user_id", "action", "video_id", "creator_id", "watch_ms",
                "video_ms", "ip_hash", "ip_net", "device_hash", "region", "text"):
        assert fast[col].to_pylist() == general[col].to_pylist(), col


def test_json_lists_of_nulls_are_read_line_by_line_not_crashing(tmp_path: Path) -> None:
    """Arrow's JSON reader returns a column of lists of nulls with inconsistent offsets (found
    by Schemathesis against the service); such input is read line by line like any other
    doubtful input, in memory and from a file alike."""
    from likelens.ingest import ingest, ingest_raw
    from likelens.ingest.readers import ndjson_to_raw

    body = (b'{"action": "like", "event_id": 0, "ts": 0, "user_id": 0, "video_id": 1}\n'
            b'{"": [null, null], "action": "like", "event_id": 1, "ts": 0, "user_id": 0,'
            b' "video_id": 1, "ip": [null, null]}')
    good, bad = ingest_raw(ndjson_to_raw(body), source="body", key=b"k" * 16)
    assert good["event_id"].to_pylist() == [0]
    assert bad["row"].to_pylist() == [1] and bad["reason"].to_pylist() == ["bad_ip"]
    path = tmp_path / "events.jsonl"
    path.write_bytes(body)
    result = ingest([path], key=b"k" * 16)
    assert result.events.num_rows == 1 and result.quarantine.num_rows == 1


def _reference_ip_hashes(text: str | None, key: bytes) -> tuple:
    """What pseudonymise_ip must give for one address, written the slow, obvious way."""
    import ipaddress

    from likelens.privacy import keyed_hash

    if text is None or not text.strip():
        return None, None, None, None
    t = text.strip()
    try:
        addr = ipaddress.ip_address(t)
    except ValueError:
        return keyed_hash(key, b"bad:" + t.encode()), None, None, False
    bits = 24 if addr.version == 4 else 48
    net = ipaddress.ip_network(f"{addr}/{bits}", strict=False).network_address.packed
    n = keyed_hash(key, b"net:" + net + bytes([bits]))
    sub = n
    if addr.version == 6:
        site = ipaddress.ip_network(f"{addr}/64", strict=False).network_address.packed
        sub = keyed_hash(key, b"net:" + site + bytes([64]))
    return keyed_hash(key, b"ip:" + addr.packed), n, sub, True


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.ip_addresses(v=6).map(str), st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: str(a).upper()),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.text(alphabet="0123456789abcdef:.% ", max_size=24), st.none(),
    st.ip_addresses(v=4).map(lambda a: f" {a}\t")), min_size=1, max_size=40),
    st.booleans(), st.integers(0, 40))
def test_ip_pseudonyms_match_the_reference(texts, dictionary: bool, cut: int) -> None:
    """The fast paths (vectorised IPv4, inet_pton for plain IPv6, prefixes cut from the packed
    bytes; for a plain column, the row kernels and the grouping by value) give exactly what
    ipaddress would, whether the column comes dictionary-encoded or not."""
    import pyarrow as pa

    from likelens.privacy import pseudonymise_ip

    key = b"k" * 40
    chunks = [pa.array(texts[:cut], pa.string()), pa.array(texts[cut:], pa.string())]
    if dictionary:
        chunks = [c.dictionary_encode() for c in chunks]
    got = pseudonymise_ip(pa.chunked_array(chunks, type=chunks[0].type), key)
    rows = list(zip(*(c.to_pylist() for c in got), strict=True))
    assert rows == [_reference_ip_hashes(t, key) for t in texts]


@pytest.mark.parametrize("ids", ["opaque", "digits", "mixed"])
def test_text_ids_take_the_fast_path_with_the_sql_paths_result(tmp_path: Path, key: bytes,
                                                               monkeypatch, ids: str) -> None:
    """String id columns no longer force the SQL path; both give the same tables."""
    import pyarrow.compute as pc

    import likelens.ingest as ing
    from likelens import sim

    result = sim.simulate(sim.load_scenario("zoo", users=2500), 5)
    events = result.events.slice(0, 20_000)
    for c in ("user_id", "video_id", "creator_id"):
        col = pc.cast(events[c], pa.string())
        if ids == "opaque":
            col = pc.binary_join_element_wise("u_", col, "")
        elif ids == "mixed":  # padding, an empty id (null after trimming), digits elsewhere
            vals = col.to_pylist()
            vals[3] = f"  {vals[3]} " if vals[3] is not None else None
            vals[7] = "   " if c == "creator_id" else vals[7]
            col = pa.array(vals, pa.string())
        events = events.set_column(events.schema.get_field_index(c), c, col)
    events = events.set_column(0, "event_id", pc.cast(events["event_id"], pa.string()))
    path = tmp_path / "e.parquet"
    pq.write_table(events, path)
    real = ing.typed_fast_path
    taken: list[bool] = []
    monkeypatch.setattr(ing, "typed_fast_path",
                        lambda t: taken.append(real(t) is not None) or real(t))
    fast = ingest([path], key=key)
    assert taken == [True], "text ids took the fast path"
    calls = []
    monkeypatch.setattr(ing, "typed_fast_path", lambda t: calls.append(1) or None)
    slow = ingest([path], key=key)
    assert calls, "the SQL path ran"

    def plain(t: pa.Table) -> pa.Table:  # the fast path keeps text dictionary-encoded
        return pa.table({c: pc.cast(t[c], t[c].type.value_type)
                         if pa.types.is_dictionary(t[c].type) else t[c]
                         for c in t.column_names})

    assert plain(fast.events).equals(plain(slow.events))
    assert fast.quarantine.equals(slow.quarantine)
    want = pa.string() if ids == "opaque" else pa.int64()
    assert fast.events["user_id"].type == want


def test_a_directory_mixing_parquet_and_csv_reads_as_one_log(tmp_path: Path, key: bytes) -> None:
    """Parquet hands over text as dictionaries, CSV as plain text: the files still concatenate
    (a platform that moved its export from CSV to Parquet mid-day)."""
    d = tmp_path / "mixed"
    d.mkdir()
    pq.write_table(pa.table({"ts": [1, 2], "user_id": [1, 2], "action": ["view", "like"],
                             "video_id": [5, 5], "ip": ["1.2.3.4", "1.2.3.5"],
                             "region": ["PL", "PL"]}), d / "a.parquet")
    write(d / "b.csv", "ts,user_id,action,video_id,ip,region\n3,3,like,5,1.2.3.6,DE\n")
    r = ingest([d], key=key)
    assert r.events["action"].to_pylist() == ["view", "like", "like"]
    assert r.events["region"].to_pylist() == ["PL", "PL", "DE"]
    # The likes' addresses are hashed; a view's is not (nothing reads it: ``_coerce``).
    hashes = r.events["ip_hash"].to_pylist()
    assert hashes[0] is None and None not in hashes[1:] and hashes[1] != hashes[2]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(
    st.ip_addresses(v=6).map(str), st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.ip_addresses(v=6).map(lambda a: str(a).upper()),
    st.text(alphabet="0123456789abcdefABCDEFG:", max_size=42), st.none()), max_size=60))
def test_ipv6_kernel_accepts_only_what_inet_pton_does(texts) -> None:
    """likelens.ipv6 parses plain IPv6 text itself (inside ``ipcolumn.parse_rows``): whatever
    it accepts, inet_pton accepts with the same 16 bytes, and every well-formed plain address
    is accepted (else it would fall back to the slow path)."""
    import socket

    import numpy as np
    import pyarrow as pa

    from likelens.ipcolumn import V6, parse_rows

    kind, high, low = parse_rows(pa.chunked_array([pa.array(texts, pa.string())]))
    ok = kind == V6
    packed = np.column_stack([high, low]).astype(">u8").view(np.uint8)
    for text, parsed, got in zip(texts, ok.tolist(), packed, strict=True):
        try:
            want = socket.inet_pton(socket.AF_INET6, text) if text is not None else None
        except OSError:
            want = None
        assert parsed == (want is not None), text
        if parsed:
            assert got.tobytes() == want, text


def test_a_large_parquet_file_read_in_runs_of_row_groups_is_the_file_read_whole(
        tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of row groups (how a big file is read in bounded memory) give the whole file's
    events, quarantine and row numbers: default ids, a repeated id named by its file row, and
    text ids that look like integers in one run only (read again whole)."""
    import likelens.ingest as ingest_module

    n = 40
    table = pa.table({
        "event_id": [None if i % 7 == 0 else i for i in range(n - 1)] + [3],  # 3 repeats
        "ts": list(range(n)), "user_id": [str(i % 5) for i in range(n - 1)] + ["u-x"],
        "action": ["view", "like"] * (n // 2), "video_id": [i % 3 for i in range(n)],
        "ip": [f"10.0.{i % 4}.{i}" for i in range(n)]})
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, row_group_size=6)
    whole = ingest([path], key=key)
    monkeypatch.setattr(ingest_module, "PIECE_ROWS", 12)
    calls: list[int] = []
    real = ingest_module.read_parquet_row_groups
    monkeypatch.setattr(ingest_module, "read_parquet_row_groups",
                        lambda *a: calls.append(1) or real(*a))
    runs = ingest([path], key=key)
    assert len(calls) == 4  # 40 rows in row groups of 6, runs of 12: four runs
    assert runs.events.equals(whole.events)
    assert runs.quarantine.equals(whole.quarantine)
    assert runs.quarantine["row"].to_pylist() == [n - 1]  # the repeated id, by its file row
    assert pa.types.is_string(runs.events.schema.field("user_id").type)

    same = table.set_column(2, "user_id", pa.array([str(i % 5) for i in range(n)]))
    pq.write_table(same, path, row_group_size=6)
    calls.clear()
    assert ingest([path], key=key).events["user_id"].to_pylist() == (list(range(5)) * 8)[:-1]
    assert len(calls) == 4


def test_watch_times_are_narrowed_only_where_they_fit(
        tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Watch time and video length are held as int32 where a piece's values fit; a run with a
    value past 2**31 ms stays int64 and the file's other runs are promoted to it, values kept."""
    import likelens.ingest as ingest_module

    n = 24
    watch = [1000 * i for i in range(n)]
    watch[20] = 3_000_000_000  # 35 days: only the last run holds it
    table = pa.table({"ts": list(range(n)), "user_id": [i % 4 for i in range(n)],
                      "action": ["view"] * n, "video_id": [1] * n, "watch_ms": watch,
                      "video_ms": [None] * n}, schema=pa.schema([
                          ("ts", pa.int64()), ("user_id", pa.int64()), ("action", pa.string()),
                          ("video_id", pa.int64()), ("watch_ms", pa.int64()),
                          ("video_ms", pa.int64())]))
    path = tmp_path / "w.parquet"
    pq.write_table(table, path, row_group_size=6)
    small = ingest([path], key=key, threads=1)
    monkeypatch.setattr(ingest_module, "PIECE_ROWS", 12)
    runs = ingest([path], key=key, threads=1)
    for got in (small, runs):
        assert got.events.schema.field("watch_ms").type == pa.int64()
        assert got.events["watch_ms"].to_pylist() == watch
        assert got.events["video_ms"].null_count == n
    pq.write_table(table.set_column(4, "watch_ms", pa.array([1000 * i for i in range(n)])),
                   path, row_group_size=6)
    fits = ingest([path], key=key)
    assert fits.events.schema.field("watch_ms").type == pa.int32()
    assert fits.events["watch_ms"].to_pylist() == [1000 * i for i in range(n)]


def test_a_clean_pieces_quarantine_holds_none_of_its_rows(tmp_path: Path, key: bytes) -> None:
    """A piece without bad rows gives an empty quarantine that owns no buffer of the piece:
    a zero-length slice of the coerced table kept every row's file row number and reason
    alive until the end of ingest (1.25 GiB of a 100M-event scan's peak)."""
    from likelens.engine import connect
    from likelens.ingest import read_piece
    from likelens.ingest.readers import READERS

    n = 20_000
    path = tmp_path / "clean.parquet"
    pq.write_table(pa.table({"ts": list(range(n)), "user_id": [i % 50 for i in range(n)],
                             "action": ["view", "like"] * (n // 2),
                             "video_id": [i % 7 for i in range(n)]}), path)
    piece = read_piece(connect(1), path, READERS["parquet"](path), key, 0)
    assert piece.good.num_rows == n and piece.quarantine.num_rows == 0
    assert piece.quarantine.get_total_buffer_size() < 1024


def _decoded(table: pa.Table) -> pa.Table:
    """``table`` with dictionary columns as their values (chunks may differ in dictionary)."""
    return pa.table([pc.cast(c, c.type.value_type) if pa.types.is_dictionary(c.type) else c
                     for c in table.columns], names=table.column_names)


def _assert_views_apart_is_the_log(paths: list[Path], key: bytes) -> None:
    """``ingest(views_apart=True)`` is the whole log split: the engagements with every column
    at their log rows, the views' columns in order, the same quarantine."""
    whole = ingest(paths, key=key)
    apart = ingest(paths, key=key, views_apart=True)
    engagements, views = split_views(whole.events)
    assert _decoded(apart.events).equals(_decoded(engagements))
    assert apart.views is not None and apart.views.equals(views)
    assert apart.quarantine.equals(whole.quarantine)
    assert apart.n_events == whole.events.num_rows


def test_views_apart_is_the_whole_log_split(tmp_path: Path, key: bytes,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated ids among views and engagements, in one file and across files, in runs of
    row groups and whole; integer and text ids; a directory mixing Parquet and CSV."""
    import likelens.ingest as ingest_module

    d = tmp_path / "log"
    d.mkdir()
    n = 40
    pq.write_table(pa.table({
        "event_id": [*range(n - 2), 5, 30],  # a view and a like repeat earlier ids
        "ts": list(range(n)), "user_id": [i % 5 for i in range(n)],
        "action": ["view", "view", "like"] * 13 + ["view"],
        "video_id": [i % 3 for i in range(n)], "watch_ms": list(range(n)),
        "ip": [f"10.0.{i % 4}.{i}" for i in range(n)]}), d / "a.parquet", row_group_size=6)
    pq.write_table(pa.table({"event_id": [37, 40, 41], "ts": [50, 51, 52],  # 37 repeats
                             "user_id": [1, 2, 3], "action": ["view", "like", "view"],
                             "video_id": [1, 1, 2]}), d / "b.parquet")
    write(d / "c.csv", "ts,user_id,action,video_id,event_id\n60,1,view,2,80\n61,9,like,2,81\n")
    _assert_views_apart_is_the_log([d], key)
    assert len(ingest([d], key=key).quarantine) == 3
    monkeypatch.setattr(ingest_module, "PIECE_ROWS", 12)
    _assert_views_apart_is_the_log([d], key)
    _assert_views_apart_is_the_log([d / "b.parquet", d / "c.csv"], key)  # increasing ids
    two = tmp_path / "two"  # ids increasing in each file, a view's repeated across files
    two.mkdir()
    for name, ids in (("x", [1, 2, 3]), ("y", [3, 4])):
        pq.write_table(pa.table({"event_id": ids, "ts": ids, "user_id": ids,
                                 "action": ["view", "like", "view"][:len(ids)],
                                 "video_id": [9] * len(ids)}), two / f"{name}.parquet")
    _assert_views_apart_is_the_log([two], key)
    assert len(ingest([two], key=key).quarantine) == 1
    text = HEADER + "1,1,view,10,5,e1,,,,,\n2,2,like,10,5,e2,,,,,\n3,3,view,10,5,e1,,,,,\n"
    _assert_views_apart_is_the_log([write(tmp_path / "dup.csv", text)], key)
