"""SQLAlchemy tables of the vault's SQL index. Every change here needs an Alembic revision.

The record tables (cameras, key epochs, sealed records) are the camera's too and live in
escrow.records; the tables only a vault has are added here to the same metadata."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from escrow.records import Base, Camera, KeyEpoch, SealedRecordRow

__all__ = ["Base", "Camera", "KeyEpoch", "SealedRecordRow"]  # with the vault's own tables


class AuditEntry(Base):
    """Append-only, hash-chained trail (written by issue 6's audit module)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ApiToken(Base):
    """A bearer token of one role. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The trustee key (1..n) a trustee token speaks for; None for every other role.
    trustee_index: Mapped[int | None] = mapped_column(Integer)
    # The escrow authority's Ed25519 signature over the token's row (privileged roles): a
    # database writer cannot mint a judge or a trustee.
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)
    # When the token last authenticated, to the minute (tokens.touch): an admin spots the
    # tokens nobody uses any more. Not signed: it is bookkeeping, not authority.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Warrant(Base):
    """A judge's warrant: who may see which camera's records from which time window, and until
    when. Signed by the vault's warrant key at issue; every use re-checks the signature, so an
    edit to the scope in the database makes the warrant unusable rather than wider."""

    __tablename__ = "warrants"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_ref: Mapped[str] = mapped_column(String(200))
    legal_basis: Mapped[str] = mapped_column(Text)
    judge: Mapped[str] = mapped_column(String(200))
    judge_token_id: Mapped[str] = mapped_column(String(36))
    cameras: Mapped[str] = mapped_column(Text)  # JSON list of camera ids
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    max_records: Mapped[int | None] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class OpeningRequest(Base):
    """An investigator's request to open chosen records under one warrant. Trustee shares are
    sealed to `public_key`, whose private half only the requester holds: the database alone
    never holds enough to rebuild the master key."""

    __tablename__ = "opening_requests"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    warrant_id: Mapped[str] = mapped_column(ForeignKey("warrants.id"))
    requester_token_id: Mapped[str] = mapped_column(String(36))
    requester: Mapped[str] = mapped_column(String(200))
    record_ids: Mapped[str] = mapped_column(Text)  # JSON list
    reason: Mapped[str] = mapped_column(Text)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))  # pending | released | closed
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_count: Mapped[int | None] = mapped_column(Integer)
    # The release's answer sealed to `public_key` (escrow.sealing.seal_to_requester), kept
    # until the requester confirms receipt or `held_until`: an answer lost on its way is
    # delivered again, never opened again. Readable with the fetch secret only.
    held_release: Mapped[bytes | None] = mapped_column(LargeBinary)
    held_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_requests_warrant", "warrant_id"),)


class Approval(Base):
    """One trustee's approval of one request: their master-key share, sealed to the request's
    key with the request, trustee and share index as associated data (so it cannot be moved
    to another request). The sealed share is wiped once the request is released or closed."""

    __tablename__ = "approvals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("opening_requests.id"))
    trustee_token_id: Mapped[str] = mapped_column(String(36))
    trustee: Mapped[str] = mapped_column(String(200))
    share_index: Mapped[int] = mapped_column(Integer)
    sealed_share: Mapped[bytes | None] = mapped_column(LargeBinary)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("request_id", "trustee_token_id", name="uq_approval_trustee"),
        UniqueConstraint("request_id", "share_index", name="uq_approval_share"),
    )


class SweepIdleDay(Base):
    """Sweeps that found nothing to do, counted per UTC day instead of each writing an audit
    entry (17 of 49 entries of a short run were such). A day's count goes into the trail as
    one `sweep.idle` entry at the first sweep after the day ended (`entry` is that entry's
    id): an idle sweep changes nothing, so nothing goes unrecorded meanwhile."""

    __tablename__ = "sweep_idle_days"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    runs: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    entry: Mapped[int | None] = mapped_column(Integer)


class ErasedRecord(Base):
    """A tombstone: the sweep erased this record (written in the erasure's transaction). It
    keeps what the `sweep.erase` audit entry already names, the camera and the record id,
    and when; nothing of the crop, its ciphertext or its metadata. Ingest reads it so a
    record re-sent after its erasure (the camera's acknowledgement was lost, its outbox
    retried) is answered "received, erased" and not stored again: an erasure sticks.

    Kept for good: a camera's outbox may hold a record for as long as the camera is offline,
    so no horizon is safe, and a tombstone holds no more than the trail keeps forever."""

    __tablename__ = "erased_records"
    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
