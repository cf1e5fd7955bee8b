"""Schemathesis against the service's own /openapi.json: generated requests to every operation,
with an admin key, and no answer is a server error (5xx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from likelens import api  # noqa: E402
from likelens.service.app import Settings, build  # noqa: E402
from likelens.service.auth import create_key  # noqa: E402
from likelens.service.run import open_service  # noqa: E402
from likelens.service.store import database_url  # noqa: E402
from tests.conftest import KEY  # noqa: E402

STATE: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(demo_day, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    _, sim_dir = demo_day
    root: Path = tmp_path_factory.mktemp("openapi")
    api.scan([sim_dir / "events.parquet"], key=KEY, out=root / "scan", report=False)
    service = open_service(Settings(data=root / "svc", database=database_url(root / "svc", None),
                                    model=str(root / "scan" / "model"), rate_per_key=0),
                           key=KEY)
    STATE["key"] = create_key(service.store, "admin")[0]
    app = build(service)
    service.worker.start()  # the ASGI transport does not run the lifespan
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        service.worker.stop()


def test_no_server_errors(api_schema) -> None:
    """Every operation, with generated paths, queries and bodies (schemathesis's strategies,
    run by Hypothesis directly: its pytest plugin does not load under this pytest)."""
    from hypothesis import given

    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert len(operations) >= 12
    failures: list[str] = []
    statuses: list[int] = []
    events_ok: list[int] = []
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {STATE['key']}"})
            statuses.append(response.status_code)
            if case.method == "POST" and case.path == "/v1/events":
                events_ok.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}"
                                f" {response.text[:200]}")

        run()
    assert not failures, failures[:5]
    assert len(statuses) >= 3 * len(operations)  # every operation was called, several times
    assert any(s == 200 for s in statuses) and any(400 <= s < 500 for s in statuses)
    assert 200 in events_ok  # events generated from the declared body were decided
