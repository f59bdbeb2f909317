"""Refusals (vault.refusals.Refused and its subclasses) are answered as {"detail": ...}
with their status and written to the audit trail, in a transaction of their own: the
refused action's transaction has been rolled back.

Invalid input (422) is answered with a one-line detail that names where and what, never the
input itself: FastAPI's own answer echoes it, and a NaN or an infinity in it cannot be
encoded as JSON (a 500 instead of a 422). A body JSON's parser cannot read for another
reason than its syntax (bytes that are not UTF-8, nesting deeper than it recurses) is
invalid input too: FastAPI answers it 400, a status no operation declares.

Every operation's OpenAPI entry lists the errors it can answer, each with the one error
schema (`ErrorOut`): every router declares AUTHENTICATED (401, 403, 503: each of its routes
checks a token), each route what it reads (WITH_BODY: 408, 413, 415, 422; WITH_PARAMS: 422)
and what its domain refuses (404, 409, 410)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException

from vault import audit
from vault.api.deps import endpoint, get_ctx
from vault.api.schemas import ErrorOut
from vault.refusals import Refused

__all__ = ["Refused", "audit_refusal", "install", "one_line", "responses"]

log = logging.getLogger("keyframe-escrow.api")

WHY = {
    401: "No token, or an unknown, revoked or expired one, or a judge, trustee or auditor "
    "token the escrow authority did not sign. Audited (auth.refused).",
    403: "The token's role may not do this, or the domain refuses it (out of scope, not the "
    "requester, an inactive warrant). Audited (access.denied, refused).",
    404: "No such warrant, request, token or audit entry (or not one of the caller's).",
    408: "The request body stopped arriving; the connection is closed.",
    409: "Conflicts with the current state: already exists, already revoked or approved, "
    "not enough approvals yet, nothing could be opened.",
    410: "Already released: the crops of a request go out once.",
    413: "The request body or the batch is over the limit.",
    415: "The body is not application/json (the vault never accepts an image).",
    422: "Invalid input; `detail` names where and what in one line, never the input.",
    503: "The vault's database is unreachable; try again later.",
}
AUTHENTICATED = (401, 403, 503)
WITH_BODY = (408, 413, 415, 422)
WITH_PARAMS = (422,)


def responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI responses for `statuses`, each with the error schema and why it happens."""
    return {code: {"model": ErrorOut, "description": WHY[code]} for code in statuses}


RETRY_AFTER_S = 5  # what a 503 asks a client to wait
MAX_ERRORS = 3  # errors named in a detail; the rest are counted


def _clean(text: object, limit: int) -> str:
    """Printable, one line, bounded: field names in a location are the caller's own text."""
    s = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return s if len(s) <= limit else s[: limit - 3] + "..."


def one_line(errors: Sequence[dict]) -> str:
    """'body.records.0.quality: Input should be a finite number; ...' from Pydantic errors,
    their locations and messages only (never `input` or `ctx`, which carry the value)."""
    parts = [
        f"{'.'.join(_clean(p, 40) for p in e.get('loc', ())) or 'body'}: "
        f"{_clean(e.get('msg', 'invalid'), 200)}"
        for e in errors[:MAX_ERRORS]
    ]
    if len(errors) > MAX_ERRORS:
        parts.append(f"and {len(errors) - MAX_ERRORS} more")
    return "; ".join(parts) or "invalid input"


def audit_refusal(request: Request, exc: Exception) -> int:
    """Write a refusal to the trail (the API's and the console's alike); its status."""
    ctx = get_ctx(request)
    caller = getattr(request.state, "caller", None)
    actor = caller.actor if caller else "anonymous"
    status = getattr(exc, "status", 403)
    audit.record(
        ctx.factory,
        actor,
        "refused",
        {"endpoint": endpoint(request), "status": status, "why": str(exc)[:500]},
        ctx.clock(),
    )
    return status


def install(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        status = audit_refusal(request, exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return JSONResponse({"detail": one_line(errors)}, status_code=422)

    async def http_error(request: Request, exc: Exception) -> Response:
        # FastAPI's only 400 is a body it could not parse, raised from the parser's error.
        if isinstance(exc, HTTPException) and exc.status_code == 400 and exc.__cause__:
            why = "not UTF-8" if isinstance(exc.__cause__, UnicodeError) else "unreadable"
            return JSONResponse({"detail": f"body: could not be parsed ({why})"}, status_code=422)
        return await http_exception_handler(request, exc)  # type: ignore[arg-type]

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Nothing can be audited without the database, and nothing was done: 503, one line
        # (the driver's message names hosts and files: logged here, not sent).
        log.error("database unavailable at %s: %s", endpoint(request), exc)
        return JSONResponse(
            {"detail": "the vault's database is unavailable; try again later"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    async def unstorable(request: Request, exc: Exception) -> JSONResponse:
        # A value the database itself refuses (PostgreSQL: a NUL character in a text
        # parameter, a number out of its column's range), found by the stateful API test:
        # invalid input, not a server error; the transaction was rolled back.
        log.warning("input the database refused at %s: %s", endpoint(request), exc.orig)
        return JSONResponse(
            {"detail": "input: a value the database cannot store (e.g. a NUL character)"},
            status_code=422,
        )

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(DataError, unstorable)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(OperationalError, unavailable)
