"""The web console served by `escrow serve` at `/`: server-rendered pages for the people who
run and oversee the vault (judges, investigators, trustees, auditors, admins). It holds no
logic of its own about who may do what: each page admits the roles of the API endpoint it
shows, and each action calls that endpoint's handler, so the domain code and the audit trail
are the API's."""

from __future__ import annotations

from fastapi import FastAPI, Request

# No script at all, styles and images from the console's own origin only, never framed,
# forms posted nowhere else: an injected tag can neither run nor send a form away.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def install(app: FastAPI) -> None:
    """Mount the console's pages and static files on the API's app."""
    from urllib.parse import urlencode

    from fastapi.responses import RedirectResponse
    from fastapi.staticfiles import StaticFiles

    from vault.console.router import STATIC, Denied, NeedLogin, current, render, router

    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=303)

    async def need_login(request: Request, exc: Exception):
        why = getattr(exc, "why", "")
        return RedirectResponse(
            "/console/login" + (f"?{urlencode({'why': why})}" if why else ""), 303
        )

    async def denied(request: Request, exc: Exception):
        status = getattr(exc, "status", 403)
        return render(
            request, "error.html", status, current(request), message=str(exc), status_code=status
        )

    app.add_exception_handler(NeedLogin, need_login)
    app.add_exception_handler(Denied, denied)

    @app.middleware("http")
    async def console_headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/console"):
            for k, v in HEADERS.items():
                response.headers.setdefault(k, v)
        return response
