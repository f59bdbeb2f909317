"""Authentication and role checks. Every refusal is written to the audit trail before the
answer goes out: 401 for a missing, unknown, revoked or expired token or a judge, trustee or
auditor token the escrow authority did not sign, 403 for a role not allowed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vault import audit, tokens
from vault.api.context import VaultContext

bearer = HTTPBearer(auto_error=False, description="A token from `escrow tokens create`.")


@dataclass(frozen=True)
class Caller:
    token_id: str
    name: str
    role: str
    trustee_index: int | None = None  # a trustee's share index, signed with the token

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"


def get_ctx(request: Request) -> VaultContext:
    return request.app.state.ctx


def endpoint(request: Request) -> str:
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"[:200]


def allow(*roles: str):
    """Dependency: the caller, if their token is valid and its role is one of `roles`."""

    def dependency(
        request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Caller:
        ctx = get_ctx(request)
        where = endpoint(request)
        if cred is None:
            audit.record(
                ctx.factory,
                "anonymous",
                "auth.refused",
                {"endpoint": where, "why": "no token"},
                ctx.clock(),
            )
            raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        try:
            tok = tokens.authenticate(ctx.factory, cred.credentials, ctx.clock(), ctx.authority_key)
        except tokens.Unauthorized as exc:
            detail = {"endpoint": where, "why": str(exc)}
            if exc.token_id:  # which row was tried (a forged one is evidence), never the token
                detail["token"] = exc.token_id
            audit.record(ctx.factory, "anonymous", "auth.refused", detail, ctx.clock())
            raise HTTPException(401, str(exc), {"WWW-Authenticate": "Bearer"}) from exc
        caller = Caller(tok.id, tok.name, tok.role, tok.trustee_index)
        request.state.caller = caller
        if tok.role not in roles:
            audit.record(
                ctx.factory,
                caller.actor,
                "access.denied",
                {"endpoint": where, "role": tok.role, "allowed": list(roles)},
                ctx.clock(),
            )
            raise HTTPException(403, f"role {tok.role!r} may not call {where}")
        return caller

    dependency.roles = roles  # read by the console, which admits exactly the API's roles
    return dependency


def roles_of(alias) -> tuple[str, ...]:
    """The roles an alias such as JudgeCaller admits."""
    return alias.__metadata__[0].dependency.roles


# Who may call what: one alias per group of roles, used in the routers' signatures.
CameraCaller = Annotated[Caller, Depends(allow("camera"))]
JudgeCaller = Annotated[Caller, Depends(allow("judge"))]
InvestigatorCaller = Annotated[Caller, Depends(allow("investigator"))]
TrusteeCaller = Annotated[Caller, Depends(allow("trustee"))]
AuditorCaller = Annotated[Caller, Depends(allow("auditor"))]
AdminCaller = Annotated[Caller, Depends(allow("admin"))]
WarrantReader = Annotated[Caller, Depends(allow("judge", "investigator", "trustee", "auditor"))]
RequestReader = Annotated[Caller, Depends(allow("investigator", "trustee", "auditor"))]
AdminOrAuditor = Annotated[Caller, Depends(allow("admin", "auditor"))]
# Signed checkpoints of the audit trail show nothing of its entries: every reader of warrants.
CheckpointReader = Annotated[Caller, Depends(allow("auditor", "investigator", "judge", "trustee"))]
# An inclusion proof shows the entry itself: auditors, and investigators for their own entries.
ProofReader = Annotated[Caller, Depends(allow("auditor", "investigator"))]
