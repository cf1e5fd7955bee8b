"""The data contract of DESIGN.md, as data: input columns, actions and the reason vocabularies.

Everything that names a column or a reason imports it from here, so the contract has one home.
"""

from __future__ import annotations

from dataclasses import dataclass

ACTIONS: tuple[str, ...] = ("view", "like", "comment", "share", "follow", "live_join")
ENGAGEMENTS: tuple[str, ...] = ("like", "comment", "share", "follow", "live_join")


@dataclass(frozen=True)
class Column:
    """One input column: its name, whether it is required and what kind of value it holds."""

    name: str
    kind: str  # "time" | "id" | "action" | "count" | "ip" | "text"
    required: bool = False


INPUT_COLUMNS: tuple[Column, ...] = (
    Column("ts", "time", required=True),
    Column("user_id", "id", required=True),
    Column("action", "action", required=True),
    Column("video_id", "id", required=True),  # not needed on `follow` rows
    Column("creator_id", "id"),
    Column("event_id", "id"),
    Column("watch_ms", "count"),
    Column("video_ms", "count"),
    Column("ip", "ip"),
    Column("device_id", "text"),
    Column("region", "text"),
    Column("text", "text"),
)
COLUMN_BY_NAME = {c.name: c for c in INPUT_COLUMNS}
REQUIRED = tuple(c.name for c in INPUT_COLUMNS if c.required)
ID_COLUMNS = tuple(c.name for c in INPUT_COLUMNS if c.kind == "id")

# Why a row went to quarantine.parquet. A row can carry several, joined with "; ".
QUARANTINE_REASONS: dict[str, str] = {
    "missing_value": "a required value is empty (missing_value:<column>)",
    "unknown_action": "action is not one of " + ", ".join(ACTIONS),
    "bad_number": "a number column holds something that is not a non-negative integer",
    "bad_time": "ts is not int ms, a timestamp, or ISO-8601 text with an offset",
    "bad_ip": "ip is not an IPv4 or IPv6 address",
    "duplicate_event_id": "an earlier row already used this event_id",
    "invalid_utf8": "the row holds bytes that are not UTF-8",
    "malformed_row": "the row could not be parsed (wrong field count, broken JSON)",
}



def quarantine_reason(code: str, column: str | None = None) -> str:
    """A quarantine reason as written to quarantine.parquet (``code`` or ``code:column``);
    the one place reason strings come from, so an undocumented one cannot be written."""
    if code not in QUARANTINE_REASONS:
        raise KeyError(f"undocumented quarantine reason {code!r}")
    return f"{code}:{column}" if column else code


# Why an engagement or account was scored as bought. Documented in docs/reasons.md.
REASONS: dict[str, str] = {
    "no_view_before": "liked with no view of the video by the same account before it",
    "low_watch": "watched a small fraction of the video before engaging",
    "isolated_view": "the view came alone, with no feed session around it",
    "fast_sequence": "view, like, comment and share chained within seconds",
    "regular_cadence": "the account engages at machine-regular intervals",
    "shared_device": "the device carries far more accounts than organic devices do",
    "farm_network": "accounts from one network range converge on the same videos",
    "lockstep": "part of a group that engaged the same videos in the same short windows",
    "dense_block": "part of a dense account-video block found by peeling",
    "video_burst": "arrived in a burst the video's own audience does not explain",
    "templated_text": "comment text near-duplicates other accounts' comments",
    "flagged_account": "the account is flagged and this event fits its flagged behaviour",
}
