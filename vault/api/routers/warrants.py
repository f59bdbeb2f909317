"""Judges issue and revoke warrants; investigators list the records in a warrant's scope
(metadata only, never images)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from vault import warrants
from vault.api.actions import act
from vault.api.deps import InvestigatorCaller, JudgeCaller, WarrantReader, get_ctx
from vault.api.errors import AUTHENTICATED, WITH_BODY, WITH_PARAMS, responses
from vault.api.schemas import RecordMeta, RevokeIn, WarrantId, WarrantIn, WarrantOut
from vault.api.views import record_meta, warrant_out
from vault.models import Warrant
from vault.store import checkpoint_wal

router = APIRouter(prefix="/warrants", tags=["warrants"], responses=responses(*AUTHENTICATED))


@router.post("", response_model=WarrantOut, status_code=201, responses=responses(*WITH_BODY))
def issue(body: WarrantIn, request: Request, caller: JudgeCaller):
    """Issue a signed warrant; records in its scope go on legal hold at once."""
    ctx = get_ctx(request)
    with act(ctx, caller) as a:
        w = warrants.issue(
            a.s,
            ctx.warrant_signer,
            **body.model_dump(),
            judge=caller.name,
            judge_token_id=caller.token_id,
            now=a.now,
        )
        held, _ = warrants.refresh_holds(a.s, a.now, ctx.policy.legal_hold.after_warrant)
        a.audit(
            "warrant.issue",
            {
                "warrant": w.id,
                "case_ref": w.case_ref,
                "cameras": warrants.cameras(w),
                "window": [body.window_start.isoformat(), body.window_end.isoformat()],
                "valid": [body.not_before.isoformat(), body.not_after.isoformat()],
                "max_records": w.max_records,
                "held": held,
            },
        )
        return warrant_out(w, ctx)


@router.get("", response_model=list[WarrantOut])
def list_warrants(request: Request, caller: WarrantReader):
    ctx = get_ctx(request)
    with ctx.factory() as s:
        return [warrant_out(w, ctx) for w in s.scalars(select(Warrant).order_by(Warrant.issued_at))]


@router.get("/{warrant_id}", response_model=WarrantOut, responses=responses(*WITH_PARAMS, 404))
def get_warrant(warrant_id: WarrantId, request: Request, caller: WarrantReader):
    ctx = get_ctx(request)
    with ctx.factory() as s:
        return warrant_out(warrants.get(s, warrant_id), ctx)


@router.post(
    "/{warrant_id}/revoke", response_model=WarrantOut, responses=responses(*WITH_BODY, 404, 409)
)
def revoke(warrant_id: WarrantId, body: RevokeIn, request: Request, caller: JudgeCaller):
    """Revoke at once: pending requests under it are closed and their shares wiped. Its
    records stay held for the policy's grace period after revocation."""
    ctx = get_ctx(request)
    with act(ctx, caller) as a:
        w = warrants.get(a.s, warrant_id)
        closed, released = warrants.revoke(
            a.s,
            w,
            ctx.warrant_key,
            reason=body.reason,
            now=a.now,
            after_warrant=ctx.policy.legal_hold.after_warrant,
        )
        a.audit(
            "warrant.revoke",
            {
                "warrant": w.id,
                "reason": body.reason,
                "closed_requests": closed,
                "holds_released": released,
            },
        )
        answer = warrant_out(w, ctx)
    if closed:
        checkpoint_wal(ctx.engine)  # the wiped shares leave SQLite's write-ahead log too
    return answer


@router.get(
    "/{warrant_id}/records", response_model=list[RecordMeta], responses=responses(*WITH_PARAMS, 404)
)
def records(warrant_id: WarrantId, request: Request, caller: InvestigatorCaller):
    """The records in the warrant's scope: times, camera, quality; never an image."""
    ctx = get_ctx(request)
    with act(ctx, caller) as a:
        w = warrants.get(a.s, warrant_id)
        warrants.require_active(w, ctx.warrant_key, a.now)
        rows = warrants.scoped_records(a.s, w)
        a.audit("warrant.list", {"warrant": w.id, "records": len(rows)})
        return [record_meta(r) for r in rows]
