"""The FastAPI application: routers, limits, refusals, and the retention sweeper's
lifetime (started with the server when the context asks for it)."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vault import console
from vault.api import errors, links
from vault.api.context import VaultContext
from vault.api.routers import admin, audit, ingest, requests, warrants

JSON_TYPES = ("application/json",)
# The console's forms post urlencoded fields (never files: multipart stays refused), and only
# to its own paths.
FORM_TYPES = ("application/x-www-form-urlencoded",)
FORM_PREFIX = "/console/"


def _reply(status: int, detail: str):
    """An answer given before the body has been read: the connection is closed after it, as
    what is left of the body would otherwise be read as the next request."""
    body = json.dumps({"detail": detail}).encode()

    async def send_it(send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return send_it


class Limits:
    """ASGI middleware: refuse bodies over the size limit (413) before or while reading them,
    and bodies that are not JSON (415): the API takes sealed records and forms as JSON only,
    so an image posted as such never reaches a handler. A body that stops arriving (fewer
    bytes than its Content-Length promised) is cut after `body_timeout_s` without a byte
    (408): otherwise each such request holds a connection and a worker for ever."""

    def __init__(self, app, ctx: VaultContext):
        self.app, self.ctx = app, ctx

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        limit = self.ctx.max_body_bytes
        length = headers.get(b"content-length", b"0").decode("latin-1")
        if not length.isdigit() or int(length) > limit:
            return await _reply(413, f"request body over {limit} bytes")(send)
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
        if (
            scope["method"] in ("POST", "PUT", "PATCH")
            and (int(length) > 0 or b"transfer-encoding" in headers)
            and ctype.lower() not in JSON_TYPES
            and not (scope["path"].startswith(FORM_PREFIX) and ctype.lower() in FORM_TYPES)
        ):
            return await _reply(
                415, "only application/json is accepted (sealed records, never images)"
            )(send)
        seen = 0
        started = hijacked = body_done = False
        stall = self.ctx.body_timeout_s

        async def limited_receive():
            nonlocal seen, started, hijacked, body_done
            if hijacked:  # answered here already: the handler is told the client has gone
                return {"type": "http.disconnect"}
            if body_done:  # waiting for a disconnect after the body is not a stall
                return await receive()
            try:
                async with asyncio.timeout(stall):
                    msg = await receive()
            except TimeoutError:
                if not started:
                    await _reply(408, f"request body stalled for more than {stall:g} s")(send)
                    started = hijacked = True
                return {"type": "http.disconnect"}
            body_done = msg["type"] != "http.request" or not msg.get("more_body", False)
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:  # answer 413 now; the handler sees a disconnect
                    if not started:
                        await _reply(413, f"request body over {limit} bytes")(send)
                        started = hijacked = True
                    return {"type": "http.disconnect"}
            return msg

        async def tracking_send(msg):
            nonlocal started
            if hijacked:
                return
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        await self.app(scope, limited_receive, tracking_send)


def create_app(ctx: VaultContext) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        scheduler = None
        if ctx.sweeper:
            from vault.scheduler import start_sweeper

            scheduler = start_sweeper(ctx)
        app.state.scheduler = scheduler
        yield
        if scheduler is not None:
            scheduler.shutdown(wait=True)

    app = FastAPI(
        title="keyframe-escrow vault",
        version="1",
        description=(
            "Sealed face crops, opened only for a valid, scoped warrant after k trustee "
            "approvals. Every call is checked against the caller's role and written to a "
            "hash-chained audit trail."
        ),
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    for r in (ingest.router, warrants.router, requests.router, audit.router, admin.router):
        app.include_router(r)
    errors.install(app)
    console.install(app)

    @app.get("/health", tags=["health"])
    def health() -> dict:
        """Up and answering (no token, no database)."""
        return {"status": "ok"}

    links.install(app)
    app.add_middleware(Limits, ctx=ctx)
    return app
