"""Pydantic schemas of the API, apart from the SQLAlchemy models. Strict on input: every
string has a length limit and a shape, times must carry a time zone and are stored as UTC,
numbers must be finite (Python's JSON parser takes NaN, Infinity and 1e400), unknown fields
are refused."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from escrow.canonical import as_utc


def _printable(v: str) -> str:
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in v):
        raise ValueError("control characters are not allowed")
    return v


def _utc(v: datetime) -> datetime:
    try:
        v = as_utc(v)
    except OverflowError as exc:
        raise ValueError("time out of range") from exc
    if not 1970 <= v.year <= 9000:
        raise ValueError("time out of range (years 1970-9000)")
    return v


def _b64(v: str) -> bytes:
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64") from exc


ShortText = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_printable)
]
LongText = Annotated[
    str, StringConstraints(min_length=1, max_length=4000), AfterValidator(_printable)
]
CameraId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Uuid = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
# "<camera>@<start>" (one key per camera and epoch), or a pre-0004 global "<start>"
EpochId = Annotated[
    str,
    StringConstraints(pattern=r"^([A-Za-z0-9][A-Za-z0-9._:-]{0,63}@)?[0-9]{8}T[0-9]{4}Z$"),
]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]


def B64(max_chars: int):  # noqa: N802  (a type factory)
    return Annotated[str, StringConstraints(max_length=max_chars), AfterValidator(_b64)]


class Strict(BaseModel):
    # allow_inf_nan=False: a NaN or an infinity is never a quality, a count or a time.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- ingest ---------------------------------------------------------------------------------


class SealedRecordIn(Strict):
    """One sealed record as a camera sends it: header fields in clear (they are the AES-GCM and
    HPKE associated data), key, nonce and ciphertext base64-encoded."""

    record_id: Uuid
    camera_id: CameraId
    epoch_id: EpochId
    epoch_key_sha256: Hex64 = Field(description="SHA-256 of the epoch public key sealed to.")
    first_seen: UtcTime
    last_seen: UtcTime
    best_time: UtcTime
    version: Literal[1] = 1
    suite: Literal["x25519", "mlkem768-x25519"]
    track_id: int = Field(ge=0, le=2**31 - 1)
    quality: float = Field(ge=-1e9, le=1e9, allow_inf_nan=False)
    sealed_key: B64(2048)  # type: ignore[valid-type]
    nonce: B64(64)  # type: ignore[valid-type]
    ciphertext: B64(12 * 1024 * 1024)  # type: ignore[valid-type]


class IngestIn(Strict):
    records: list[SealedRecordIn] = Field(min_length=1, max_length=200)


class IngestOut(BaseModel):
    stored: list[str] = Field(description="Ids now stored: the same answer on every retry.")


# --- warrants -------------------------------------------------------------------------------


class WarrantIn(Strict):
    case_ref: ShortText
    legal_basis: LongText
    cameras: list[CameraId] = Field(min_length=1, max_length=100)
    window_start: UtcTime
    window_end: UtcTime
    not_before: UtcTime
    not_after: UtcTime
    max_records: int | None = Field(default=None, ge=1, le=1_000_000)


class WarrantOut(BaseModel):
    id: str
    case_ref: str
    legal_basis: str
    judge: str
    cameras: list[str]
    window_start: datetime
    window_end: datetime
    not_before: datetime
    not_after: datetime
    max_records: int | None
    issued_at: datetime
    state: str
    revoked_at: datetime | None
    revoked_reason: str | None
    hold_until: datetime
    signature: str


class RevokeIn(Strict):
    reason: LongText


class RecordMeta(BaseModel):
    """What an investigator may see before an opening: never an image."""

    id: str
    camera_id: str
    first_seen: datetime
    last_seen: datetime
    best_time: datetime
    quality: float
    expires: datetime
    legal_hold: bool
    epoch_id: str | None = None


# --- opening requests -----------------------------------------------------------------------


class RequestIn(Strict):
    warrant_id: Uuid
    record_ids: list[Uuid] = Field(min_length=1, max_length=1000)
    reason: LongText


class ApprovalOut(BaseModel):
    trustee: str
    share_index: int
    at: datetime


class RequestOut(BaseModel):
    id: str
    warrant_id: str
    requester: str
    record_ids: list[str]
    reason: str
    created: datetime
    status: str
    approvals: list[ApprovalOut]
    required: int
    digest: str = Field(description="What a trustee approves; send it back with the share.")
    released_at: datetime | None
    released_count: int | None


class RequestCreated(BaseModel):
    request: RequestOut
    fetch_secret: str = Field(description="Shown once; needed to fetch the crops.")


class ApprovalIn(Strict):
    """One trustee's approval: for each (camera, epoch) key the request needs, the trustee's
    share unsealed on their own machine and sealed again to the vault's release key and the
    request's key (escrow.sealing.seal_share_for_release), base64."""

    request_digest: Hex64
    shares: dict[EpochId, B64(4096)] = Field(max_length=1000)  # type: ignore[valid-type]


class KeyShareOut(BaseModel):
    certificate: dict = Field(description="The epoch's signed certificate (public).")
    sealed_share: str | None = Field(description="This trustee's share, sealed to their key.")
    share_digest: str | None
    records: int


class ReviewOut(BaseModel):
    """What a trustee's client shows before approving, and what it needs to approve."""

    request: RequestOut
    warrant: WarrantOut
    records: list[RecordMeta]
    keys: list[KeyShareOut]
    digest_fields: dict = Field(description="The fields the request digest is computed from.")
    release_public_key: str
    authority_public_key: str
    trustee_index: int | None


class KeyringOut(BaseModel):
    format: str
    camera_id: str | None
    authority_public_key: str
    authority_fingerprint: str
    epochs: list[dict]


class ReleaseIn(Strict):
    fetch_secret: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class ReleasedCrop(BaseModel):
    record_id: str
    camera_id: str
    best_time: datetime
    quality: float
    ciphertext_sha256: str
    jpeg: str = Field(description="The crop, JPEG, base64.")
    clip: list[str] = Field(description="Frames sealed around the best one, JPEG, base64.")
    meta: dict


class ReleaseOut(BaseModel):
    request_id: str
    released: list[ReleasedCrop]
    withheld: dict[str, str]


# --- audit, administration ------------------------------------------------------------------


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    detail: dict
    prev_hash: str
    hash: str


class VerdictOut(BaseModel):
    ok: bool
    entries: int
    head: str
    broken_at: int | None
    reason: str


class CheckpointOut(BaseModel):
    """A signed tree head of the audit trail (see docs/api.md, "Checkpoints")."""

    format: str
    log_id: str = Field(description="SHA-256 of `key`, hex.")
    size: int = Field(description="Entries 1..size are the tree's leaves.")
    root: str = Field(description="RFC 9162 Merkle tree hash, hex.")
    time: str = Field(description="When it was signed, exactly as signed.")
    key: str = Field(description="The checkpoint key's Ed25519 public key, base64.")
    signature: str = Field(description="Ed25519 over the body (format/log_id/size/root/time).")


class InclusionProofOut(BaseModel):
    entry: AuditEntryOut
    leaf: str = Field(description="The leaf's bytes (UTF-8 JSON): its hash is SHA-256(0x00||leaf).")
    leaf_index: int = Field(description="0-based position of the leaf in the tree.")
    tree_size: int
    proof: list[str] = Field(description="RFC 9162 inclusion path, hex, leaf to root.")
    checkpoint: CheckpointOut


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    proof: list[str] = Field(description="RFC 9162 consistency proof, hex.")
    checkpoint: CheckpointOut = Field(description="A signed checkpoint of the second tree.")


class CameraIn(Strict):
    id: CameraId
    name: ShortText | None = None


class CameraOut(BaseModel):
    id: str
    name: str | None
    created: datetime


class TokenIn(Strict):
    """Through the API an admin makes camera tokens only (any other role is refused, 403):
    judge, trustee and auditor tokens are signed by the escrow authority at the command line,
    so an admin cannot make themselves one."""

    role: Literal["camera", "judge", "investigator", "trustee", "auditor", "admin"]
    name: ShortText


class TokenOut(BaseModel):
    id: str
    name: str
    role: str
    created: datetime
    expires_at: datetime = Field(description="The token stops working at this time (UTC).")
    trustee_index: int | None = Field(description="A trustee's share index (1..n).")
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(
        default=None, description="When the token last authenticated, to the minute."
    )


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once; only its SHA-256 is stored.")
