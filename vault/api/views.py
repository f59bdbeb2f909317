"""Rows as the API shows them, where more than one router shows them."""

from __future__ import annotations

import base64

from escrow.canonical import as_utc
from vault import warrants
from vault.api.context import VaultContext
from vault.api.schemas import RecordMeta, WarrantOut
from vault.models import SealedRecordRow, Warrant


def warrant_out(w: Warrant, ctx: VaultContext) -> WarrantOut:
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
