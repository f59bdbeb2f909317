"""Pydantic schemas of the API, apart from the SQLAlchemy models. Strict on input: every
string has a length limit and a shape, times must carry a time zone and are stored as UTC,
numbers must be finite (Python's JSON parser takes NaN, Infinity and 1e400), unknown fields
are refused."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path
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
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
Uuid = Annotated[str, StringConstraints(pattern=UUID_PATTERN)]
# Ids in a path are UUIDs too: anything else is a 422 that does not repeat it, never a 404
# whose one line ("no request ...") would carry the caller's text, line breaks and all, into
# the answer and the audit trail.
WarrantId = Annotated[str, Path(pattern=UUID_PATTERN, description="The warrant's id (a UUID).")]
RequestId = Annotated[str, Path(pattern=UUID_PATTERN, description="The request's id (a UUID).")]
TokenId = Annotated[str, Path(pattern=UUID_PATTERN, description="The token's row id (a UUID).")]
# "<camera>@<start>" (one key per camera and epoch), or a pre-0004 global "<start>"
EpochId = Annotated[
    str,
    StringConstraints(pattern=r"^([A-Za-z0-9][A-Za-z0-9._:-]{0,63}@)?[0-9]{8}T[0-9]{4}Z$"),
]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]


def B64(max_chars: int):  # noqa: N802  (a type factory)
    return Annotated[str, StringConstraints(max_length=max_chars), AfterValidator(_b64)]


class Doc(BaseModel):
    """Field docstrings become the OpenAPI descriptions: a reader of /docs sees what each
    field means without reading this file."""

    model_config = ConfigDict(use_attribute_docstrings=True)


class Strict(Doc):
    # allow_inf_nan=False: a NaN or an infinity is never a quality, a count or a time.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)


class ErrorOut(Doc):
    """Every error the API answers (4xx, 503) has this one shape."""

    detail: str
    """One line saying why, never echoing the input."""


# --- ingest ---------------------------------------------------------------------------------


class SealedRecordIn(Strict):
    """One sealed record as a camera sends it: header fields in clear (they are the AES-GCM and
    HPKE associated data), key, nonce and ciphertext base64-encoded."""

    record_id: Uuid
    """The record's id (UUID), derived by the camera from camera, source and track."""
    camera_id: CameraId
    """The camera that sealed it; must be the camera the token is named for."""
    epoch_id: EpochId
    """The (camera, epoch) key it is sealed to: '<camera>@<start>'."""
    epoch_key_sha256: Hex64 = Field(description="SHA-256 of the epoch public key sealed to.")
    first_seen: UtcTime
    """When the person's track began (with a time zone)."""
    last_seen: UtcTime
    """When the track ended."""
    best_time: UtcTime
    """When the sealed best frame was taken: it decides the epoch and the retention."""
    version: Literal[1] = 1
    """Wire format version."""
    suite: Literal["x25519", "mlkem768-x25519"]
    """HPKE suite of the epoch key."""
    track_id: int = Field(ge=0, le=2**31 - 1, description="The camera's track number.")
    quality: float = Field(
        ge=-1e9, le=1e9, allow_inf_nan=False, description="The crop's VAE quality score."
    )
    sealed_key: B64(2048)  # type: ignore[valid-type]
    """The record's AES key sealed with HPKE to the epoch key, base64."""
    nonce: B64(64)  # type: ignore[valid-type]
    """AES-GCM nonce (12 bytes), base64."""
    ciphertext: B64(12 * 1024 * 1024)  # type: ignore[valid-type]
    """The sealed crop (AES-256-GCM), base64; never an image."""


class IngestIn(Strict):
    records: list[SealedRecordIn] = Field(
        min_length=1, max_length=200, description="1..200 sealed records, one transaction."
    )


class IngestOut(Doc):
    stored: list[str] = Field(
        description="Ids received, safe for the camera to delete: stored now or before, or "
        "erased by retention before (listed in `erased` too). The same answer on every retry."
    )
    erased: list[str] = Field(
        default_factory=list,
        description="Ids the retention sweep had already erased: acknowledged, not stored again.",
    )


# --- warrants -------------------------------------------------------------------------------


class WarrantIn(Strict):
    case_ref: ShortText
    """The court's or police case reference."""
    legal_basis: LongText
    """The law and order the warrant rests on."""
    cameras: list[CameraId] = Field(min_length=1, max_length=100, description="Cameras in scope.")
    window_start: UtcTime
    """Scope: records whose best frame lies at or after this time..."""
    window_end: UtcTime
    """...and before this one."""
    not_before: UtcTime
    """The warrant can be used from this time."""
    not_after: UtcTime
    """The warrant can be used until this time."""
    max_records: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Most records it may open in all."
    )


class WarrantOut(Doc):
    """A warrant as issued, with its state now."""

    id: str
    """The warrant's id (UUID)."""
    case_ref: str
    """The case reference."""
    legal_basis: str
    """The law and order it rests on."""
    judge: str
    """The judge who issued it (the token's name)."""
    cameras: list[str]
    """Cameras in scope."""
    window_start: datetime
    """Scope window start (inclusive), UTC."""
    window_end: datetime
    """Scope window end (exclusive), UTC."""
    not_before: datetime
    """Valid from, UTC."""
    not_after: datetime
    """Valid until, UTC."""
    max_records: int | None
    """Most records it may open in all; null for no limit."""
    issued_at: datetime
    """When it was issued, UTC."""
    state: str
    """active, not yet valid, expired or revoked."""
    revoked_at: datetime | None
    """When it was revoked, if it was."""
    revoked_reason: str | None
    """Why it was revoked."""
    hold_until: datetime
    """Its records stay on legal hold until this time."""
    signature: str
    """The vault's Ed25519 signature over its canonical form, base64."""


class RevokeIn(Strict):
    reason: LongText
    """Why the warrant is revoked (kept in the audit trail)."""


class RecordMeta(Doc):
    """What an investigator may see before an opening: never an image."""

    id: str
    """The record's id."""
    camera_id: str
    """The camera that sealed it."""
    first_seen: datetime
    """When the person's track began, UTC."""
    last_seen: datetime
    """When the track ended, UTC."""
    best_time: datetime
    """When the sealed best frame was taken, UTC."""
    quality: float
    """The crop's quality score (higher is better)."""
    expires: datetime
    """When retention erases it, unless held."""
    legal_hold: bool
    """Held by a warrant: not erased while true."""
    epoch_id: str | None = None
    """The (camera, epoch) key it is sealed to."""


# --- opening requests -----------------------------------------------------------------------


class RequestIn(Strict):
    warrant_id: Uuid
    """The warrant the records are asked under."""
    record_ids: list[Uuid] = Field(
        min_length=1, max_length=1000, description="Records to open; all must be in scope."
    )
    reason: LongText
    """Why these records: shown to every trustee."""


class ApprovalOut(Doc):
    trustee: str
    """The trustee who approved (the token's name)."""
    share_index: int
    """Their share index (1..n)."""
    at: datetime
    """When, UTC."""


class RequestOut(Doc):
    id: str
    """The request's id."""
    warrant_id: str
    """The warrant it is made under."""
    requester: str
    """The investigator who asked."""
    record_ids: list[str]
    """The records asked for."""
    reason: str
    """Why, in the requester's words."""
    created: datetime
    """When it was made, UTC."""
    status: str
    """pending, released, closed or expired."""
    approvals: list[ApprovalOut]
    """Trustee approvals so far."""
    required: int
    """Approvals needed (k)."""
    digest: str = Field(description="What a trustee approves; send it back with the share.")
    released_at: datetime | None
    """When the crops were fetched, if they were."""
    released_count: int | None
    """How many crops went out."""
    held_until: datetime | None = None
    """Until when the released crops can be fetched again (an answer lost on its way), sealed
    to the fetch secret; null once receipt is confirmed, after it, or before a release."""


class RequestCreated(Doc):
    request: RequestOut = Field(description="The request as made.")
    fetch_secret: str = Field(description="Shown once; needed to fetch the crops.")


class ApprovalIn(Strict):
    """One trustee's approval: for each (camera, epoch) key the request needs, the trustee's
    share unsealed on their own machine and sealed again to the vault's release key and the
    request's key (escrow.sealing.seal_share_for_release), base64."""

    request_digest: Hex64
    """The request's digest the trustee reviewed."""
    shares: dict[EpochId, B64(4096)] = Field(  # type: ignore[valid-type]
        max_length=1000, description="Per (camera, epoch) key: the share sealed for release."
    )


class KeyShareOut(Doc):
    certificate: dict = Field(description="The epoch's signed certificate (public).")
    sealed_share: str | None = Field(description="This trustee's share, sealed to their key.")
    share_digest: str | None = Field(description="Published check value of that share.")
    records: int = Field(description="Records of the request sealed to this key.")


class ReviewOut(Doc):
    """What a trustee's client shows before approving, and what it needs to approve."""

    request: RequestOut = Field(description="The request.")
    warrant: WarrantOut = Field(description="Its warrant: case, legal basis, scope.")
    records: list[RecordMeta] = Field(description="The records asked for (metadata).")
    keys: list[KeyShareOut] = Field(description="Per (camera, epoch) key needed.")
    digest_fields: dict = Field(description="The fields the request digest is computed from.")
    release_public_key: str = Field(description="The vault's release key (shares sealed to).")
    authority_public_key: str = Field(description="The escrow authority's key, to pin.")
    trustee_index: int | None = Field(description="The caller's trustee index.")


class KeyringOut(Doc):
    format: str
    """The keyring file format."""
    camera_id: str | None
    """The camera it is for."""
    authority_public_key: str
    """The escrow authority's Ed25519 public key, base64."""
    authority_fingerprint: str
    """Its fingerprint, to compare with the one the camera was installed with."""
    epochs: list[dict]
    """Signed epoch certificates (public keys only)."""


class ReleaseIn(Strict):
    fetch_secret: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    """The secret shown once when the request was made."""


class ReleasedCrop(Doc):
    record_id: str
    """The record opened."""
    camera_id: str
    """Its camera."""
    best_time: datetime
    """When its frame was taken, UTC."""
    quality: float
    """Its quality score."""
    ciphertext_sha256: str
    """SHA-256 of the stored ciphertext (also in the audit entry)."""
    jpeg: str = Field(description="The crop, JPEG, base64.")
    clip: list[str] = Field(description="Frames sealed around the best one, JPEG, base64.")
    meta: dict
    """What the camera sealed beside the crop (e.g. its box)."""


class ReleaseOut(Doc):
    request_id: str
    """The request."""
    released: list[ReleasedCrop]
    """The crops opened."""
    withheld: dict[str, str]
    """Records not opened, and why."""


# --- audit, administration ------------------------------------------------------------------


class AuditEntryOut(Doc):
    id: int
    """Consecutive from 1."""
    at: datetime
    """When, UTC."""
    actor: str
    """'<role>:<name>', 'anonymous' or 'retention-sweeper'."""
    action: str
    """What, e.g. request.release, sweep.erase, access.denied."""
    detail: dict
    """The action's particulars."""
    prev_hash: str
    """The previous entry's hash (the chain)."""
    hash: str
    """SHA-256 over the previous hash and this entry."""


class VerdictOut(Doc):
    ok: bool
    """The whole chain verifies."""
    entries: int
    """Entries walked."""
    head: str
    """Hash of the last good entry: keep it to catch a cut tail later."""
    broken_at: int | None
    """First broken entry, if any."""
    reason: str
    """What broke."""


class CheckpointOut(Doc):
    """A signed tree head of the audit trail (see docs/api.md, "Checkpoints")."""

    format: str
    """'keyframe-escrow-checkpoint/1'."""
    log_id: str = Field(description="SHA-256 of `key`, hex.")
    size: int = Field(description="Entries 1..size are the tree's leaves.")
    root: str = Field(description="RFC 9162 Merkle tree hash, hex.")
    time: str = Field(description="When it was signed, exactly as signed.")
    key: str = Field(description="The checkpoint key's Ed25519 public key, base64.")
    signature: str = Field(description="Ed25519 over the body (format/log_id/size/root/time).")


class InclusionProofOut(Doc):
    entry: AuditEntryOut = Field(description="The entry proved.")
    leaf: str = Field(description="The leaf's bytes (UTF-8 JSON): its hash is SHA-256(0x00||leaf).")
    leaf_index: int = Field(description="0-based position of the leaf in the tree.")
    tree_size: int = Field(description="Entries in the tree the proof is for.")
    proof: list[str] = Field(description="RFC 9162 inclusion path, hex, leaf to root.")
    checkpoint: CheckpointOut = Field(description="A signed checkpoint of the tree.")


class ConsistencyProofOut(Doc):
    first: int = Field(description="Size of the earlier tree.")
    second: int = Field(description="Size of the later tree.")
    proof: list[str] = Field(description="RFC 9162 consistency proof, hex.")
    checkpoint: CheckpointOut = Field(description="A signed checkpoint of the second tree.")


class CameraIn(Strict):
    id: CameraId
    """The camera's id: what its token and its records are named for."""
    name: ShortText | None = None
    """A name people know it by (e.g. its place)."""


class CameraOut(Doc):
    id: str
    """The camera's id."""
    name: str | None
    """Its name, if given."""
    created: datetime
    """When it was registered (or first sent records), UTC."""


class TokenIn(Strict):
    """Through the API an admin makes camera tokens only (any other role is refused, 403):
    judge, trustee and auditor tokens are signed by the escrow authority at the command line,
    so an admin cannot make themselves one."""

    role: Literal["camera", "judge", "investigator", "trustee", "auditor", "admin"]
    """The token's one role (an admin makes camera tokens only)."""
    name: ShortText
    """Who or what holds it (a camera: its id)."""


class TokenOut(Doc):
    id: str
    """The token's row id (not the token)."""
    name: str
    """Who or what holds it."""
    role: str
    """Its role."""
    created: datetime
    """When it was made, UTC."""
    expires_at: datetime = Field(description="The token stops working at this time (UTC).")
    trustee_index: int | None = Field(description="A trustee's share index (1..n).")
    revoked_at: datetime | None = Field(description="When it was revoked, if it was.")
    last_used_at: datetime | None = Field(
        default=None, description="When the token last authenticated, to the minute."
    )


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once; only its SHA-256 is stored.")


# --- retention ------------------------------------------------------------------------------


class ErasedRecordOut(Doc):
    """One erased record, as the sweeper wrote it into the audit trail before the row went."""

    record: str
    """The record's id."""
    camera: str | None
    """Its camera (null for erasures written before the trail kept it)."""
    captured: datetime | None
    """When its frame was taken."""
    expires: datetime | None
    """When its retention ended."""
    erased: datetime
    """When the sweeper erased it."""
    epoch: str | None
    """The (camera, epoch) key it was sealed to."""
    rule: str | None
    """The retention that expired it and where it comes from, e.g. 'retention 3d (default)'."""
    key_destroyed: datetime | None
    """When its epoch key was destroyed (crypto-shredding); null while the key lives."""
    audit_entry: int
    """The sweep.erase entry that records it."""


class ShreddedOut(Doc):
    at: datetime
    """When the keys were destroyed."""
    audit_entry: int
    """The sweep.shred entry."""
    epochs: list[str]
    """The (camera, epoch) keys destroyed."""


class IdleSweepsOut(Doc):
    day: str
    """The UTC day (YYYY-MM-DD)."""
    runs: int
    """Sweeps that day that found nothing to do."""
    last: datetime
    """The last of them."""
    audit_entry: int | None
    """The day's sweep.idle entry; null until the first sweep after the day."""


class HeldOut(Doc):
    camera: str
    """The camera."""
    records: int
    """Its records past expiry kept by a legal hold."""
    oldest_expiry: datetime
    """The earliest expiry among them."""
    reason: str
    """Why they are kept."""


class WarrantHoldOut(Doc):
    warrant: str
    """The warrant holding records."""
    case_ref: str
    """Its case."""
    judge: str
    """Who issued it."""
    state: str
    """Its state now."""
    hold_until: datetime
    """Its records are held until this time."""
    records_in_scope: int
    """Records it holds now."""


class RetentionReportOut(Doc):
    """For a data-protection officer: whose data was erased, when and why; what is kept."""

    erased_records: int
    """Records erased in all."""
    erased: list[ErasedRecordOut]
    """Each erased record."""
    destroyed_epoch_keys: list[ShreddedOut]
    """Epoch keys destroyed, per sweep."""
    idle_sweeps: list[IdleSweepsOut]
    """Sweeps that found nothing to do, per day."""
    held_past_expiry: list[HeldOut]
    """Records past expiry kept by a hold, per camera."""
    warrant_holds: list[WarrantHoldOut]
    """Warrants holding records now."""
