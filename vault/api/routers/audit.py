"""Auditors read the trail, check its chain, and read retention reports."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from vault import audit, retention
from vault.api.deps import AuditorCaller, get_ctx
from vault.api.schemas import AuditEntryOut, VerdictOut
from vault.models import AuditEntry
from vault.store import as_utc

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=list[AuditEntryOut])
def entries(
    request: Request,
    caller: AuditorCaller,
    after: Annotated[int, Query(ge=0, le=2**31 - 1, description="Entries with a larger id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
):
    ctx = get_ctx(request)
    with ctx.factory() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id).limit(limit)
        ).all()
    return [
        AuditEntryOut(
            id=e.id,
            at=as_utc(e.at),
            actor=e.actor,
            action=e.action,
            detail=json.loads(e.detail),
            prev_hash=e.prev_hash,
            hash=e.hash,
        )
        for e in rows
    ]


@router.get("/audit/verify", response_model=VerdictOut)
def verify(
    request: Request,
    caller: AuditorCaller,
    expect_head: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
):
    """Walk the hash chain; the first broken link, if any."""
    v = audit.verify(get_ctx(request).factory, expect_head)
    return VerdictOut(
        ok=v.ok, entries=v.entries, head=v.head, broken_at=v.broken_at, reason=v.reason
    )


@router.get("/retention/report")
def retention_report(request: Request, caller: AuditorCaller) -> dict:
    """What was erased when, which epoch keys were destroyed, what is held and why."""
    ctx = get_ctx(request)
    return retention.report(ctx.factory, ctx.clock(), ctx.policy.legal_hold.after_warrant)
