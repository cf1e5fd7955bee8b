"""A content digest of a scan's output tables, for checking that refactors change nothing."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

TABLES = ("engagements", "accounts", "groups", "videos", "creators")


def table_digest(table: pa.Table) -> str:
    """SHA-256 of the table's column names and values, in row order (the outputs' order is
    itself part of the contract)."""
    body = json.dumps({"columns": table.column_names, "rows": table.to_pydict()},
                      default=str, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()
