"""The analyst console: users, browser sessions, the review queue; decisions gain the
pseudonymised device and address range.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("device", sa.String, nullable=True))
        batch.add_column(sa.Column("net", sa.String, nullable=True))
    op.create_table(
        "users",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("pw_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("disabled_at", sa.Float),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.Float))
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String, primary_key=True),
        sa.Column("user_name", sa.String, nullable=False, index=True),
        sa.Column("csrf", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False))
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("ref", sa.String, nullable=False),
        sa.Column("model_version", sa.String, nullable=False),
        sa.Column("stratum", sa.String),
        sa.Column("inclusion_prob", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("claimed_by", sa.String, index=True),
        sa.Column("claimed_at", sa.Float),
        sa.Column("verdict", sa.String),
        sa.Column("note", sa.Text),
        sa.Column("decided_by", sa.String),
        sa.Column("decided_at", sa.Float),
        sa.Column("ledger_index", sa.BigInteger),
        sa.UniqueConstraint("kind", "ref", "model_version", name="uq_cases_ref"))


def downgrade() -> None:
    op.drop_table("cases")
    op.drop_table("console_sessions")
    op.drop_table("users")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("net")
        batch.drop_column("device")
