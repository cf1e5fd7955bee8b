"""Start a service instance from its settings: store (migrated), model, stream, worker, app."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI

from likelens.errors import ServiceError
from likelens.service.app import Service, Settings, build
from likelens.service.auth import KeyChecker, RateLimiter
from likelens.service.metrics import Metrics
from likelens.service.models import LoadedModel, load_model
from likelens.service.store import ServiceStore, database_url
from likelens.service.stream import StreamReader
from likelens.service.worker import Worker


def open_store(data: Path | None, database: str | None) -> ServiceStore:
    return ServiceStore(database_url(data, database))


def _latest_model(store: ServiceStore) -> str | None:
    import sqlalchemy as sa

    from likelens.service import tables as T

    with store.engine.connect() as con:
        row = con.execute(sa.select(T.models.c.path).order_by(
            T.models.c.loaded_at.desc()).limit(1)).first()
    return str(row[0]) if row else None


def open_service(settings: Settings, *, key: bytes) -> Service:
    """Everything a running service needs, checked before the port opens: a database that
    answers (migrated to the newest schema), a model that verifies, a Redis that answers."""
    store = ServiceStore(settings.database)
    path = settings.model or _latest_model(store)
    if path is None:
        raise ServiceError("no model: pass --model SCAN_DIR/model (written by `likelens scan`)")
    loaded: LoadedModel = load_model(path)
    store.record_model(loaded.version, str(loaded.path), loaded.model.info)
    stream = None
    if settings.redis:
        try:
            stream = StreamReader(settings.redis, settings.consumer, stream=settings.stream,
                                  claim_idle_ms=settings.claim_idle_ms)
        except Exception as exc:
            raise ServiceError(f"cannot reach Redis at {settings.redis.split('@')[-1]} "
                               f"({exc.__class__.__name__})") from None
    metrics = Metrics()
    worker = Worker(store, loaded.model, loaded.version, key=key, metrics=metrics,
                    stream=stream, batch_rows=settings.batch_rows)
    return Service(settings, store, worker, KeyChecker(store),
                   RateLimiter(settings.rate_per_key, settings.burst_per_key), metrics, loaded,
                   key, stream)


def make_app(settings: Settings, *, key: bytes) -> FastAPI:
    return build(open_service(settings, key=key))


def configure_logging(level: str = "info") -> None:
    """One line per request from our middleware (accepted event posts at DEBUG); uvicorn's
    access log (which prints the client's address) stays off."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("likelens").setLevel(level.upper())  # not every library's debug lines
