"""``POST /v1/events``: the request that arrives hundreds of times a second.

At 500 one-event requests a second, FastAPI's routing (every console and API route is matched
in turn), its dependency solving and its exception layers cost more of the event loop than the
request's own work, on the one GIL the deciding worker also needs; the service's latency was
mostly those requests waiting for each other. ``EventsFastPath`` answers this one route as plain
ASGI, inside the application's middleware (so ``RequestLog`` still times and logs it), with the
same checks and answers (``authorize`` and ``handle`` are the ones the FastAPI routes use). The
declared route stays for the OpenAPI document and the request log's route name; its body calls
the same ``handle`` but is reached only if this middleware is taken out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.ipc as ipc
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from likelens.errors import LikeLensError, ServiceError
from likelens.service.auth import Caller
from likelens.service.online import Decision

if TYPE_CHECKING:
    from likelens.service.app import Service

PATH = "/v1/events"
ARROW_TYPES = ("application/vnd.apache.arrow.stream", "application/vnd.apache.arrow.file")


def authorize(service: Service, header: str, permission: str, scope: Scope) -> Caller:
    """The caller of the ``Authorization`` header's key if its role grants ``permission``;
    401, 403, 429 or 503 (keys unreadable) otherwise. The key's prefix goes into the scope
    for the request's log line."""
    scheme, _, key = header.partition(" ")
    try:
        caller = service.keys.check(key.strip()) if scheme.lower() == "bearer" else None
    except ServiceError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
    if caller is None:
        raise HTTPException(401, "a valid API key is required (Authorization: Bearer KEY)",
                            headers={"WWW-Authenticate": "Bearer"})
    scope["likelens_key"] = caller.prefix
    if not caller.may(permission):
        raise HTTPException(403, f"role {caller.role!r} may not {permission}")
    wait = service.limiter.take(caller.prefix)
    if wait > 0:
        raise HTTPException(429, "rate limit of this key reached",
                            headers={"Retry-After": str(max(1, round(wait + 0.5)))})
    return caller


async def handle(service: Service, headers: Headers, chunks: AsyncIterator[bytes]
                 ) -> dict[str, Any]:
    """Read the body (413 past the limit), queue its events and wait for their decisions;
    the answer's JSON. Raises HTTPException for what the client must change or retry."""
    declared = headers.get("content-length")
    limit = service.settings.max_body_bytes
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body over {limit} bytes")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"body over {limit} bytes")
    lines = body_lines(bytes(body), headers.get("content-type", ""))
    if not lines:
        raise HTTPException(400, "no events in the body")
    fut = service.worker.submit(lines, "http")
    try:
        # Awaited on the event loop: no thread is held while the worker decides.
        out = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)),
                                     service.settings.wait_s)
    except TimeoutError:
        raise HTTPException(503, "not decided in time (is the database up? see /readyz); "
                                 "the events stay queued and will be decided",
                            headers={"Retry-After": "1"}) from None
    except LikeLensError as exc:
        raise HTTPException(422, str(exc)) from None
    got = {d.event_id for d in out.decisions}
    version = service.worker.version
    return {
        "accepted": len(out.ids), "decided": len(out.decisions),
        "already_decided": [i for i, a in zip(out.ids, out.actions, strict=True)
                            if a != "view" and i not in got],
        "decisions": [decision(d, version) for d in out.decisions],
        "quarantined": [{"row": q["row"], "reason": q["reason"]} for q in out.quarantined],
    }


class EventsFastPath:
    """Pure ASGI middleware that answers ``POST /v1/events`` itself (see the module
    docstring) and hands every other request on."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service
        self._route: object | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route or self._find_route(scope)
        headers = Headers(scope=scope)
        try:
            authorize(self.service, headers.get("authorization", ""), "ingest", scope)
            response = JSONResponse(await handle(self.service, headers, _chunks(receive)))
        except HTTPException as exc:  # answered as FastAPI's own handler answers it
            response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                    headers=exc.headers)
        except ClientDisconnect:
            return  # nobody left to answer
        await response(scope, receive, send)

    def _find_route(self, scope: Scope) -> object | None:
        """The declared route, so the request log names its template like any other."""
        for route in getattr(scope.get("app"), "routes", ()):
            if getattr(route, "path", None) == PATH and "POST" in getattr(route, "methods", ()):
                self._route = route
                break
        return self._route


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def body_lines(body: bytes, content_type: str) -> list[bytes]:
    """A request body as NDJSON lines, one event each: from an Arrow IPC stream or file, a
    JSON array, or NDJSON (blank lines dropped; a quarantined row's number counts the
    others)."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in ARROW_TYPES:
        try:
            reader = (ipc.open_stream(body) if ctype.endswith("stream")
                      else ipc.open_file(pa.BufferReader(body)))
            table = reader.read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise HTTPException(400, f"not an Arrow IPC body ({exc})") from None
        return [json.dumps(r, default=str).encode() for r in table.to_pylist()]
    if body.lstrip().startswith(b"["):
        try:
            items = json.loads(body)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise HTTPException(400, f"not a JSON array: {exc}") from None
        if not isinstance(items, list):
            raise HTTPException(400, "a JSON body must be an array of events")
        return [json.dumps(i).encode() for i in items]
    return [line for line in body.splitlines() if line.strip()]


def decision(d: Decision, version: str) -> dict[str, Any]:
    return {"event_id": d.event_id, "score": round(d.score, 6), "flagged": d.flagged,
            "reasons": d.reasons, "model_version": version}


__all__ = ["EventsFastPath", "authorize", "body_lines", "decision", "handle"]
