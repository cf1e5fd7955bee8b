"""The first schema: decisions, revisions, quarantine, keys, models and the evidence ledger.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("event_id", sa.String, primary_key=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.String, nullable=False, index=True),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("video_id", sa.String, index=True),
        sa.Column("creator_id", sa.String, index=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("model_version", sa.String, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("decided_at", sa.Float, nullable=False),
        sa.Column("ledger_index", sa.BigInteger, nullable=False))
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String, nullable=False, index=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("model_version", sa.String, nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("revised_at", sa.Float, nullable=False),
        sa.Column("ledger_index", sa.BigInteger, nullable=False))
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("row", sa.BigInteger, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False))
    op.create_table(
        "api_keys",
        sa.Column("prefix", sa.String, primary_key=True),
        sa.Column("key_hash", sa.String, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
        sa.Column("note", sa.Text, nullable=False))
    op.create_table(
        "models",
        sa.Column("version", sa.String, primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("loaded_at", sa.Float, nullable=False),
        sa.Column("info", sa.Text, nullable=False))
    op.create_table(
        "ledger_records",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("leaf", sa.LargeBinary, nullable=False))
    op.create_table(
        "ledger_nodes",
        sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False))
    op.create_table(
        "ledger_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("text", sa.Text, nullable=False))


def downgrade() -> None:
    for name in ("ledger_checkpoints", "ledger_nodes", "ledger_records", "models", "api_keys",
                 "quarantine", "revisions", "decisions"):
        op.drop_table(name)
