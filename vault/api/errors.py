"""Refusals: one exception type per layer, all answered as {"detail": ...} with their status
and written to the audit trail (in a transaction of their own: the refused action's
transaction has been rolled back)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from vault import audit
from vault.api.deps import endpoint, get_ctx
from vault.openings import OpeningRefused
from vault.warrants import WarrantRefused


class Refused(Exception):
    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


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

    for kind in (Refused, WarrantRefused, OpeningRefused):
        app.add_exception_handler(kind, refused)
