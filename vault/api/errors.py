"""Refusals (vault.refusals.Refused and its subclasses) are answered as {"detail": ...}
with their status and written to the audit trail, in a transaction of their own: the
refused action's transaction has been rolled back."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from vault import audit
from vault.api.deps import endpoint, get_ctx
from vault.refusals import Refused

__all__ = ["Refused", "install"]


def install(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> JSONResponse:
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
        return JSONResponse({"detail": str(exc)}, status_code=status)

    app.add_exception_handler(Refused, refused)
