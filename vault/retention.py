"""The retention sweep: erase expired records not on legal hold, in batches, and destroy the
key of every ended epoch that no longer has a record (crypto-shredding).

Only one sweeper acts at a time on PostgreSQL (a session-level advisory lock: a second one
returns `skipped`). Rows an opening has locked are skipped (`FOR UPDATE SKIP LOCKED`) and
left for the next run. Every batch writes its own audit entry in the same transaction as the
deletion, so nothing is erased unrecorded. On SQLite, deleted pages are zeroed
(`secure_delete`), the WAL is truncated and the file vacuumed, so erased bytes do not linger.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from escrow.canonical import as_utc
from vault import audit
from vault.keys import KeyStore
from vault.models import KeyEpoch, SealedRecordRow
from vault.openings import expire_stale
from vault.store import checkpoint_wal
from vault.warrants import refresh_holds

_SWEEP_LOCK = 0x6B66_7377  # "kfsw"


@dataclass
class SweepResult:
    skipped: bool = False
    erased: list[str] = field(default_factory=list)
    held_expired: int = 0
    shredded: list[str] = field(default_factory=list)
    expired_requests: list[str] = field(default_factory=list)
    holds_set: int = 0
    holds_lifted: int = 0

    def summary(self) -> dict:
        return {
            "skipped": self.skipped,
            "erased": len(self.erased),
            "held_expired": self.held_expired,
            "shredded_epochs": self.shredded,
            "expired_requests": len(self.expired_requests),
            "holds_set": self.holds_set,
            "holds_lifted": self.holds_lifted,
        }


def _erase_batch(factory: sessionmaker[Session], now: datetime, batch: int) -> list[str]:
    with factory.begin() as s:
        q = (
            select(SealedRecordRow)
            .where(SealedRecordRow.expires <= now, SealedRecordRow.legal_hold.is_(False))
            .order_by(SealedRecordRow.expires)
            .limit(batch)
        )
        if s.get_bind().dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        rows = list(s.scalars(q))
        if not rows:
            return []
        ids = [r.id for r in rows]
        for r in rows:
            s.delete(r)
        audit.append(s, "retention-sweeper", "sweep.erase", {"records": ids}, now)
        return ids


def _shred_empty_epochs(
    factory: sessionmaker[Session],
    keystore: KeyStore,
    now: datetime,
    keep_for: Callable[[str | None], timedelta] | None = None,
) -> list[str]:
    """Destroy the key of every ended epoch with no record left. With `keep_for` (a camera's
    retention), only once no record of it can still arrive: a camera's outbox may hold an
    epoch's records for as long as they may be kept, and shredding earlier would make them
    unopenable on arrival."""
    shredded = []
    with factory.begin() as s:
        remaining = select(func.count()).where(SealedRecordRow.epoch_id == KeyEpoch.id)
        epochs = s.scalars(
            select(KeyEpoch).where(
                KeyEpoch.destroyed_at.is_(None),
                KeyEpoch.not_after <= now,
                remaining.scalar_subquery() == 0,
            )
        ).all()
        if keep_for is not None:
            epochs = [e for e in epochs if as_utc(e.not_after) + keep_for(e.camera_id) <= now]
        for e in epochs:
            keystore.shred(e.id)
            e.destroyed_at = now
            shredded.append(e.id)
        if shredded:
            audit.append(s, "retention-sweeper", "sweep.shred", {"epochs": shredded}, now)
    return shredded


def sweep(
    engine: Engine,
    keystore: KeyStore,
    now: datetime,
    batch: int = 1000,
    after_warrant: timedelta | None = None,
    unfetched_after: timedelta | None = None,
    keep_keys_for: Callable[[str | None], timedelta] | None = None,
) -> SweepResult:
    """One run. With `after_warrant` (the policy's hold grace), legal holds are first brought
    in line with the warrants: set on records in scope of a warrant whose hold stands,
    lifted from records whose last warrant ended longer ago than the grace."""
    factory = sessionmaker(engine, expire_on_commit=False)
    result = SweepResult()
    pg = engine.dialect.name == "postgresql"
    with engine.connect() as lock_conn:
        if pg:
            got = lock_conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _SWEEP_LOCK})
            if not got.scalar():
                result.skipped = True
                return result
        try:
            if after_warrant is not None:
                with factory.begin() as s:  # counted in the run's summary entry
                    result.holds_set, result.holds_lifted = refresh_holds(s, now, after_warrant)
            if unfetched_after is not None:  # wipe the shares of requests nobody fetched
                with factory.begin() as s:
                    audit.lock(s)
                    result.expired_requests = expire_stale(s, now, unfetched_after)
            while ids := _erase_batch(factory, now, batch):
                result.erased += ids
            result.shredded = _shred_empty_epochs(factory, keystore, now, keep_keys_for)
            with factory.begin() as s:
                result.held_expired = s.scalar(
                    select(func.count()).where(
                        SealedRecordRow.expires <= now, SealedRecordRow.legal_hold.is_(True)
                    )
                )
                # every run leaves one summary entry, also when it found nothing to do
                audit.append(s, "retention-sweeper", "sweep.run", result.summary(), now)
        finally:
            if pg:
                lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SWEEP_LOCK})
                lock_conn.commit()
    if result.expired_requests and not result.erased:
        checkpoint_wal(engine)
    if result.erased and engine.dialect.name == "sqlite":
        checkpoint_wal(engine)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM")
    return result


def report(
    factory: sessionmaker[Session], now: datetime, after_warrant: timedelta | None = None
) -> dict:
    """For a data-protection officer: what was erased when (from the audit trail), which
    epoch keys were destroyed, what is held now past its expiry, and which warrants hold
    records (why, and until when)."""
    import json

    from vault.models import AuditEntry

    with factory() as s:
        entries = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action.in_(("sweep.erase", "sweep.shred")))
            .order_by(AuditEntry.id)
        ).all()
        held = s.execute(
            select(
                SealedRecordRow.camera_id,
                func.count(),
                func.min(SealedRecordRow.expires),
            )
            .where(SealedRecordRow.legal_hold.is_(True), SealedRecordRow.expires <= now)
            .group_by(SealedRecordRow.camera_id)
        ).all()
    holds = []
    if after_warrant is not None:
        from vault.warrants import hold_until, holding, in_scope, state

        with factory() as s:
            for w in holding(s, now, after_warrant):
                n = s.scalar(select(func.count()).select_from(SealedRecordRow).where(in_scope(w)))
                holds.append(
                    {
                        "warrant": w.id,
                        "case_ref": w.case_ref,
                        "judge": w.judge,
                        "state": state(w, now),
                        "hold_until": hold_until(w, after_warrant).isoformat(),
                        "records_in_scope": n,
                    }
                )

    def done(action: str, what: str) -> list[dict]:
        """The sweeper's `action` entries: when, which entry, and the `what` it names."""
        return [
            {"at": as_utc(e.at).isoformat(), "audit_entry": e.id, what: json.loads(e.detail)[what]}
            for e in entries
            if e.action == action
        ]

    erased = done("sweep.erase", "records")
    shredded = done("sweep.shred", "epochs")
    return {
        "erased_records": sum(len(b["records"]) for b in erased),
        "erasures": erased,
        "destroyed_epoch_keys": shredded,
        "held_past_expiry": [
            {
                "camera": cam,
                "records": n,
                "oldest_expiry": as_utc(oldest).isoformat(),
                "reason": "legal hold",
            }
            for cam, n, oldest in held
        ],
        "warrant_holds": holds,
    }


AGE_BUCKETS = (
    (timedelta(days=1), "< 1 day"),
    (timedelta(days=7), "1-7 days"),
    (timedelta(days=30), "7-30 days"),
    (None, "> 30 days"),
)


def overview(s: Session, now: datetime, days_ahead: int = 14) -> dict:
    """What a data-protection officer looks at beside `report`: the records stored per camera
    by age (since their best frame), and how many expire on each of the next days (held
    records apart: they stay until their warrants' holds end)."""
    rows = s.execute(
        select(
            SealedRecordRow.camera_id,
            SealedRecordRow.best_time,
            SealedRecordRow.expires,
            SealedRecordRow.legal_hold,
        )
    ).all()
    labels = [label for _, label in AGE_BUCKETS]
    by_age: dict[str, dict[str, int]] = {}
    expiring = [0] * days_ahead
    held = 0
    for cam, best, expires, hold in rows:
        age = now - as_utc(best)
        label = next(lb for limit, lb in AGE_BUCKETS if limit is None or age < limit)
        by_age.setdefault(cam, dict.fromkeys(labels, 0))[label] += 1
        if hold:
            held += 1
            continue
        day = (as_utc(expires) - now).days
        if 0 <= day < days_ahead:
            expiring[day] += 1
    return {
        "age_labels": labels,
        "by_camera_age": dict(sorted(by_age.items())),
        "expiring_per_day": expiring,
        "held": held,
        "stored": len(rows),
    }
