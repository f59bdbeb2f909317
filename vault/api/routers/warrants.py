"""Judges issue and revoke warrants; investigators list the records in a warrant's scope
(metadata only, never images)."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request
from sqlalchemy import select

from escrow.canonical import as_utc
from vault import audit, openings, warrants
from vault.api.context import VaultContext
from vault.api.deps import InvestigatorCaller, JudgeCaller, WarrantReader, get_ctx
from vault.api.errors import Refused
from vault.api.schemas import RecordMeta, RevokeIn, WarrantIn, WarrantOut
from vault.models import OpeningRequest, SealedRecordRow, Warrant

router = APIRouter(prefix="/warrants", tags=["warrants"])


def out(w: Warrant, ctx: VaultContext) -> WarrantOut:
    t = as_utc
    return WarrantOut(
        id=w.id,
        case_ref=w.case_ref,
        legal_basis=w.legal_basis,
        judge=w.judge,
        cameras=warrants.cameras(w),
        window_start=t(w.window_start),
        window_end=t(w.window_end),
        not_before=t(w.not_before),
        not_after=t(w.not_after),
        max_records=w.max_records,
        issued_at=t(w.issued_at),
        state=warrants.state(w, ctx.clock()),
        revoked_at=t(w.revoked_at) if w.revoked_at else None,
        revoked_reason=w.revoked_reason,
        hold_until=warrants.hold_until(w, ctx.policy.legal_hold.after_warrant),
        signature=base64.b64encode(w.signature).decode(),
    )


def load(s, warrant_id: str) -> Warrant:
    w = s.get(Warrant, warrant_id)
    if w is None:
        raise Refused(f"no warrant {warrant_id}", 404)
    return w


@router.post("", response_model=WarrantOut, status_code=201)
def issue(body: WarrantIn, request: Request, caller: JudgeCaller):
    """Issue a signed warrant; records in its scope go on legal hold at once."""
    ctx = get_ctx(request)
    now = ctx.clock()
    with ctx.factory.begin() as s:
        w = warrants.issue(
            s,
            ctx.warrant_signer,
            **body.model_dump(),
            judge=caller.name,
            judge_token_id=caller.token_id,
            now=now,
        )
        held, _ = warrants.refresh_holds(s, now, ctx.policy.legal_hold.after_warrant)
        audit.append(
            s,
            caller.actor,
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
            now,
        )
        return out(w, ctx)


@router.get("", response_model=list[WarrantOut])
def list_warrants(request: Request, caller: WarrantReader):
    ctx = get_ctx(request)
    with ctx.factory() as s:
        return [out(w, ctx) for w in s.scalars(select(Warrant).order_by(Warrant.issued_at))]


@router.get("/{warrant_id}", response_model=WarrantOut)
def get_warrant(warrant_id: str, request: Request, caller: WarrantReader):
    ctx = get_ctx(request)
    with ctx.factory() as s:
        return out(load(s, warrant_id), ctx)


@router.post("/{warrant_id}/revoke", response_model=WarrantOut)
def revoke(warrant_id: str, body: RevokeIn, request: Request, caller: JudgeCaller):
    """Revoke at once: pending requests under it are closed and their shares wiped. Its
    records stay held for the policy's grace period after revocation."""
    ctx = get_ctx(request)
    now = ctx.clock()
    with ctx.factory.begin() as s:
        w = load(s, warrant_id)
        warrants.verify(w, ctx.warrant_key)
        if w.revoked_at is not None:
            raise Refused(f"warrant {w.id} was already revoked", 409)
        w.revoked_at, w.revoked_reason = now, body.reason
        pending = s.scalars(
            select(OpeningRequest).where(
                OpeningRequest.warrant_id == w.id, OpeningRequest.status == "pending"
            )
        ).all()
        for req in pending:
            openings.close(s, req, "closed")
        s.flush()
        _, released = warrants.refresh_holds(s, now, ctx.policy.legal_hold.after_warrant)
        audit.append(
            s,
            caller.actor,
            "warrant.revoke",
            {
                "warrant": w.id,
                "reason": body.reason,
                "closed_requests": [r.id for r in pending],
                "holds_released": released,
            },
            now,
        )
        return out(w, ctx)


@router.get("/{warrant_id}/records", response_model=list[RecordMeta])
def records(warrant_id: str, request: Request, caller: InvestigatorCaller):
    """The records in the warrant's scope: times, camera, quality; never an image."""
    ctx = get_ctx(request)
    now = ctx.clock()
    with ctx.factory.begin() as s:
        w = load(s, warrant_id)
        warrants.require_active(w, ctx.warrant_key, now)
        rows = warrants.scoped_records(s, w)
        audit.append(s, caller.actor, "warrant.list", {"warrant": w.id, "records": len(rows)}, now)
        return [record_meta(r) for r in rows]


def record_meta(r: SealedRecordRow) -> RecordMeta:
    return RecordMeta(
        id=r.id,
        camera_id=r.camera_id,
        first_seen=as_utc(r.first_seen),
        last_seen=as_utc(r.last_seen),
        best_time=as_utc(r.best_time),
        quality=r.quality,
        expires=as_utc(r.expires),
        legal_hold=r.legal_hold,
        epoch_id=r.epoch_id,
    )
