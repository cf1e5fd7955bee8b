"""A content digest of a scan's output tables, for checking that refactors change nothing."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

TABLES = ("engagements", "accounts", "groups", "videos", "creators")


def table_digest(table: pa.Table) -> str:
    """SHA-256 of the table's column names and values, in row order (the outputs' order is
    itself part of the contract). Floats count to 10 significant digits: NumPy picks its
    log and exp kernels by the CPU's vector extensions, and their last bits differ between
    machines (an AVX-512 machine and an AVX2 one disagreed on groups' strength)."""
    rows = {c: [_rounded(v) for v in values] for c, values in table.to_pydict().items()}
    body = json.dumps({"columns": table.column_names, "rows": rows},
                      default=str, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _rounded(v: object) -> object:
    if isinstance(v, float):
        return float(f"{v:.10g}")
    if isinstance(v, list):
        return [_rounded(x) for x in v]
    return v
