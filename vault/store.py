"""Put, get, list and delete sealed records: one transaction each, ciphertext and index row
together, so a record never exists without its ciphertext or the other way round."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vault.crypto import RecordHeader, SealedRecord
from vault.keys import EpochCertificate
from vault.models import Camera, KeyEpoch, SealedRecordRow


class StoreError(Exception):
    pass


def as_utc(d: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


def register_epochs(session: Session, certs: list[EpochCertificate]) -> int:
    """Index the public half of epochs (idempotent); returns how many were new."""
    new = 0
    for c in certs:
        if session.get(KeyEpoch, c.epoch_id) is None:
            start, end = c.window()
            session.add(
                KeyEpoch(
                    id=c.epoch_id,
                    camera_id=c.camera_id or None,
                    suite=c.suite,
                    not_before=start,
                    not_after=end,
                    public_key=base64.b64decode(c.public_key),
                    signature=base64.b64decode(c.signature),
                )
            )
            new += 1
    return new


def ensure_camera(session: Session, camera_id: str, now: datetime) -> None:
    if session.get(Camera, camera_id) is None:
        session.add(Camera(id=camera_id, created=now))


def expires_at(best_time: datetime, retention: timedelta) -> datetime:
    """The one retention rule, on the camera (its outbox) and in the vault alike: a record is
    kept `retention` after its best frame was captured, not after it happened to be stored."""
    return best_time + retention


def row_from_sealed(
    sealed: SealedRecord, track_id: int, quality: float, created: datetime, expires: datetime
) -> SealedRecordRow:
    h = sealed.header
    return SealedRecordRow(
        id=h.record_id,
        camera_id=h.camera_id,
        track_id=track_id,
        first_seen=h.first_seen,
        last_seen=h.last_seen,
        best_time=h.best_time,
        quality=quality,
        epoch_id=h.epoch_id,
        suite=sealed.suite,
        format_version=h.version,
        sealed_key=sealed.sealed_key,
        nonce=sealed.nonce,
        ciphertext=sealed.ciphertext,
        ciphertext_sha256=hashlib.sha256(sealed.ciphertext).hexdigest(),
        created=created,
        expires=expires,
        legal_hold=False,
    )


def sealed_from_row(row: SealedRecordRow) -> SealedRecord:
    header = RecordHeader(
        row.id,
        row.camera_id,
        row.epoch_id,
        as_utc(row.first_seen),
        as_utc(row.last_seen),
        as_utc(row.best_time),
        row.format_version,
    )
    if hashlib.sha256(row.ciphertext).hexdigest() != row.ciphertext_sha256:
        raise StoreError(f"record {row.id}: ciphertext does not match its stored hash")
    return SealedRecord(header, row.suite, row.sealed_key, row.nonce, row.ciphertext)


def put(
    factory: sessionmaker[Session],
    items: list[tuple[SealedRecord, int, float]],
    now: datetime,
    expires: datetime,
) -> int:
    """Store a batch of (sealed record, track id, quality) in one transaction. Idempotent by
    record id: a record already stored (a retry, a restarted camera) is skipped. Returns how
    many were new."""
    with factory.begin() as s:
        for cam in {sealed.header.camera_id for sealed, _, _ in items}:
            ensure_camera(s, cam, now)
        ids = [sd.header.record_id for sd, _, _ in items]
        have = set(
            s.execute(
                select(SealedRecordRow.camera_id, SealedRecordRow.id).where(
                    SealedRecordRow.id.in_(ids)
                )
            ).all()
        )
        new = [it for it in items if (it[0].header.camera_id, it[0].header.record_id) not in have]
        s.add_all(row_from_sealed(sd, t, q, now, expires) for sd, t, q in new)
    return len(new)


def _row(s: Session, record_id: str, camera_id: str | None) -> SealedRecordRow | None:
    q = select(SealedRecordRow).where(SealedRecordRow.id == record_id)
    if camera_id is not None:
        q = q.where(SealedRecordRow.camera_id == camera_id)
    return s.scalars(q).first()


def get(
    factory: sessionmaker[Session], record_id: str, camera_id: str | None = None
) -> SealedRecord:
    with factory() as s:
        row = _row(s, record_id, camera_id)
        if row is None:
            raise StoreError(f"no such record: {record_id}")
        return sealed_from_row(row)


def list_ids(
    factory: sessionmaker[Session], camera_id: str, start: datetime, end: datetime
) -> list[str]:
    """Record ids of one camera whose best frame lies in [start, end): index only."""
    with factory() as s:
        q = (
            select(SealedRecordRow.id)
            .where(SealedRecordRow.camera_id == camera_id)
            .where(SealedRecordRow.best_time >= start, SealedRecordRow.best_time < end)
            .order_by(SealedRecordRow.best_time)
        )
        return list(s.scalars(q))


def delete(
    factory: sessionmaker[Session], record_ids: list[str], camera_id: str | None = None
) -> int:
    """Delete records, index row and ciphertext together, in one transaction."""
    with factory.begin() as s:
        n = 0
        for rid in record_ids:
            row = _row(s, rid, camera_id)
            if row is not None:
                s.delete(row)
                n += 1
    return n


def checkpoint_wal(engine) -> None:
    """SQLite keeps overwritten pages in its write-ahead log until a checkpoint: after wiping
    secrets (sealed shares), fold the log into the (secure_delete) file and truncate it."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def mark_epoch_destroyed(factory: sessionmaker[Session], epoch_id: str, now: datetime) -> None:
    """Record in the index that an epoch's key was shredded (vault.keys.KeyStore.shred)."""
    with factory.begin() as s:
        epoch = s.get(KeyEpoch, epoch_id)
        if epoch is None:
            raise StoreError(f"no such epoch: {epoch_id}")
        epoch.destroyed_at = now
