"""The console's pages. Thin: each page reads through the API's own handlers or the domain
modules, each action calls the API handler that does it (the same transaction and audit
entry), and each page admits exactly the roles of the API endpoint it stands for
(`deps.roles_of`). A refusal is audited as the API audits it and shown as a page."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import func, select

from escrow.canonical import as_utc, parse_time
from vault import anchor, audit, retention, store, tokens, warrants
from vault.api import deps
from vault.api.context import VaultContext
from vault.api.deps import Caller, endpoint, get_ctx
from vault.api.errors import audit_refusal, one_line
from vault.api.routers import admin as admin_api
from vault.api.routers import audit as audit_api
from vault.api.routers import requests as requests_api
from vault.api.routers import warrants as warrants_api
from vault.api.schemas import CameraIn, RequestIn, RevokeIn, WarrantIn
from vault.console import charts
from vault.console.session import (
    COOKIE,
    LOGIN_COOKIE,
    ConsoleKey,
    Session,
    check_csrf,
    login_nonce,
    open_session,
    read_session,
)
from vault.models import SealedRecordRow
from vault.refusals import Refused

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)


def _t(d) -> str:
    """A time as people read it on every page (the footer says UTC)."""
    if d is None:
        return ""
    if isinstance(d, str):
        d = datetime.fromisoformat(d)
    return as_utc(d).strftime("%Y-%m-%d %H:%M")


def _dur(seconds: float) -> str:
    s = int(seconds)
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s / 3600:.1f} h"


def _short(v: object) -> str:
    """A detail value cut for a table cell (the entry's page shows it whole)."""
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


templates.env.filters.update(
    t=_t, hm=lambda d: as_utc(d).strftime("%H:%M:%S"), dur=_dur, short=_short
)

# Each page and action stands for an API endpoint and admits its roles.
JUDGE = deps.roles_of(deps.JudgeCaller)
INVESTIGATOR = deps.roles_of(deps.InvestigatorCaller)
TRUSTEE = deps.roles_of(deps.TrusteeCaller)
AUDITOR = deps.roles_of(deps.AuditorCaller)  # GET /audit, GET /retention/report
CAMERA_READERS = deps.roles_of(deps.AdminOrAuditor)  # GET /cameras
ADMIN = deps.roles_of(deps.AdminCaller)  # GET /tokens, POST /cameras

HOME = {
    "judge": "/console/judge",
    "investigator": "/console/investigator",
    "trustee": "/console/trustee",
    "auditor": "/console/auditor",
    "admin": "/console/cameras",
}
NAV = [
    ("Warrants", "/console/judge", JUDGE),
    ("Investigations", "/console/investigator", INVESTIGATOR),
    ("Approval queue", "/console/trustee", TRUSTEE),
    ("Audit trail", "/console/auditor", AUDITOR),
    ("Retention", "/console/retention", AUDITOR),
    ("Cameras", "/console/cameras", CAMERA_READERS),
    ("Tokens", "/console/tokens", ADMIN),
]


class NeedLogin(Exception):
    def __init__(self, why: str = ""):
        self.why = why


class Denied(Exception):
    """A page or action the caller's role may not reach (403), already audited."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


def console_key(ctx: VaultContext) -> ConsoleKey:
    return ConsoleKey(ctx.keystore.root)


def current(request: Request) -> tuple[Caller, Session] | None:
    """The signed-in caller, if the cookie is genuine, unexpired, and its token still valid."""
    ctx = get_ctx(request)
    now = ctx.clock()
    sess = read_session(console_key(ctx), request.cookies.get(COOKIE), now)
    if sess is None:
        return None
    try:
        tok = tokens.authenticate_id(ctx.factory, sess.token_id, now, ctx.authority_key)
    except tokens.Unauthorized as exc:
        audit.record(
            ctx.factory,
            "anonymous",
            "auth.refused",
            {"endpoint": endpoint(request), "why": str(exc), "token": sess.token_id},
            now,
        )
        return None
    caller = Caller(tok.id, tok.name, tok.role, tok.trustee_index)
    request.state.caller = caller
    return caller, sess


def require(request: Request, roles: tuple[str, ...]) -> tuple[Caller, Session]:
    """The caller if signed in with one of `roles`; else to the login page, or a 403 page
    with an `access.denied` entry written as the API writes it."""
    who = current(request)
    if who is None:
        raise NeedLogin("session expired or signed out" if request.cookies.get(COOKIE) else "")
    caller, sess = who
    if caller.role not in roles:
        ctx = get_ctx(request)
        where = endpoint(request)
        audit.record(
            ctx.factory,
            caller.actor,
            "access.denied",
            {"endpoint": where, "role": caller.role, "allowed": list(roles)},
            ctx.clock(),
        )
        raise Denied(f"role {caller.role!r} may not open {request.url.path}")
    return caller, sess


def require_post(
    request: Request, roles: tuple[str, ...], csrf: str | None
) -> tuple[Caller, Session]:
    """As `require`, for a form: its CSRF token must be this session's (else 403, audited)."""
    caller, sess = require(request, roles)
    ctx = get_ctx(request)
    if not check_csrf(sess.csrf(console_key(ctx)), csrf):
        audit_refusal(request, Refused("CSRF token missing or wrong", 403))
        raise Denied("the form's CSRF token is missing or wrong: reload the page and retry")
    return caller, sess


def render(
    request: Request, name: str, status: int = 200, who: tuple | None = None, **data
) -> HTMLResponse:
    caller, sess = who if who else (None, None)
    ctx = get_ctx(request)
    nav = [(label, url) for label, url, roles in NAV if caller and caller.role in roles]
    return templates.TemplateResponse(
        request,
        name,
        {
            "caller": caller,
            "csrf": sess.csrf(console_key(ctx)) if sess else "",
            "nav": nav,
            "now": ctx.clock(),
            **data,
        },
        status_code=status,
    )


def refused_page(request: Request, exc: Exception, who) -> HTMLResponse:
    """A domain refusal (Refused): audited like the API's, shown with its status."""
    status = audit_refusal(request, exc)
    return render(request, "error.html", status, who, message=str(exc), status_code=status)


def invalid_page(request: Request, exc: ValidationError, who) -> HTMLResponse:
    return render(request, "error.html", 422, who, message=one_line(exc.errors()), status_code=422)


def svg(text: str) -> Response:
    return Response(text, media_type="image/svg+xml")


def utc_field(value: str | None) -> str | None:
    """A datetime-local field (the console's times are UTC) as ISO 8601 with its zone; a
    value that names its own zone keeps it. Unreadable text is passed on for the schema (or
    audit_time) to refuse in one line."""
    if not value or not value.strip():
        return None
    try:
        d = parse_time(value.strip())
    except ValueError:
        return value.strip()
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).isoformat()


Csrf = Annotated[str | None, Form()]


# --- signing in ----------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def index(request: Request):
    who = current(request)
    if who:
        return RedirectResponse(HOME[who[0].role], 303)
    return RedirectResponse("/console/login", 303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, why: str = ""):
    nonce = login_nonce()
    resp = render(request, "login.html", login_csrf=nonce, why=why[:200])
    resp.set_cookie(
        LOGIN_COOKIE, nonce, max_age=600, httponly=True, samesite="strict", path="/console/login"
    )
    return resp


def _cookie_secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=200)] = "",
    csrf: Csrf = None,
):
    """Exchange a role's token for a session cookie: the token is never kept by the browser."""
    ctx = get_ctx(request)
    now = ctx.clock()
    if not check_csrf(request.cookies.get(LOGIN_COOKIE) or "", csrf):
        audit_refusal(request, Refused("login without the form's CSRF token", 403))
        return render(request, "error.html", 403, message="reload the sign-in page and retry")
    try:
        tok = tokens.authenticate(ctx.factory, token.strip(), now, ctx.authority_key)
    except tokens.Unauthorized as exc:
        detail = {"endpoint": endpoint(request), "why": str(exc)}
        if exc.token_id:
            detail["token"] = exc.token_id
        audit.record(ctx.factory, "anonymous", "auth.refused", detail, now)
        return render(request, "login.html", 401, login_csrf=csrf, why=f"refused: {exc}")
    if tok.role not in HOME:
        return render(request, "login.html", 403, login_csrf=csrf, why="cameras have no console")
    _, cookie = open_session(console_key(ctx), tok.id, now, ctx.console_session)
    caller = Caller(tok.id, tok.name, tok.role, tok.trustee_index)
    audit.record(ctx.factory, caller.actor, "console.login", {"token": tok.id}, now)
    resp = RedirectResponse(HOME[tok.role], 303)
    resp.set_cookie(
        COOKIE,
        cookie,
        max_age=int(ctx.console_session.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
        path="/console",
    )
    resp.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return resp


@router.post("/logout")
def logout(request: Request, csrf: Csrf = None):
    who = current(request)
    if who and check_csrf(who[1].csrf(console_key(get_ctx(request))), csrf):
        ctx = get_ctx(request)
        audit.record(ctx.factory, who[0].actor, "console.logout", {}, ctx.clock())
    resp = RedirectResponse("/console/login", 303)
    resp.delete_cookie(COOKIE, path="/console")
    return resp


# --- judge ---------------------------------------------------------------------------------


@router.get("/judge", response_class=HTMLResponse)
def judge_home(request: Request):
    who = require(request, JUDGE)
    ws = warrants_api.list_warrants(request, who[0])
    return render(request, "judge.html", who=who, warrants=list(reversed(ws)))


@router.post("/judge/warrants")
def judge_issue(
    request: Request,
    case_ref: Annotated[str, Form()] = "",
    legal_basis: Annotated[str, Form()] = "",
    cameras: Annotated[str, Form()] = "",
    window_start: Annotated[str, Form()] = "",
    window_end: Annotated[str, Form()] = "",
    not_after: Annotated[str, Form()] = "",
    not_before: Annotated[str, Form()] = "",
    max_records: Annotated[str, Form()] = "",
    csrf: Csrf = None,
):
    who = require_post(request, JUDGE, csrf)
    caller = who[0]
    ctx = get_ctx(request)
    try:
        body = WarrantIn(
            case_ref=case_ref,
            legal_basis=legal_basis,
            cameras=[c for c in cameras.replace(",", " ").split() if c],
            window_start=utc_field(window_start),
            window_end=utc_field(window_end),
            not_before=utc_field(not_before) or ctx.clock().isoformat(),
            not_after=utc_field(not_after),
            max_records=int(max_records) if max_records.strip().isdigit() else None,
        )
        w = warrants_api.issue(body, request, caller)
    except ValidationError as exc:
        return invalid_page(request, exc, who)
    except Refused as exc:
        return refused_page(request, exc, who)
    return RedirectResponse(f"/console/judge/warrants/{w.id}", 303)


def _timeline_span(w) -> tuple:
    span = max(as_utc(w.window_end) - as_utc(w.window_start), timedelta(hours=1))
    return as_utc(w.window_start) - span / 2, as_utc(w.window_end) + span / 2


@router.get("/judge/warrants/{warrant_id}", response_class=HTMLResponse)
def judge_warrant(warrant_id: str, request: Request):
    who = require(request, JUDGE)
    ctx = get_ctx(request)
    try:
        w = warrants_api.get_warrant(warrant_id, request, who[0])
    except Refused as exc:
        return refused_page(request, exc, who)
    with ctx.factory() as s:
        row = warrants.get(s, warrant_id)
        in_scope = s.scalar(
            select(func.count()).select_from(SealedRecordRow).where(warrants.in_scope(row))
        )
    return render(request, "judge_warrant.html", who=who, w=w, in_scope=in_scope)


@router.get("/judge/warrants/{warrant_id}/timeline.svg")
def judge_timeline(warrant_id: str, request: Request):
    require(request, JUDGE)
    ctx = get_ctx(request)
    with ctx.factory() as s:
        try:
            w = warrants.get(s, warrant_id)
        except Refused as exc:
            return Response(str(exc), status_code=exc.status)
        start, end = _timeline_span(w)
        edges, counts = warrants.timeline(s, warrants.cameras(w), start, end)
    return svg(
        charts.timeline(
            "Records per camera (counts only); the scope shaded",
            edges,
            counts,
            (as_utc(w.window_start), as_utc(w.window_end)),
        )
    )


@router.post("/judge/warrants/{warrant_id}/revoke")
def judge_revoke(
    warrant_id: str, request: Request, reason: Annotated[str, Form()] = "", csrf: Csrf = None
):
    who = require_post(request, JUDGE, csrf)
    caller = who[0]
    try:
        warrants_api.revoke(warrant_id, RevokeIn(reason=reason), request, caller)
    except ValidationError as exc:
        return invalid_page(request, exc, who)
    except Refused as exc:
        return refused_page(request, exc, who)
    return RedirectResponse(f"/console/judge/warrants/{warrant_id}", 303)


# --- investigator --------------------------------------------------------------------------


@router.get("/investigator", response_class=HTMLResponse)
def investigator_home(request: Request):
    who = require(request, INVESTIGATOR)
    ws = [w for w in warrants_api.list_warrants(request, who[0]) if w.state == "active"]
    reqs = requests_api.list_requests(request, who[0])
    return render(request, "investigator.html", who=who, warrants=ws, requests=list(reversed(reqs)))


@router.get("/investigator/warrants/{warrant_id}", response_class=HTMLResponse)
def investigator_warrant(warrant_id: str, request: Request):
    who = require(request, INVESTIGATOR)
    try:
        w = warrants_api.get_warrant(warrant_id, request, who[0])
        rows = warrants_api.records(warrant_id, request, who[0])
    except Refused as exc:
        return refused_page(request, exc, who)
    return render(
        request,
        "investigator_warrant.html",
        who=who,
        w=w,
        records=rows,
        required=get_ctx(request).required_approvals,
    )


@router.post("/investigator/requests", response_class=HTMLResponse)
def investigator_request(
    request: Request,
    warrant_id: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    record: Annotated[list[str] | None, Form()] = None,
    csrf: Csrf = None,
):
    who = require_post(request, INVESTIGATOR, csrf)
    caller = who[0]
    try:
        body = RequestIn(warrant_id=warrant_id, record_ids=record or [], reason=reason)
        made = requests_api.create(body, request, caller)
    except ValidationError as exc:
        return invalid_page(request, exc, who)
    except Refused as exc:
        return refused_page(request, exc, who)
    # The fetch secret is shown once, here; the console keeps no copy.
    return render(request, "investigator_created.html", who=who, made=made)


@router.get("/investigator/requests/{request_id}", response_class=HTMLResponse)
def investigator_status(request_id: str, request: Request):
    who = require(request, INVESTIGATOR)
    try:
        r = requests_api.get_request(request_id, request, who[0])
    except Refused as exc:
        return refused_page(request, exc, who)
    return render(request, "investigator_request.html", who=who, r=r)


def release_zip(out) -> bytes:
    """The released crops as a zip built in memory (crops never touch the vault's disk):
    each record's best crop and clip frames, and release.json with their metadata."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        meta = []
        for c in out.released:
            z.writestr(f"{c.record_id}.jpg", base64.b64decode(c.jpeg))
            for i, frame in enumerate(c.clip):
                z.writestr(f"{c.record_id}-clip-{i:02d}.jpg", base64.b64decode(frame))
            meta.append(c.model_dump(exclude={"jpeg", "clip"}, mode="json"))
        doc = {"request_id": out.request_id, "released": meta, "withheld": out.withheld}
        z.writestr("release.json", json.dumps(doc, indent=2))
    return buf.getvalue()


@router.post("/investigator/requests/{request_id}/fetch")
def investigator_fetch(
    request_id: str,
    request: Request,
    fetch_secret: Annotated[str, Form()] = "",
    csrf: Csrf = None,
):
    """The release, the secret typed in (the console never stored it), a zip back; until
    the investigator confirms receipt, the same zip again from the held answer."""
    from vault.api.schemas import ReleaseIn

    who = require_post(request, INVESTIGATOR, csrf)
    caller = who[0]
    try:
        out = requests_api.release(
            request_id, ReleaseIn(fetch_secret=fetch_secret.strip()), request, caller
        )
    except ValidationError as exc:
        return invalid_page(request, exc, who)
    except Refused as exc:
        return refused_page(request, exc, who)
    return Response(
        release_zip(out),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="release-{request_id}.zip"'},
    )


@router.post("/investigator/requests/{request_id}/received")
def investigator_received(request_id: str, request: Request, csrf: Csrf = None):
    """The zip arrived: the copy the vault held for a lost download is erased."""
    who = require_post(request, INVESTIGATOR, csrf)
    try:
        requests_api.received(request_id, request, who[0])
    except Refused as exc:
        return refused_page(request, exc, who)
    return RedirectResponse(f"/console/investigator/requests/{request_id}", status_code=303)


# --- trustee -------------------------------------------------------------------------------


@router.get("/trustee", response_class=HTMLResponse)
def trustee_queue(request: Request):
    who = require(request, TRUSTEE)
    reqs = requests_api.list_requests(request, who[0])
    pending = [r for r in reqs if r.status == "pending"]
    reviews = [requests_api.review(r.id, request, who[0]) for r in pending]
    done = [r for r in reversed(reqs) if r.status != "pending"][:20]
    return render(request, "trustee.html", who=who, reviews=reviews, done=done)


@router.get("/trustee/requests/{request_id}", response_class=HTMLResponse)
def trustee_review(request_id: str, request: Request):
    who = require(request, TRUSTEE)
    try:
        rv = requests_api.review(request_id, request, who[0])
    except Refused as exc:
        return refused_page(request, exc, who)
    mine = any(a.share_index == who[0].trustee_index for a in rv.request.approvals)
    return render(request, "trustee_request.html", who=who, rv=rv, mine=mine)


# --- auditor -------------------------------------------------------------------------------


@router.get("/auditor", response_class=HTMLResponse)
def auditor_trail(
    request: Request,
    action: Annotated[str, Query(max_length=64)] = "",
    actor: Annotated[str, Query(max_length=200)] = "",
    record: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
):
    who = require(request, AUDITOR)
    ctx = get_ctx(request)
    try:
        lo = audit_time(since)
        hi = audit_time(until)
    except ValueError:
        return render(
            request,
            "error.html",
            422,
            who,
            message="times: YYYY-MM-DDTHH:MM (UTC)",
            status_code=422,
        )
    with ctx.factory() as s:
        entries = audit.find(
            s,
            action=action or None,
            actor=actor or None,
            record=record or None,
            since=lo,
            until=hi,
        )
        choices = audit.actions(s)
    verdict = audit_api.verify(request, who[0])
    cp = audit_api.checkpoint(request, who[0])
    rows = [(e, json.loads(e.detail)) for e in entries]
    filters = {"action": action, "actor": actor, "record": record, "since": since, "until": until}
    return render(
        request,
        "auditor.html",
        who=who,
        rows=rows,
        choices=choices,
        verdict=verdict,
        cp=cp,
        filters=filters,
    )


def audit_time(value: str) -> datetime | None:
    v = utc_field(value)
    return datetime.fromisoformat(v) if v else None


@router.get("/auditor/entries/{entry_id}", response_class=HTMLResponse)
def auditor_entry(entry_id: int, request: Request):
    who = require(request, AUDITOR)
    ctx = get_ctx(request)
    try:
        p = anchor.inclusion(ctx.factory, ctx.checkpoint_key, ctx.clock(), entry_id, None)
    except Refused as exc:
        return refused_page(request, exc, who)
    detail = json.dumps(json.loads(p.entry.detail), indent=2, ensure_ascii=False)
    return render(request, "auditor_entry.html", who=who, p=p, detail=detail)


# --- data protection: retention, cameras, tokens -------------------------------------------


@router.get("/retention", response_class=HTMLResponse)
def retention_page(request: Request):
    who = require(request, AUDITOR)
    rep = audit_api.retention_report(request, who[0])
    ctx = get_ctx(request)
    with ctx.factory() as s:
        ov = retention.overview(s, ctx.clock())
    return render(request, "retention.html", who=who, rep=rep, ov=ov)


@router.get("/charts/{name}.svg")
def chart(name: str, request: Request):
    """The retention charts: same roles as the retention report."""
    who = require(request, AUDITOR)
    ctx = get_ctx(request)
    now = ctx.clock()
    if name == "age":
        with ctx.factory() as s:
            ov = retention.overview(s, now)
        series = {
            cam: [ages[lb] for lb in ov["age_labels"]] for cam, ages in ov["by_camera_age"].items()
        }
        return svg(
            charts.stacked_bars("Records stored, by age", ov["age_labels"], series, "records")
        )
    if name == "expiring":
        with ctx.factory() as s:
            ov = retention.overview(s, now)
        labels = [
            (now + timedelta(days=i)).strftime("%m-%d") for i in range(len(ov["expiring_per_day"]))
        ]
        return svg(
            charts.bars("Records expiring, next days", labels, ov["expiring_per_day"], "records")
        )
    rep = audit_api.retention_report(request, who[0])
    if name == "erased":
        per_day: dict[str, int] = {}
        for e in rep["erased"]:
            per_day[e["erased"][:10]] = per_day.get(e["erased"][:10], 0) + 1
        return svg(
            charts.bars("Records erased per day", list(per_day), list(per_day.values()), "records")
        )
    if name == "shredded":
        per_day = {}
        for e in rep["destroyed_epoch_keys"]:
            per_day[e["at"][:10]] = per_day.get(e["at"][:10], 0) + len(e["epochs"])
        return svg(
            charts.bars(
                "Epoch keys destroyed per day", list(per_day), list(per_day.values()), "keys"
            )
        )
    return Response("no such chart", status_code=404)


@router.get("/cameras", response_class=HTMLResponse)
def cameras_page(request: Request):
    who = require(request, CAMERA_READERS)
    ctx = get_ctx(request)
    now = ctx.clock()
    cams = admin_api.cameras(request, who[0])
    keyrings = {}
    for c in cams:
        certs = ctx.keystore.certificates(c.id)
        windows = [cert.window() for cert in certs]
        current = [w for w in windows if w[0] <= now < w[1]]
        keyrings[c.id] = {
            "epochs": len(windows),
            "valid_until": max((w[1] for w in windows), default=None),
            "current": bool(current),
        }
    with ctx.factory() as s:
        stats = {d["camera"]: d for d in store.ingest_stats(s, now)}
    return render(
        request,
        "cameras.html",
        who=who,
        cams=cams,
        keyrings=keyrings,
        stats=stats,
        soon=now + timedelta(days=7),
    )


@router.post("/cameras")
def cameras_add(
    request: Request,
    camera_id: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    csrf: Csrf = None,
):
    who = require_post(request, ADMIN, csrf)
    caller = who[0]
    try:
        admin_api.add_camera(
            CameraIn(id=camera_id.strip(), name=name.strip() or None), request, caller
        )
    except ValidationError as exc:
        return invalid_page(request, exc, who)
    except Refused as exc:
        return refused_page(request, exc, who)
    return RedirectResponse("/console/cameras", 303)


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request):
    who = require(request, ADMIN)
    toks = admin_api.list_tokens(request, who[0])
    return render(
        request,
        "tokens.html",
        who=who,
        toks=toks,
        soon=get_ctx(request).clock() + timedelta(days=14),
    )


@router.post("/tokens/{token_id}/revoke")
def tokens_revoke(token_id: str, request: Request, csrf: Csrf = None):
    who = require_post(request, ADMIN, csrf)
    caller = who[0]
    try:
        admin_api.revoke_token(token_id, request, caller)
    except Refused as exc:
        return refused_page(request, exc, who)
    return RedirectResponse("/console/tokens", 303)
