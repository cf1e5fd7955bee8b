"""Shared fixtures: one small seeded simulated day and its scan, built once per session."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from likelens import sim
from likelens.privacy import DEMO_KEY

KEY = b"test-key-0123456789abcdef"


@pytest.fixture(scope="session")
def key() -> bytes:
    return KEY


@pytest.fixture(scope="session")
def demo_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[sim.SimResult, Path]:
    """The demo scenario, seed 11, written to disk."""
    result = sim.simulate(sim.load_scenario("demo"), 11)
    out = tmp_path_factory.mktemp("demo_day")
    sim.write(result, out)
    return result, out


@pytest.fixture(scope="session")
def demo_scan(demo_day, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo day scanned once (no report): the scan directory, with its model."""
    from likelens import api

    _, sim_dir = demo_day
    out = tmp_path_factory.mktemp("demo_scan") / "scan"
    api.scan([sim_dir / "events.parquet"], key=KEY, out=out, report=False)
    return out


def require_program(name: str) -> str:
    """Path of a system program; skip without it, except under CI=true where it must exist."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI=true but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


PG = os.environ.get("LIKELENS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def pg_store() -> Iterator:
    """A ServiceStore on a fresh PostgreSQL schema, dropped afterwards. Skips when PostgreSQL
    does not answer, except under CI=true, where it fails."""
    import sqlalchemy as sa

    from likelens.service.store import ServiceStore, database_url

    try:
        import psycopg

        with psycopg.connect(PG, connect_timeout=2):
            pass
    except Exception:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is required under CI=true but does not answer")
        pytest.skip("PostgreSQL does not answer")
    url = database_url(None, PG)
    schema = f"t_{os.getpid()}_{time.monotonic_ns()}"
    admin = sa.create_engine(url)
    with admin.begin() as con:
        con.execute(sa.text(f"CREATE SCHEMA {schema}"))
    store = ServiceStore(url + f"?options=-csearch_path%3D{schema}")
    try:
        yield store
    finally:
        store.close()
        with admin.begin() as con:
            con.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


__all__ = ["DEMO_KEY", "KEY", "PG", "pg_store", "require_program"]
