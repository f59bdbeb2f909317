"""The retention sweep: erase expired records not on legal hold, in batches, and destroy the
key of every ended epoch that no longer has a record (crypto-shredding).

Each erasure's audit entry names, per record, its camera, capture time, expiry, epoch and the
retention rule that expired it: once the row is gone, the trail is what tells a
data-protection officer whose data was erased and why (`report`). A run that did nothing
writes no entry of its own; idle runs are counted per day (sweep_idle_days) and each past
day's count becomes one `sweep.idle` entry, so the trail records every action without one
line per idle hour.

Only one sweeper acts at a time on PostgreSQL (a session-level advisory lock: a second one
returns `skipped`). Rows an opening has locked are skipped (`FOR UPDATE SKIP LOCKED`) and
left for the next run. Every batch writes its own audit entry in the same transaction as the
deletion, so nothing is erased unrecorded, and leaves a tombstone per record (ErasedRecord:
camera, id, when; nothing else) so that a camera re-sending it after a lost acknowledgement
is answered "received, erased" by ingest instead of having it stored again. On SQLite,
deleted pages are zeroed (`secure_delete`), the WAL is truncated and the file vacuumed, so
erased bytes do not linger.
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
from vault.models import ErasedRecord, KeyEpoch, SealedRecordRow, SweepIdleDay
from vault.openings import drop_held, expire_stale
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
    dropped_releases: list[str] = field(default_factory=list)
    holds_set: int = 0
    holds_lifted: int = 0

    @property
    def idle(self) -> bool:
        """Nothing erased, shredded, expired, held or released: nothing worth an entry."""
        return not (
            self.erased
            or self.shredded
            or self.expired_requests
            or self.dropped_releases
            or self.holds_set
            or self.holds_lifted
        )

    def summary(self) -> dict:
        return {
            "skipped": self.skipped,
            "erased": len(self.erased),
            "held_expired": self.held_expired,
            "shredded_epochs": self.shredded,
            "expired_requests": len(self.expired_requests),
            "dropped_held_releases": len(self.dropped_releases),
            "holds_set": self.holds_set,
            "holds_lifted": self.holds_lifted,
        }


def _period(d: timedelta) -> str:
    """'72h', '7d', '90m', '30s': how a policy writes a duration."""
    seconds = int(d.total_seconds())
    if seconds % 60:
        return f"{seconds}s"
    minutes = seconds // 60
    for unit, size in (("w", 7 * 1440), ("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def _erased_row(
    r: SealedRecordRow,
    rule: Callable[[str], str] | None,
    period: Callable[[str | None], timedelta] | None,
) -> dict:
    """What the trail keeps of an erased record: enough to say whose and why, no more (no
    quality, no track, nothing of the crop). The rule is the retention the record was given
    (its expiry less its capture time) and where the policy in force takes that from; a
    record kept under an earlier policy says so rather than borrowing today's reason."""
    captured, expires = as_utc(r.best_time), as_utc(r.expires)
    kept = expires - captured
    source = rule(r.camera_id) if rule else None
    if source and period is not None and period(r.camera_id) != kept:
        source = "the policy at capture"
    return {
        "record": r.id,
        "camera": r.camera_id,
        "captured": captured.isoformat(),
        "expires": expires.isoformat(),
        "epoch": r.epoch_id,
        "rule": f"retention {_period(kept)}" + (f" ({source})" if source else ""),
    }


def _erase_batch(
    factory: sessionmaker[Session],
    now: datetime,
    batch: int,
    rule: Callable[[str], str] | None = None,
    period: Callable[[str | None], timedelta] | None = None,
) -> list[str]:
    with factory.begin() as s:
        # the trail's writer lock before the read: on SQLite another sweeper's batch could
        # otherwise be read here too, deleted again (0 rows) and audited twice
        audit.lock(s)
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
        detail = {"records": ids, "rows": [_erased_row(r, rule, period) for r in rows]}
        for r in rows:
            s.delete(r)
            # the tombstone, in the erasure's transaction: a re-sent copy is not stored again
            s.add(ErasedRecord(camera_id=r.camera_id, id=r.id, erased_at=now))
        audit.append(s, "retention-sweeper", "sweep.erase", detail, now)
        return ids


def _count_idle(s: Session, now: datetime, idle: bool) -> None:
    """Write each ended day's count of idle runs as one `sweep.idle` entry, then count this
    run if it was idle. Runs under the trail's lock (audit.append takes it), so two sweepers
    on SQLite, or one with the API's writers, cannot both write a day."""
    audit.lock(s)
    today = as_utc(now).date().isoformat()
    ended = s.scalars(
        select(SweepIdleDay)
        .where(SweepIdleDay.day < today, SweepIdleDay.entry.is_(None))
        .order_by(SweepIdleDay.day)
    ).all()
    for d in ended:
        d.entry = audit.append(
            s,
            "retention-sweeper",
            "sweep.idle",
            {
                "day": d.day,
                "idle_runs": d.runs,
                "first": as_utc(d.first_at).isoformat(),
                "last": as_utc(d.last_at).isoformat(),
            },
            now,
        ).id
    if idle:
        d = s.get(SweepIdleDay, today)
        if d is None:
            s.add(SweepIdleDay(day=today, runs=1, first_at=now, last_at=now))
        else:
            d.runs, d.last_at = d.runs + 1, now


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
        audit.lock(s)  # as in _erase_batch: two sweepers never both shred and audit an epoch
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
    rule: Callable[[str], str] | None = None,
) -> SweepResult:
    """One run. With `after_warrant` (the policy's hold grace), legal holds are first brought
    in line with the warrants: set on records in scope of a warrant whose hold stands,
    lifted from records whose last warrant ended longer ago than the grace. `rule` names
    where a camera's retention comes from (policies.schema.Retention.rule), for the trail;
    `keep_keys_for` is the camera's retention now (Retention.for_camera)."""
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
            with factory.begin() as s:
                audit.lock(s)
                if unfetched_after is not None:  # wipe the shares of requests nobody fetched
                    result.expired_requests = expire_stale(s, now, unfetched_after)
                # and the released crops held for a lost answer, past their time
                result.dropped_releases = drop_held(s, now)
            while ids := _erase_batch(factory, now, batch, rule, keep_keys_for):
                result.erased += ids
            result.shredded = _shred_empty_epochs(factory, keystore, now, keep_keys_for)
            with factory.begin() as s:
                result.held_expired = s.scalar(
                    select(func.count()).where(
                        SealedRecordRow.expires <= now, SealedRecordRow.legal_hold.is_(True)
                    )
                )
                _count_idle(s, now, result.idle)
                if not result.idle:  # an idle run is counted in its day's sweep.idle entry
                    audit.append(s, "retention-sweeper", "sweep.run", result.summary(), now)
        finally:
            if pg:
                lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SWEEP_LOCK})
                lock_conn.commit()
    if (result.expired_requests or result.dropped_releases) and not result.erased:
        checkpoint_wal(engine)
    if result.erased and engine.dialect.name == "sqlite":
        checkpoint_wal(engine)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM")
    return result


def report(
    factory: sessionmaker[Session], now: datetime, after_warrant: timedelta | None = None
) -> dict:
    """For a data-protection officer: each erased record (camera, capture time, expiry, when
    it was erased, the rule that expired it, when its epoch key was destroyed) from the audit
    trail, the epoch keys destroyed, the idle sweeps per day, what is held now past its
    expiry, and which warrants hold records (why, and until when). Erasures written before
    the trail kept those fields show the record id alone."""
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
        idle = s.scalars(select(SweepIdleDay).order_by(SweepIdleDay.day)).all()
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

    shredded = [
        {
            "at": as_utc(e.at).isoformat(),
            "audit_entry": e.id,
            "epochs": json.loads(e.detail)["epochs"],
        }
        for e in entries
        if e.action == "sweep.shred"
    ]
    key_destroyed = {epoch: d["at"] for d in shredded for epoch in d["epochs"]}
    blank = {"camera": None, "captured": None, "expires": None, "epoch": None, "rule": None}
    erased = []
    for e in entries:
        if e.action != "sweep.erase":
            continue
        detail = json.loads(e.detail)
        rows = detail.get("rows") or [{**blank, "record": rid} for rid in detail["records"]]
        erased += [
            {
                **row,
                "erased": as_utc(e.at).isoformat(),
                "key_destroyed": key_destroyed.get(row["epoch"]),
                "audit_entry": e.id,
            }
            for row in rows
        ]
    return {
        "erased_records": len(erased),
        "erased": erased,
        "destroyed_epoch_keys": shredded,
        "idle_sweeps": [
            {
                "day": d.day,
                "runs": d.runs,
                "last": as_utc(d.last_at).isoformat(),
                "audit_entry": d.entry,
            }
            for d in idle
        ],
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
