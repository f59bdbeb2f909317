"""Refusals (vault.refusals.Refused and its subclasses) are answered as {"detail": ...}
with their status and written to the audit trail, in a transaction of their own: the
refused action's transaction has been rolled back.

Invalid input (422) is answered with a one-line detail that names where and what, never the
input itself: FastAPI's own answer echoes it, and a NaN or an infinity in it cannot be
encoded as JSON (a 500 instead of a 422)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from vault import audit
from vault.api.deps import endpoint, get_ctx
from vault.refusals import Refused

__all__ = ["Refused", "audit_refusal", "install", "one_line"]

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

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(RequestValidationError, invalid)
