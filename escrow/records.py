"""The sealed-record tables and their store, shared by the camera's outbox and the vault.

A camera's local store holds exactly these three tables and nothing else of the vault's
(no warrants, tokens or audit trail): `create_schema` makes them. The vault's index has the
same three tables (its Alembic migrations own them there; `vault.models` adds the rest), so
one record moves from outbox to vault as the same row. Every change here needs an Alembic
revision too.

Put, get and delete are one transaction each, ciphertext and index row together, so a
record never exists without its ciphertext or the other way round.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from escrow.canonical import as_utc
from escrow.keyring import EpochCertificate
from escrow.sealing import RecordHeader, SealedRecord


class Base(DeclarativeBase):
    pass


class Camera(Base):
    __tablename__ = "cameras"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KeyEpoch(Base):
    """Public half of an epoch. The private key lives only in the key store (vault.keys),
    never in this database, so a database backup cannot outlive a crypto-shred."""

    __tablename__ = "key_epochs"
    id: Mapped[str] = mapped_column(String(160), primary_key=True)  # "<camera>@<start>"
    camera_id: Mapped[str | None] = mapped_column(String(64))  # None: a pre-0004 global epoch
    suite: Mapped[str] = mapped_column(String(32))
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SealedRecordRow(Base):
    """One sealed record. Its id is unique per camera (the primary key is the pair), so no
    camera can squat an id another camera will use."""

    __tablename__ = "sealed_records"
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    track_id: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    best_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    quality: Mapped[float] = mapped_column(Float)
    epoch_id: Mapped[str] = mapped_column(ForeignKey("key_epochs.id"))
    suite: Mapped[str] = mapped_column(String(32))
    format_version: Mapped[int] = mapped_column(Integer)
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext_sha256: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_records_camera_time", "camera_id", "best_time"),
        Index("ix_records_expires", "expires"),
        Index("ix_records_epoch", "epoch_id"),
    )


def ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str) -> Engine:
    """Camera and vault alike: on SQLite, erased rows are zeroed and the log is a WAL."""
    ensure_sqlite_dir(url)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            # Erased rows are overwritten with zeros, not just unlinked from the b-tree.
            cur.execute("PRAGMA secure_delete=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


RECORD_TABLES = [Camera.__table__, KeyEpoch.__table__, SealedRecordRow.__table__]


def create_schema(engine: Engine) -> None:
    """A camera's outbox: the three record tables, created where missing. An outbox made by
    an older camera (the vault's whole schema) already has them and is used as it is."""
    Base.metadata.create_all(engine, tables=RECORD_TABLES)


class StoreError(Exception):
    pass


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


def other_content(record_id: str) -> str:
    """The vault's reason (with 409) for a record id of the posting camera that it already
    holds under other content. Ids derive from camera, source and track, so to the camera
    that sealed it this means a restarted capture sealed that track again, under a new
    nonce and key: the copy the vault took in first is the one delivered (escrow.outbox).
    One string for the vault that says it and the sender that reads it."""
    return f"record {record_id} is stored with other content"


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
