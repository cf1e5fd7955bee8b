"""The console's routes: sign-in, pages, forms, and the JSON the ledger page verifies.

Every page needs a live session (a signed-out browser is sent to the sign-in page) and names the
role it needs; every form carries the session's CSRF token and is refused without it. Templates
autoescape everything, and responses carry a Content-Security-Policy that allows no inline
script, so text from the log (ids, comments) cannot run as code even if it got through.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import plotly
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from likelens.console import cases, pages, users
from likelens.console.users import Session
from likelens.errors import InputError
from likelens.ledger.api import prove
from likelens.ledger.checkpoint import public_pem
from likelens.schema import REASONS

HERE = Path(__file__).parent
COOKIE = "ll_console"
LOGIN_CSRF = "ll_login_csrf"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' "
                               "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["q"] = lambda v: quote(str(v), safe="")
templates.env.filters["pct"] = lambda v: "–" if v is None or v != v else f"{v:.2%}"
templates.env.globals["REASONS"] = REASONS


class _Redirect(Exception):
    def __init__(self, to: str) -> None:
        self.to = to


def mount(app: FastAPI, service: Any) -> None:
    """Serve the console at /console on ``app`` (the service's FastAPI application)."""
    store = service.store

    @app.exception_handler(_Redirect)
    async def _redirect(_request: Request, exc: _Redirect) -> Response:
        return _secure(RedirectResponse(exc.to, status_code=303))

    @app.exception_handler(StarletteHTTPException)
    async def _error(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/console") or exc.status_code < 400:
            return await http_exception_handler(request, exc)
        s = users.session_of(store, request.cookies.get(COOKIE))
        return render(request, "error.html", s, status=exc.status_code,
                      code=exc.status_code, message=str(exc.detail))

    app.mount("/console/static", StaticFiles(directory=str(HERE / "static")),
              name="console-static")
    r = APIRouter(prefix="/console", include_in_schema=False)

    def session(request: Request, role: str = "analyst") -> Session:
        s = users.session_of(store, request.cookies.get(COOKIE))
        if s is None:
            raise _Redirect("/console/login?next=" + quote(request.url.path, safe="/"))
        if role == "admin" and not s.user.admin:
            raise HTTPException(403, "this page is for admins")
        return s

    async def form(request: Request, s: Session) -> dict[str, str]:
        data = {k: str(v) for k, v in (await request.form()).items()}
        if not users.csrf_ok(s, data.get("csrf") or request.headers.get("x-csrf-token")):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and retry")
        return data

    def render(request: Request, name: str, s: Session | None, status: int = 200,
               **ctx: Any) -> Response:
        ctx |= {"me": s.user if s else None, "csrf": s.csrf if s else "",
                "model_version": service.model.version, "path": request.url.path}
        return _secure(templates.TemplateResponse(request, name, ctx, status_code=status))

    @r.get("/login")
    def login_page(request: Request, next: str = "/console") -> Response:
        token = secrets.token_urlsafe(24)
        resp = render(request, "login.html", None, next=_local(next), login_csrf=token,
                      error=None)
        _cookie(request, resp, LOGIN_CSRF, token, 600)
        return resp

    @r.post("/login")
    async def login(request: Request) -> Response:
        data = {k: str(v) for k, v in (await request.form()).items()}
        sent, kept = data.get("csrf", ""), request.cookies.get(LOGIN_CSRF, "")
        nxt = _local(data.get("next", "/console"))
        if not sent or not kept or not secrets.compare_digest(sent, kept):
            raise HTTPException(403, "missing or wrong CSRF token: reload the sign-in page")
        try:
            token, _ = users.sign_in(store, data.get("name", ""), data.get("password", ""))
        except users.SignInRefused as exc:
            again = secrets.token_urlsafe(24)
            resp = render(request, "login.html", None, status=401, next=nxt,
                          login_csrf=again, error=str(exc))
            _cookie(request, resp, LOGIN_CSRF, again, 600)
            return resp
        resp = _secure(RedirectResponse(nxt, status_code=303))
        _cookie(request, resp, COOKIE, token, users.SESSION_S)
        resp.delete_cookie(LOGIN_CSRF, path="/console")
        return resp

    @r.post("/logout")
    async def logout(request: Request) -> Response:
        s = session(request)
        await form(request, s)
        users.sign_out(store, s)
        resp = _secure(RedirectResponse("/console/login", status_code=303))
        resp.delete_cookie(COOKIE, path="/console")
        return resp

    @r.get("")
    def overview(request: Request) -> Response:
        s = session(request)
        counts = pages.flags_by_reason(store)
        model = service.model
        return render(
            request, "overview.html", s, totals=pages.totals(store),
            over_time=pages.figure_json(pages.flagged_over_time(store)),
            reasons=counts, reasons_fig=pages.figure_json(pages.reasons_figure(counts)),
            groups=sorted(model.groups, key=lambda g: -len(g.accounts))[:10],
            lag=service.worker.queue_depth(), queue=cases.counts(store),
            estimates=cases.estimates(store, model.likes(), model.version),
            label_free=model.model.fusion.estimated_fpr,
            threshold=model.model.fusion.threshold)

    @r.get("/queue")
    def queue(request: Request, done: int | None = None) -> Response:
        s = session(request)
        return render(request, "queue.html", s, counts=cases.counts(store),
                      held=cases.held(store, s.user.name),
                      decided=cases.cases(store, state="decided", limit=30),
                      open_cases=cases.cases(store, state="open", limit=30), done=done)

    @r.post("/queue/claim")
    async def claim(request: Request) -> Response:
        s = session(request)
        data = await form(request, s)
        got = cases.claim(store, s.user.name, kind=data.get("kind") or None)
        if got is None:
            return _secure(RedirectResponse("/console/queue", status_code=303))
        return _secure(RedirectResponse(f"/console/cases/{got['id']}", status_code=303))

    @r.get("/cases/{case_id}")
    def case_page(request: Request, case_id: int) -> Response:
        s = session(request)
        c = cases.case(store, case_id)
        if c is None:
            raise HTTPException(404, f"no case {case_id}")
        ctx: dict[str, Any] = {"case": c, "mine": c["claimed_by"] == s.user.name}
        if c["kind"] == "group":
            g = service.model.group(c["ref"])
            ctx["group"] = g
            ctx["g"] = pages.group_page(g, pages.group_rows(store, g)) if g else None
            if ctx["g"]:
                ctx["timeline"] = pages.figure_json(ctx["g"]["timeline"])
        else:
            row = service.model.scan_row(c["ref"])
            ctx["scan_row"], ctx["decision"] = row, store.engagement(c["ref"])
            acct = store.summary("user_id", str(row["user_id"]), limit=30) if row else None
            ctx["history"] = pages.history(acct["latest"]) if acct else []
            ctx["like_when"] = pages.when_any(row.get("ts")) if row else "–"
        return render(request, "case.html", s, **ctx)

    @r.post("/cases/{case_id}/verdict")
    async def verdict(request: Request, case_id: int) -> Response:
        s = session(request)
        data = await form(request, s)
        try:
            idx = cases.decide(store, case_id, s.user.name, data.get("verdict", ""),
                               data.get("note", ""))
        except InputError as exc:
            raise HTTPException(409, str(exc)) from None
        return _secure(RedirectResponse(f"/console/queue?done={idx}", status_code=303))

    @r.post("/cases/{case_id}/release")
    async def release_case(request: Request, case_id: int) -> Response:
        s = session(request)
        await form(request, s)
        cases.release(store, case_id, s.user.name)
        return _secure(RedirectResponse("/console/queue", status_code=303))

    @r.get("/groups")
    def groups(request: Request, offset: int = 0) -> Response:
        s = session(request)
        gs = service.model.groups
        offset = max(0, offset)
        return render(request, "groups.html", s, groups=gs[offset:offset + 50],
                      total=len(gs), offset=offset)

    @r.get("/groups/{group_id:path}")
    def group(request: Request, group_id: str) -> Response:
        s = session(request)
        g = service.model.group(group_id)
        if g is None:
            raise HTTPException(404, f"no group {group_id!r} in the loaded model")
        page = pages.group_page(g, pages.group_rows(store, g))
        return render(request, "group.html", s, group=g, g=page,
                      timeline=pages.figure_json(page["timeline"]))

    def entity(request: Request, column: str, value: str, kind: str) -> Response:
        s = session(request)
        found = store.summary(column, value, limit=100)
        if found is None:
            raise HTTPException(404, f"no engagements of {kind} {value!r}")
        extra: dict[str, Any] = {}
        if kind == "account":
            extra["groups"] = service.model.groups_of(value)
        return render(request, "entity.html", s, kind=kind, value=value, found=found,
                      rows=pages.history(found["latest"]), **extra)

    @r.get("/accounts/{user_id:path}")
    def account(request: Request, user_id: str) -> Response:
        return entity(request, "user_id", user_id, "account")

    @r.get("/videos/{video_id:path}")
    def video(request: Request, video_id: str) -> Response:
        return entity(request, "video_id", video_id, "video")

    @r.get("/creators/{creator_id:path}")
    def creator(request: Request, creator_id: str) -> Response:
        return entity(request, "creator_id", creator_id, "creator")

    @r.post("/audit/{creator_id:path}")
    async def audit(request: Request, creator_id: str) -> Response:
        """The signed brand audit report of a creator, from the loaded model's scan, as a
        download (its payload's hash goes to the service's evidence ledger)."""
        from likelens.remedies import audit as A

        s = session(request)
        await form(request, s)
        scan_dir = Path(service.model.path).parent
        try:
            data = A.payload(creator_id, [scan_dir])
        except InputError as exc:
            raise HTTPException(409, str(exc)) from None
        with store.transaction():
            signature, index = A.sign_with(service.signing_key, store.ledger, data)
        page = A.render(data, signature, public_pem(service.signing_key), index)
        name = "".join(ch if ch.isalnum() else "_" for ch in creator_id)[:60]
        return Response(page, media_type="text/html", headers={
            "Content-Disposition": f'attachment; filename="audit-{name}.html"',
            "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    @r.get("/engagements/{event_id:path}")
    def engagement(request: Request, event_id: str) -> Response:
        s = session(request)
        found = store.engagement(event_id)
        if found is None:
            raise HTTPException(404, f"no decision for event {event_id!r}")
        return render(request, "engagement.html", s, e=found, when=pages.history([found])[0],
                      scan_row=service.model.scan_row(event_id))

    @r.get("/ledger")
    def ledger(request: Request, index: int | None = None) -> Response:
        s = session(request)
        cp = store.ledger.checkpoint(service.signing_key)
        return render(request, "ledger.html", s, checkpoint=cp.to_text(), size=cp.size,
                      public_key=public_pem(service.signing_key), index=index)

    @r.get("/ledger/proof/{index}")
    def ledger_proof(request: Request, index: int) -> Response:
        session(request)
        try:
            bundle = prove(store.ledger, service.signing_key, index)
        except InputError as exc:
            raise HTTPException(404, str(exc)) from None
        return _secure(JSONResponse(bundle))

    @r.get("/search")
    def search(request: Request, q: str = "") -> Response:
        s = session(request)
        hits = pages.search(store, {g.id: g for g in service.model.groups}, q)
        if len(hits) == 1:
            return _secure(RedirectResponse(hits[0][2], status_code=303))
        return render(request, "search.html", s, q=q, hits=hits)

    @r.get("/admin")
    def admin(request: Request) -> Response:
        s = session(request, "admin")
        likes = service.model.likes()
        return render(request, "admin.html", s, people=users.list_users(store),
                      likes=likes.num_rows if likes is not None else 0,
                      counts=cases.counts(store))

    @r.post("/admin/sample")
    async def draw_sample(request: Request) -> Response:
        s = session(request, "admin")
        data = await form(request, s)
        likes = service.model.likes()
        if likes is None:
            raise HTTPException(409, "the loaded model has no scan beside it to sample from")
        try:
            size, seed = int(data.get("size", "0")), int(data.get("seed", "0"))
            cases.add_sample(store, likes, size, seed, service.model.version)
        except (ValueError, InputError) as exc:
            raise HTTPException(422, f"sample: {exc}") from None
        return _secure(RedirectResponse("/console/queue", status_code=303))

    @r.get("/verdicts.csv")
    def verdicts_csv(request: Request) -> Response:
        """The audit sample's verdicts in the form `likelens review estimate` reads."""
        session(request)
        t = cases.sample_verdicts(store, service.model.version)
        lines = ["event_id,bought"] + [
            f"{json.dumps(e)},{'' if b != b else str(bool(b)).lower()}"
            for e, b in zip(t["event_id"].to_pylist(), t["bought"].to_pylist(), strict=True)]
        return _secure(Response("\n".join(lines) + "\n", media_type="text/csv"))

    app.include_router(r)

    @app.get("/console/static-plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        return FileResponse(PLOTLY_JS, media_type="text/javascript",
                            headers={"Cache-Control": "max-age=86400"})


def _local(path: str) -> str:
    """Only a path inside the console may be a redirect target (no open redirect)."""
    return path if path.startswith("/console") and not path.startswith("//") else "/console"


def _cookie(request: Request, resp: Response, name: str, value: str, max_age: int) -> None:
    resp.set_cookie(name, value, max_age=max_age, path="/console", httponly=True,
                    samesite="strict", secure=request.url.scheme == "https")


def _secure(resp: Response) -> Response:
    resp.headers.update(HEADERS)
    return resp
