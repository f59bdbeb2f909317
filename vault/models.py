"""SQLAlchemy tables of the vault's SQL index. Every change here needs an Alembic revision."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


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
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    suite: Mapped[str] = mapped_column(String(32))
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SealedRecordRow(Base):
    __tablename__ = "sealed_records"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id"))
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
    trustee_index: Mapped[int | None] = mapped_column(Integer)
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)


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
