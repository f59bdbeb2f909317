"""Administration: cameras, tokens, the policy in force. An admin cannot open anything."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from escrow.canonical import as_utc
from vault import audit, tokens
from vault.api.actions import act
from vault.api.deps import AdminCaller, AdminOrAuditor, get_ctx
from vault.api.errors import AUTHENTICATED, WITH_BODY, WITH_PARAMS, Refused, responses
from vault.api.schemas import CameraIn, CameraOut, TokenCreated, TokenId, TokenIn, TokenOut
from vault.models import ApiToken, Camera

router = APIRouter(tags=["admin"], responses=responses(*AUTHENTICATED))
# What POST /tokens may make: machines whose reach is checked elsewhere (a camera ingests only
# records named for it), never a person who issues, approves, opens or audits.
API_ROLES = ("camera",)


@router.get("/cameras", response_model=list[CameraOut])
def cameras(request: Request, caller: AdminOrAuditor):
    with get_ctx(request).factory() as s:
        return [
            CameraOut(id=c.id, name=c.name, created=as_utc(c.created))
            for c in s.scalars(select(Camera).order_by(Camera.id))
        ]


@router.post(
    "/cameras", response_model=CameraOut, status_code=201, responses=responses(*WITH_BODY, 409)
)
def add_camera(body: CameraIn, request: Request, caller: AdminCaller):
    with act(get_ctx(request), caller) as a:
        if a.s.get(Camera, body.id) is not None:
            raise Refused(f"camera {body.id} exists", 409)
        cam = Camera(id=body.id, name=body.name, created=a.now)
        a.s.add(cam)
        a.audit("camera.add", {"camera": body.id})
        return CameraOut(id=cam.id, name=cam.name, created=a.now)


def _token_out(t: ApiToken) -> dict:
    return {
        "id": t.id,
        "name": t.name,
        "role": t.role,
        "created": as_utc(t.created),
        "expires_at": tokens.expiry(t),
        "trustee_index": t.trustee_index,
        "revoked_at": as_utc(t.revoked_at) if t.revoked_at else None,
        "last_used_at": as_utc(t.last_used_at) if t.last_used_at else None,
    }


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(request: Request, caller: AdminCaller):
    return [TokenOut(**_token_out(t)) for t in tokens.list_tokens(get_ctx(request).factory)]


@router.post(
    "/tokens", response_model=TokenCreated, status_code=201, responses=responses(*WITH_BODY)
)
def create_token(body: TokenIn, request: Request, caller: AdminCaller):
    """A new camera token, shown once in the answer; only its hash is kept. Any other role is
    refused (403, audited): people's tokens come from `escrow tokens create`, and judge,
    trustee and auditor tokens are signed there by the escrow authority (separation of
    duties: the admin who runs the vault cannot make themselves one)."""
    if body.role not in API_ROLES:
        raise Refused(
            f"an admin creates {', '.join(API_ROLES)} tokens only; a {body.role} token is issued "
            "with `escrow tokens create` by the escrow authority",
            403,
        )
    with act(get_ctx(request), caller) as a:
        tid, token = tokens.add(a.s, body.role, body.name, a.now)
        a.audit("token.create", {"token": tid, "role": body.role})
        return TokenCreated(**_token_out(a.s.get(ApiToken, tid)), token=token)


@router.post(
    "/tokens/{token_id}/revoke", response_model=TokenOut, responses=responses(*WITH_PARAMS, 404)
)
def revoke_token(token_id: TokenId, request: Request, caller: AdminCaller):
    ctx = get_ctx(request)
    now = ctx.clock()
    if not tokens.revoke(ctx.factory, token_id, now):
        raise Refused(f"no active token {token_id}", 404)
    audit.record(ctx.factory, caller.actor, "token.revoke", {"token": token_id}, now)
    with ctx.factory() as s:
        return TokenOut(**_token_out(s.get(ApiToken, token_id)))


@router.get("/policy")
def policy(request: Request, caller: AdminOrAuditor) -> dict:
    """The policy in force, as `escrow policy check` prints it."""
    return get_ctx(request).policy.effective()
