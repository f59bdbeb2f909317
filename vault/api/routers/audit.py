"""Auditors read the trail, check its chain, and read retention reports; signed checkpoints
and Merkle proofs of the trail (vault/anchor.py) for auditors and the parties it concerns."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request

from escrow.canonical import as_utc
from vault import anchor, audit, retention
from vault.api.deps import AuditorCaller, CheckpointReader, ProofReader, get_ctx
from vault.api.errors import AUTHENTICATED, WITH_PARAMS, responses
from vault.api.schemas import (
    UUID_PATTERN,
    AuditEntryOut,
    CheckpointOut,
    ConsistencyProofOut,
    InclusionProofOut,
    RetentionReportOut,
    UtcTime,
    VerdictOut,
)
from vault.models import AuditEntry

router = APIRouter(tags=["audit"], responses=responses(*AUTHENTICATED))
EntryId = Annotated[int, Query(ge=1, le=2**31 - 1)]


def _entry_out(e: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=e.id,
        at=as_utc(e.at),
        actor=e.actor,
        action=e.action,
        detail=json.loads(e.detail),
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


def _checkpoint_out(cp: anchor.Checkpoint) -> CheckpointOut:
    return CheckpointOut(**asdict(cp))


@router.get("/audit", response_model=list[AuditEntryOut], responses=responses(*WITH_PARAMS))
def entries(
    request: Request,
    caller: AuditorCaller,
    after: Annotated[int, Query(ge=0, le=2**31 - 1, description="Entries with a larger id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many entries.")] = 100,
    action: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[a-z._]+$",
            description="An action ('request.release'), or a prefix ending in '.' ('sweep.').",
        ),
    ] = None,
    actor: Annotated[
        str | None,
        Query(max_length=200, description="An actor ('judge:Judge Ito') or a role ('judge')."),
    ] = None,
    record: Annotated[
        str | None,
        Query(
            pattern=UUID_PATTERN,
            description="Entries whose detail names this record (or request, warrant) id.",
        ),
    ] = None,
    since: Annotated[UtcTime | None, Query(description="From this time (with a zone).")] = None,
    until: Annotated[UtcTime | None, Query(description="Before this time (with a zone).")] = None,
):
    """The trail, oldest first, filtered; page on with `after` = the last id seen."""
    ctx = get_ctx(request)
    with ctx.factory() as s:
        rows = audit.entries(s, after, limit, action, actor, record, since, until)
    return [_entry_out(e) for e in rows]


@router.get("/audit/verify", response_model=VerdictOut, responses=responses(*WITH_PARAMS))
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


@router.get("/audit/checkpoint", response_model=CheckpointOut)
def checkpoint(request: Request, caller: CheckpointReader):
    """A fresh signed checkpoint (tree size, Merkle root) of the whole trail."""
    ctx = get_ctx(request)
    return _checkpoint_out(anchor.checkpoint(ctx.factory, ctx.checkpoint_key, ctx.clock()))


@router.get(
    "/audit/proof", response_model=InclusionProofOut, responses=responses(*WITH_PARAMS, 404)
)
def proof(
    request: Request,
    caller: ProofReader,
    entry: EntryId,
    size: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Default: all.")] = None,
):
    """Entry `entry`, its inclusion proof in the tree of `size` entries, and a signed
    checkpoint of that tree. An investigator gets proofs of their own entries only."""
    ctx = get_ctx(request)
    p = anchor.inclusion(ctx.factory, ctx.checkpoint_key, ctx.clock(), entry, size)
    if caller.role == "investigator" and p.entry.actor != caller.actor:
        raise anchor.ProofRefused(f"entry {entry} is not one of {caller.actor}'s", 403)
    return InclusionProofOut(
        entry=_entry_out(p.entry),
        leaf=p.leaf,
        leaf_index=p.leaf_index,
        tree_size=p.tree_size,
        proof=p.proof,
        checkpoint=_checkpoint_out(p.checkpoint),
    )


@router.get(
    "/audit/consistency", response_model=ConsistencyProofOut, responses=responses(*WITH_PARAMS, 404)
)
def consistency(
    request: Request,
    caller: AuditorCaller,
    first: Annotated[int, Query(ge=0, le=2**31 - 1)],
    second: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="Default: all.")] = None,
):
    """Proof that the tree of `first` entries is a prefix of the tree of `second`, with a
    signed checkpoint of the second."""
    ctx = get_ctx(request)
    c = anchor.consistency(ctx.factory, ctx.checkpoint_key, ctx.clock(), first, second)
    return ConsistencyProofOut(
        first=c.first, second=c.second, proof=c.proof, checkpoint=_checkpoint_out(c.checkpoint)
    )


@router.get("/retention/report", response_model=RetentionReportOut)
def retention_report(request: Request, caller: AuditorCaller):
    """What was erased when, which epoch keys were destroyed, what is held and why."""
    ctx = get_ctx(request)
    return retention.report(ctx.factory, ctx.clock(), ctx.policy.legal_hold.after_warrant)
