"""Creator credits: a double-entry ledger (transactions, postings), per-engagement earnings, and
the flagged likes already penalised.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_transactions",
        sa.Column("txn_id", sa.String, primary_key=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("creator_id", sa.String, nullable=False, index=True),
        sa.Column("scan", sa.String, nullable=False),
        sa.Column("memo", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False))
    op.create_table(
        "credit_postings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("txn_id", sa.String, nullable=False, index=True),
        sa.Column("account", sa.String, nullable=False, index=True),
        sa.Column("amount", sa.BigInteger, nullable=False))
    op.create_table(
        "credit_purchases",
        sa.Column("event_id", sa.String, primary_key=True),
        sa.Column("creator_id", sa.String, nullable=False, index=True),
        sa.Column("penalty_txn", sa.String, nullable=False))
    op.create_table(
        "credit_earnings",
        sa.Column("event_id", sa.String, primary_key=True),
        sa.Column("creator_id", sa.String, nullable=False, index=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("earn_txn", sa.String, nullable=False),
        sa.Column("clawback_txn", sa.String))


def downgrade() -> None:
    op.drop_table("credit_earnings")
    op.drop_table("credit_purchases")
    op.drop_table("credit_postings")
    op.drop_table("credit_transactions")
