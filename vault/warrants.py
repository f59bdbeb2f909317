"""Warrants: their scope and validity, their signature, and the legal holds they place.

A warrant names cameras and a time window (records whose best frame lies in
[window_start, window_end)), and is usable only between not_before and not_after and until
revoked. It is signed with the vault's warrant key when issued, and the signature is checked
every time the warrant is used: widening its scope with a database edit makes it unusable.

Legal hold: a record in the scope of a warrant stays held (the sweeper must not erase it)
until `legal_hold.after_warrant` after that warrant ends, by expiry or by revocation.

Revocation ends a warrant at once: the requests still pending under it are closed and the
shares they gathered wiped.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import and_, false, or_, select, true, update
from sqlalchemy.orm import Session

from escrow.canonical import as_utc, canonical_json, iso_utc
from vault.models import OpeningRequest, SealedRecordRow, Warrant
from vault.refusals import Refused


class WarrantRefused(Refused):
    """The warrant cannot be used now."""


def cameras(w: Warrant) -> list[str]:
    return json.loads(w.cameras)


def canonical(w: Warrant) -> bytes:
    """What the signature covers: every field that decides what the warrant allows."""
    body = {
        "id": w.id,
        "case_ref": w.case_ref,
        "legal_basis": w.legal_basis,
        "judge": w.judge,
        "judge_token_id": w.judge_token_id,
        "cameras": cameras(w),
        "window": [iso_utc(w.window_start), iso_utc(w.window_end)],
        "valid": [iso_utc(w.not_before), iso_utc(w.not_after)],
        "max_records": w.max_records,
        "issued_at": iso_utc(w.issued_at),
    }
    # json's default separators (", ", ": "): the form warrants were first signed in
    return b"keyframe-escrow/warrant\x00" + canonical_json(body, spaced=True)


def issue(
    s: Session,
    signer: ed25519.Ed25519PrivateKey,
    *,
    case_ref: str,
    legal_basis: str,
    cameras: list[str],
    window_start: datetime,
    window_end: datetime,
    not_before: datetime,
    not_after: datetime,
    max_records: int | None,
    judge: str,
    judge_token_id: str,
    now: datetime,
) -> Warrant:
    if not cameras:
        raise WarrantRefused("a warrant must name at least one camera", 422)
    if window_start >= window_end:
        raise WarrantRefused("the scope's window must start before it ends", 422)
    if not_before >= not_after:
        raise WarrantRefused("not_before must be earlier than not_after", 422)
    if not_after <= now:
        raise WarrantRefused("the warrant would already have expired", 422)
    if max_records is not None and max_records < 1:
        raise WarrantRefused("max_records must be at least 1", 422)
    w = Warrant(
        id=str(uuid.uuid4()),
        case_ref=case_ref,
        legal_basis=legal_basis,
        judge=judge,
        judge_token_id=judge_token_id,
        cameras=json.dumps(sorted(set(cameras))),
        window_start=window_start,
        window_end=window_end,
        not_before=not_before,
        not_after=not_after,
        max_records=max_records,
        issued_at=now,
        signature=b"",
    )
    w.signature = signer.sign(canonical(w))
    s.add(w)
    s.flush()
    return w


def get(s: Session, warrant_id: str) -> Warrant:
    w = s.get(Warrant, warrant_id)
    if w is None:
        raise WarrantRefused(f"no warrant {warrant_id}", 404)
    return w


def revoke(
    s: Session,
    w: Warrant,
    public_key: ed25519.Ed25519PublicKey,
    *,
    reason: str,
    now: datetime,
    after_warrant: timedelta,
) -> tuple[list[str], int]:
    """Revoke `w` now: its pending requests are closed (their gathered shares wiped) and the
    legal holds brought in line; its records stay held for `after_warrant`.
    -> (ids of the requests closed, holds released)."""
    from vault import openings  # openings imports this module

    verify(w, public_key)
    if w.revoked_at is not None:
        raise WarrantRefused(f"warrant {w.id} was already revoked", 409)
    w.revoked_at, w.revoked_reason = now, reason
    pending = s.scalars(
        select(OpeningRequest).where(
            OpeningRequest.warrant_id == w.id, OpeningRequest.status == "pending"
        )
    ).all()
    for req in pending:
        openings.close(s, req, "closed")
    s.flush()
    _, released = refresh_holds(s, now, after_warrant)
    return [r.id for r in pending], released


def verify(w: Warrant, public_key: ed25519.Ed25519PublicKey) -> None:
    try:
        public_key.verify(w.signature, canonical(w))
    except InvalidSignature as exc:
        raise WarrantRefused(f"warrant {w.id}: signature does not match (altered)") from exc


def state(w: Warrant, now: datetime) -> str:
    if w.revoked_at is not None:
        return "revoked"
    if now < as_utc(w.not_before):
        return "not yet valid"
    if now >= as_utc(w.not_after):
        return "expired"
    return "active"


def require_active(w: Warrant, public_key: ed25519.Ed25519PublicKey, now: datetime) -> None:
    verify(w, public_key)
    st = state(w, now)
    if st != "active":
        raise WarrantRefused(f"warrant {w.id} is {st}")


def in_scope(w: Warrant):
    """SQL condition: the record lies in the warrant's scope."""
    return and_(
        SealedRecordRow.camera_id.in_(cameras(w)),
        SealedRecordRow.best_time >= w.window_start,
        SealedRecordRow.best_time < w.window_end,
    )


def scoped_records(s: Session, w: Warrant, ids: list[str] | None = None) -> list[SealedRecordRow]:
    q = select(SealedRecordRow).where(in_scope(w)).order_by(SealedRecordRow.best_time)
    if ids is not None:
        q = q.where(SealedRecordRow.id.in_(ids))
    return list(s.scalars(q))


def hold_until(w: Warrant, after_warrant: timedelta) -> datetime:
    end = as_utc(w.revoked_at) if w.revoked_at is not None else as_utc(w.not_after)
    return end + after_warrant


def holding(s: Session, now: datetime, after_warrant: timedelta) -> list[Warrant]:
    """Warrants whose hold still stands (issued, and not ended longer ago than the grace)."""
    return [w for w in s.scalars(select(Warrant)) if hold_until(w, after_warrant) > now]


def refresh_holds(
    s: Session, now: datetime, after_warrant: timedelta, ids: list[str] | None = None
) -> tuple[int, int]:
    """Set legal_hold on exactly the records in scope of a holding warrant (only among `ids`
    when given). Returns (newly held, released)."""
    ws = holding(s, now, after_warrant)
    cond = or_(*(in_scope(w) for w in ws)) if ws else false()
    only = SealedRecordRow.id.in_(ids) if ids is not None else true()
    held = s.execute(
        update(SealedRecordRow)
        .where(only, SealedRecordRow.legal_hold.is_(False), cond)
        .values(legal_hold=True)
        .execution_options(synchronize_session=False)
    ).rowcount
    released = 0
    if ids is None:
        released = s.execute(
            update(SealedRecordRow)
            .where(SealedRecordRow.legal_hold.is_(True), ~cond)
            .values(legal_hold=False)
            .execution_options(synchronize_session=False)
        ).rowcount
    return held, released


def timeline(
    s: Session, camera_ids: list[str], start: datetime, end: datetime, bins: int = 48
) -> tuple[list[datetime], dict[str, list[int]]]:
    """How many records each camera holds per time bin over [start, end): counts only, what a
    judge sees of the footage a scope covers. -> (bin starts, {camera: counts})."""
    start, end = as_utc(start), as_utc(end)
    step = (end - start) / bins
    edges = [start + step * i for i in range(bins)]
    counts = {c: [0] * bins for c in camera_ids}
    times = s.execute(
        select(SealedRecordRow.camera_id, SealedRecordRow.best_time).where(
            SealedRecordRow.camera_id.in_(camera_ids),
            SealedRecordRow.best_time >= start,
            SealedRecordRow.best_time < end,
        )
    ).all()
    for cam, t in times:
        i = min(int((as_utc(t) - start) / step), bins - 1)
        counts[cam][i] += 1
    return edges, counts
