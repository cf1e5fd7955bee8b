"""The HTTP API (FastAPI): intake, reads, model refresh, ledger proofs, health and metrics.

Every ``/v1`` route names the permission it needs (``auth.GRANTS``); a request without a valid
key gets 401, with a key whose role lacks the permission 403, past its key's rate 429 with
Retry-After. Nothing here logs a key, an address or a device id: request lines carry the route
template, the status, the time and the key's prefix only.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from likelens.errors import InputError, ModelError
from likelens.ledger.api import prove
from likelens.ledger.checkpoint import load_or_create_key, public_pem
from likelens.schema import ACTIONS
from likelens.service import intake
from likelens.service.auth import Caller, KeyChecker, RateLimiter
from likelens.service.intake import authorize
from likelens.service.metrics import Metrics
from likelens.service.models import LoadedModel, load_model, revisions_from_scan
from likelens.service.store import ServiceStore
from likelens.service.stream import StreamReader
from likelens.service.worker import Worker

log = logging.getLogger("likelens.service")


@dataclass
class Settings:
    """How one service instance runs (``likelens serve`` fills it from its options)."""

    data: Path
    database: str
    model: str | None = None
    redis: str | None = None
    stream: str = "likelens:events"
    claim_idle_ms: int = 30_000
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-serve")
    max_body_bytes: int = 16 * 1024 * 1024
    rate_per_key: float = 2000.0
    burst_per_key: float | None = None
    wait_s: float = 30.0
    batch_rows: int = 5000


@dataclass
class Service:
    """What the routes share: the store, the worker, keys, metrics, the model, the ledger key."""

    settings: Settings
    store: ServiceStore
    worker: Worker
    keys: KeyChecker
    limiter: RateLimiter
    metrics: Metrics
    model: LoadedModel
    key: bytes
    stream: StreamReader | None = None
    started: float = field(default_factory=time.time)

    @functools.cached_property
    def signing_key(self) -> Ed25519PrivateKey:
        """The ledger's checkpoint key, from the data directory (made there on first use)."""
        return load_or_create_key(self.settings.data / "ledger-signing.key")


# The body of POST /v1/events in OpenAPI. The handler reads the raw body itself (three
# formats, size-limited while streaming), so the schema is declared here: clients see the
# contract and Schemathesis generates events from it.
_EVENT = {
    "type": "object",
    "description": "One event of the input contract (DESIGN.md); event_id is required here.",
    "required": ["event_id", "ts", "user_id", "action"],
    "properties": {
        "event_id": {"type": ["integer", "string"]},
        "ts": {"type": ["integer", "string"], "description": "ms since epoch, or ISO-8601"},
        "user_id": {"type": ["integer", "string"]},
        "action": {"type": "string", "enum": list(ACTIONS)},
        "video_id": {"type": ["integer", "string", "null"]},
        "creator_id": {"type": ["integer", "string", "null"]},
        "watch_ms": {"type": ["integer", "null"]},
        "video_ms": {"type": ["integer", "null"]},
        "ip": {"type": ["string", "null"]},
        "device_id": {"type": ["string", "null"]},
        "region": {"type": ["string", "null"]},
        "text": {"type": ["string", "null"]},
    },
}
EVENTS_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "array", "items": _EVENT}},
        "application/x-ndjson": {"schema": {"type": "string",
                                            "description": "one event object per line"}},
        "application/vnd.apache.arrow.stream": {"schema": {"type": "string",
                                                           "format": "binary"}},
    },
}


class ModelRequest(BaseModel):
    """A fitted model directory on the service's machine (``SCAN_DIR/model``). If the scan's
    ``engagements.parquet`` sits beside it, earlier decisions the scan judged otherwise are
    revised."""

    path: str
    revise: bool = True


class RequestLog:
    """Pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware on every request):
    one log line (DEBUG for accepted event posts) and one histogram sample per request,
    with the route template and the key's prefix, never the client's address."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            dt = time.perf_counter() - t0
            self.metrics.requests.labels(path, str(status[0])).observe(dt)
            # Accepted event posts come hundreds a second (the metrics count them): their
            # lines are DEBUG, a fifth of such a request's time on the event loop otherwise.
            level = logging.DEBUG if path == intake.PATH and status[0] == 200 else logging.INFO
            log.log(level, "%s %s %d %.1fms key=%s", scope.get("method", "-"), path,
                    status[0], dt * 1000, scope.get("likelens_key", "-"))


def require(permission: str) -> Callable[[Request], Caller]:
    """A dependency: the caller of a valid key whose role grants ``permission`` (401, 403 or
    429 otherwise)."""

    async def check(request: Request) -> Caller:
        # async: checked on the event loop, not on a thread of the pool (a hop per request).
        return authorize(request.app.state.service, request.headers.get("authorization", ""),
                         permission, request.scope)

    return check


Ingest = Annotated[Caller, Depends(require("ingest"))]
Read = Annotated[Caller, Depends(require("read"))]
Admin = Annotated[Caller, Depends(require("admin"))]


def build(service: Service) -> FastAPI:
    """The FastAPI application over a started ``Service``."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.worker.start()
        try:
            yield
        finally:
            service.worker.stop()

    app = FastAPI(title="LikeLens service", version="1", lifespan=lifespan,
                  description="Real-time scoring of engagement events with a fitted LikeLens "
                              "model. Authenticate with `Authorization: Bearer KEY`.")
    app.state.service = service
    m = service.metrics

    app.add_middleware(intake.EventsFastPath, service=service)  # inside RequestLog
    app.add_middleware(RequestLog, metrics=m)
    from likelens.console import cases, routes

    cases.add_groups(service.store, service.model.groups, service.model.version)
    routes.mount(app, service)

    @app.post("/v1/events", summary="Score events (JSON array, NDJSON or Arrow IPC stream)",
              openapi_extra={"requestBody": EVENTS_BODY})
    async def post_events(request: Request, _: Ingest) -> JSONResponse:
        """Declared for the OpenAPI document and the request log's route name; the requests
        themselves are answered by ``intake.EventsFastPath`` with the same ``handle``."""
        return JSONResponse(await intake.handle(service, request.headers, request.stream()))

    @app.get("/v1/engagements/{event_id}", summary="An engagement's decision and revisions")
    def get_engagement(event_id: str, _: Read) -> dict[str, Any]:
        found = service.store.engagement(event_id)
        if found is None:
            raise HTTPException(404, f"no decision for event {event_id!r}")
        return found

    def summary(column: str, value: str, what: str) -> dict[str, Any]:
        found = service.store.summary(column, value)
        if found is None:
            raise HTTPException(404, f"no engagements of {what} {value!r}")
        return found

    @app.get("/v1/accounts/{user_id}", summary="An account's decisions and current evidence")
    def get_account(user_id: str, _: Read) -> dict[str, Any]:
        out = summary("user_id", user_id, "account")
        out["groups"] = service.model.groups_of(user_id)
        return out

    @app.get("/v1/videos/{video_id}", summary="A video's decisions and authentic share")
    def get_video(video_id: str, _: Read) -> dict[str, Any]:
        return summary("video_id", video_id, "video")

    @app.get("/v1/creators/{creator_id}", summary="A creator's decisions and authentic share")
    def get_creator(creator_id: str, _: Read) -> dict[str, Any]:
        return summary("creator_id", creator_id, "creator")

    @app.get("/v1/credits/{creator_id}", summary="A creator's credit balance and statement")
    def get_credits(creator_id: str, _: Read) -> dict[str, Any]:
        from likelens.remedies import credits as C

        rows = C.statement(service.store, creator_id)
        return {"creator_id": creator_id, "balance_micro": C.balance(service.store, creator_id),
                "unit": "micro-credits (1 credit = 1,000,000)", "statement": rows}

    @app.get("/v1/groups", summary="Groups and blocks of the loaded model (paginated)")
    def get_groups(_: Read, offset: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        groups = service.model.groups
        return {"total": len(groups), "offset": offset, "limit": limit,
                "model_version": service.model.version,
                "groups": [g.summary() for g in groups[offset:offset + limit]]}

    @app.get("/v1/groups/{group_id}", summary="One group: its accounts and targets")
    def get_group(group_id: str, _: Read, offset: Annotated[int, Query(ge=0)] = 0,
                  limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict[str, Any]:
        g = service.model.group(group_id)
        if g is None:
            raise HTTPException(404, f"no group {group_id!r} in model "
                                     f"{service.model.version}")
        return g.detail(offset, limit)

    @app.get("/v1/ledger/checkpoint", summary="A signed checkpoint of the evidence ledger")
    def get_checkpoint(_: Read) -> dict[str, Any]:
        cp = service.store.ledger.checkpoint(service.signing_key)
        return {"size": cp.size, "root": cp.root.hex(), "checkpoint": cp.to_text(),
                "public_key": public_pem(service.signing_key)}

    @app.get("/v1/ledger/proof/{index}", summary="Inclusion proof of one ledger record")
    def get_proof(index: int, _: Read) -> dict[str, Any]:
        try:
            return prove(service.store.ledger, service.signing_key, index)
        except InputError as exc:  # outside the ledger
            raise HTTPException(404, str(exc)) from None

    @app.post("/v1/model", summary="Score with another fitted model; revise from its scan")
    def post_model(body: ModelRequest, _: Admin) -> dict[str, Any]:
        try:
            loaded = load_model(body.path)
        except ModelError as exc:
            raise HTTPException(422, str(exc)) from None
        return swap(service, loaded, revise=body.revise)

    @app.get("/healthz", summary="The process is up")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - service.started, 1)}

    @app.get("/readyz", summary="The database (and Redis) answer and the worker commits")
    def readyz() -> JSONResponse:
        checks = {"database": service.store.ping(), "worker": service.worker.healthy}
        if service.stream is not None:
            checks["redis"] = service.stream.ping()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks, "model": service.model.version},
                            status_code=200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        lag = service.worker.queue_depth()
        if service.stream is not None:
            try:
                lag += service.stream.lag()
            except Exception:  # Redis down: /readyz says so
                pass
        m.queue_lag.set(lag)
        m.state_accounts.set(service.worker.scorer.stats()["accounts"])
        return Response(generate_latest(m.registry), media_type="text/plain; version=0.0.4")

    return app


def swap(service: Service, loaded: LoadedModel, *, revise: bool = True) -> dict[str, Any]:
    """Hand ``loaded`` to the worker, record it, and revise earlier decisions from its scan."""
    service.store.record_model(loaded.version, str(loaded.path), loaded.model.info)
    service.worker.swap_model(loaded.model, loaded.version)
    service.model = loaded
    from likelens.console.cases import add_groups

    add_groups(service.store, loaded.groups, loaded.version)
    revised = 0
    if revise and loaded.scan_engagements is not None:
        revised = service.store.revise(
            revisions_from_scan(service.store, loaded.scan_engagements),
            loaded.version, cause=f"scan:{loaded.version}")
        service.metrics.revisions.inc(revised)
    return {"model_version": loaded.version, "revised": revised,
            "groups": len(loaded.groups)}


__all__ = ["Service", "Settings", "build", "swap"]
