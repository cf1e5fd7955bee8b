"""The embedded engine's one DuckDB connection setup, shared by ingest and the features.

Every connection a scan opens is made here, so ``--threads``, the spill directory and the
quiet terminal apply to all of them (ingest used to open its own and ignore ``--threads``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection for one scan: no progress bar on the terminal, and
    spilling (joins, sorts larger than memory) into the system's temporary directory."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    spill = Path(tempfile.gettempdir()) / "likelens-duckdb"
    con.execute(f"SET temp_directory = '{spill.as_posix()}'")
    return con
