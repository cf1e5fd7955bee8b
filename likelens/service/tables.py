"""The service's tables, as SQLAlchemy Core metadata: one schema for SQLite and PostgreSQL.

Alembic's migrations (``migrations/versions``) create and change these tables; this module is
what the code reads and writes through, and a test checks that the migrated database matches it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Every engagement's first decision, made once (event_id is the key: a replayed event is
# recognised and not decided again).
decisions = Table(
    "decisions", metadata,
    Column("event_id", String, primary_key=True),
    Column("ts", BigInteger, nullable=False),
    Column("user_id", String, nullable=False, index=True),
    Column("action", String, nullable=False),
    Column("video_id", String, index=True),
    Column("creator_id", String, index=True),
    Column("score", Float, nullable=False),
    Column("flagged", Boolean, nullable=False),
    Column("reasons", Text, nullable=False),  # JSON list
    Column("model_version", String, nullable=False),
    Column("received_at", Float, nullable=False),  # epoch seconds
    Column("decided_at", Float, nullable=False),
    Column("ledger_index", BigInteger, nullable=False),
    # The device and the address range, pseudonymised with the scan's keyed hash (0002): what
    # the console's group page shows of a group's infrastructure, never the raw values.
    Column("device", String),
    Column("net", String),
)

# Later decisions on the same engagement (a batch scan found its group): beside the first one,
# never over it.
revisions = Table(
    "revisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String, nullable=False, index=True),
    Column("score", Float, nullable=False),
    Column("flagged", Boolean, nullable=False),
    Column("reasons", Text, nullable=False),
    Column("model_version", String, nullable=False),
    Column("cause", Text, nullable=False),
    Column("revised_at", Float, nullable=False),
    Column("ledger_index", BigInteger, nullable=False),
)

# Events that broke the input contract: kept with their reason, never dropped.
quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String, nullable=False),
    Column("row", BigInteger, nullable=False),
    Column("raw", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("received_at", Float, nullable=False),
)

# API keys: the SHA-256 of the key, and a short prefix shown in lists and logs.
api_keys = Table(
    "api_keys", metadata,
    Column("prefix", String, primary_key=True),
    Column("key_hash", String, nullable=False),
    Column("role", String, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("note", Text, nullable=False, default=""),
)

# Models the service has scored with, in load order.
models = Table(
    "models", metadata,
    Column("version", String, primary_key=True),
    Column("path", Text, nullable=False),
    Column("loaded_at", Float, nullable=False),
    Column("info", Text, nullable=False),  # JSON
)

# The evidence ledger (RFC 6962 Merkle log, see likelens.ledger) on the same database, so a
# decision and its ledger record commit in one transaction.
ledger_records = Table(
    "ledger_records", metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
    Column("leaf", LargeBinary, nullable=False),
)
ledger_nodes = Table(
    "ledger_nodes", metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)
ledger_checkpoints = Table(
    "ledger_checkpoints", metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("text", Text, nullable=False),
)

# The analyst console (0002). People sign in with a name and a password (argon2 hash); failed
# attempts count towards a lockout.
users = Table(
    "users", metadata,
    Column("name", String, primary_key=True),
    Column("pw_hash", Text, nullable=False),
    Column("role", String, nullable=False),  # analyst | admin
    Column("created_at", Float, nullable=False),
    Column("disabled_at", Float),
    Column("failed", Integer, nullable=False, default=0),
    Column("locked_until", Float),
)

# Signed-in browsers: only the SHA-256 of the cookie's token is stored, with the session's CSRF
# token (sent in every form).
console_sessions = Table(
    "console_sessions", metadata,
    Column("token_hash", String, primary_key=True),
    Column("user_name", String, nullable=False, index=True),
    Column("csrf", String, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# The review queue: a case is a group of the model, or one like of an audit sample (with the
# stratum and inclusion probability it was drawn with, so verdicts feed unbiased estimates). A
# case is claimed by one analyst at a time; its verdict is appended to the evidence ledger.
cases = Table(
    "cases", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String, nullable=False),  # group | sample
    Column("ref", String, nullable=False),  # group id | event id
    Column("model_version", String, nullable=False),
    Column("stratum", String),
    Column("inclusion_prob", Float),
    Column("created_at", Float, nullable=False),
    Column("claimed_by", String, index=True),
    Column("claimed_at", Float),
    Column("verdict", String),  # bought | organic | unsure
    Column("note", Text),
    Column("decided_by", String),
    Column("decided_at", Float),
    Column("ledger_index", BigInteger),
    UniqueConstraint("kind", "ref", "model_version", name="uq_cases_ref"),
)

# Creator credits (0003): a double-entry ledger. Every transaction's postings sum to zero;
# amounts are integer micro-credits. Earnings remember what each engagement earned, so a later
# clawback takes back exactly that, once.
credit_transactions = Table(
    "credit_transactions", metadata,
    Column("txn_id", String, primary_key=True),  # deterministic: replays collide, not repeat
    Column("kind", String, nullable=False),  # earn | clawback | penalty
    Column("creator_id", String, nullable=False, index=True),
    Column("scan", String, nullable=False),
    Column("memo", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)
credit_postings = Table(
    "credit_postings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("txn_id", String, nullable=False, index=True),
    Column("account", String, nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
)
# Flagged likes already counted towards a purchase penalty: a later scan that sees them again
# (overlapping windows) does not penalise the same purchase twice.
credit_purchases = Table(
    "credit_purchases", metadata,
    Column("event_id", String, primary_key=True),
    Column("creator_id", String, nullable=False, index=True),
    Column("penalty_txn", String, nullable=False),
)
credit_earnings = Table(
    "credit_earnings", metadata,
    Column("event_id", String, primary_key=True),
    Column("creator_id", String, nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("earn_txn", String, nullable=False),
    Column("clawback_txn", String),
)
