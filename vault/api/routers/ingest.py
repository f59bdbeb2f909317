"""Cameras post sealed records here. The server never accepts a plaintext image: the body
must be JSON of sealed records, every field is checked against the epoch it claims, and a
ciphertext that starts like an image file is refused. A record the retention sweep already
erased (it has a tombstone) is acknowledged and not stored again."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from escrow import sealing
from escrow.canonical import as_utc
from escrow.sealing import KeyStoreError
from vault import audit, store, warrants
from vault.api.deps import Caller, CameraCaller, get_ctx
from vault.api.errors import AUTHENTICATED, WITH_BODY, Refused, responses
from vault.api.schemas import IngestIn, IngestOut, KeyringOut, SealedRecordIn
from vault.models import ErasedRecord, KeyEpoch, SealedRecordRow

router = APIRouter(tags=["ingest"], responses=responses(*AUTHENTICATED))

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")


def looks_like_an_image(data: bytes) -> bool:
    """A JPEG, PNG, GIF, TIFF, WebP or BMP file, by signatures long enough that a sealed
    record's ciphertext (uniformly random bytes) matches one by chance at most once in 2^24
    records: the 2-byte "BM" alone refused one record in 65,536 for good."""
    if data.startswith(IMAGE_MAGIC):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    # BMP: "BM", the file's size, then two reserved zero words
    return (
        data[:2] == b"BM"
        and int.from_bytes(data[2:6], "little") == len(data)
        and data[6:10] == bytes(4)
    )


def _check(rec: SealedRecordIn, epoch: KeyEpoch | None, max_ciphertext: int) -> str | None:
    """Why this record cannot be stored, or None."""
    if epoch is None:
        return f"unknown key epoch {rec.epoch_id}"
    if epoch.camera_id is not None and epoch.camera_id != rec.camera_id:
        return f"key epoch {rec.epoch_id} belongs to camera {epoch.camera_id}"
    if hashlib.sha256(epoch.public_key).hexdigest() != rec.epoch_key_sha256:
        return (
            f"sealed to another key than this vault's epoch {rec.epoch_id} (another "
            "authority's keyring?): it could never be opened here"
        )
    if epoch.destroyed_at is not None:
        return f"key epoch {rec.epoch_id} was destroyed"
    if rec.suite != epoch.suite:
        return f"suite {rec.suite} does not match epoch {rec.epoch_id} ({epoch.suite})"
    start, end = as_utc(epoch.not_before), as_utc(epoch.not_after)
    if not start <= rec.best_time < end:
        return f"best_time lies outside key epoch {rec.epoch_id}"
    if not rec.first_seen <= rec.best_time <= rec.last_seen:
        return "best_time must lie between first_seen and last_seen"
    if len(rec.nonce) != 12:
        return "nonce must be 12 bytes"
    if len(rec.sealed_key) != sealing.SEALED_KEY_BYTES[rec.suite]:
        return f"sealed_key must be {sealing.SEALED_KEY_BYTES[rec.suite]} bytes for {rec.suite}"
    if not 17 <= len(rec.ciphertext) <= max_ciphertext:
        return f"ciphertext must be 17..{max_ciphertext} bytes"
    if looks_like_an_image(rec.ciphertext):
        return "ciphertext looks like a plaintext image: only sealed records are accepted"
    return None


def _known_epochs(s, ctx, ids: set[str]) -> dict[str, KeyEpoch]:
    epochs = {e.id: e for e in s.scalars(select(KeyEpoch).where(KeyEpoch.id.in_(ids)))}
    new = []
    for epoch_id in ids - set(epochs):  # issued since the server started: read just those
        try:
            new.append(ctx.keystore.certificate(epoch_id))
        except KeyStoreError:
            continue  # unknown: _check refuses the record
    if new:
        store.register_epochs(s, new)
        s.flush()
        epochs = {e.id: e for e in s.scalars(select(KeyEpoch).where(KeyEpoch.id.in_(ids)))}
    return epochs


@router.get("/keyring", response_model=KeyringOut)
def keyring(request: Request, caller: CameraCaller):
    """This camera's signed epoch certificates from now on (public keys only): a camera
    refreshes its keyring here before its keys run out, and checks every certificate
    against the authority key it was configured with."""
    ctx = get_ctx(request)
    return KeyringOut(**ctx.keystore.camera_keyring(caller.name, now=ctx.clock()))


@router.post("/ingest", response_model=IngestOut, responses=responses(*WITH_BODY, 409))
def ingest(body: IngestIn, request: Request, caller: CameraCaller):
    """Store a batch of sealed records (one transaction). Idempotent by record id."""
    ctx = get_ctx(request)
    now = ctx.clock()
    foreign = {r.camera_id for r in body.records} - {caller.name}
    if foreign:
        raise Refused(f"camera token {caller.name!r} cannot ingest records of {sorted(foreign)}")
    if len(body.records) > ctx.max_records_per_ingest:
        raise Refused(f"at most {ctx.max_records_per_ingest} records per batch", 413)
    ids = [r.record_id for r in body.records]
    if len(set(ids)) != len(ids):
        raise Refused("the same record id appears twice in the batch", 422)
    for attempt in range(3):
        try:
            erased = _store(ctx, body, caller, ids, now)
            break
        except IntegrityError:  # a concurrent ingest of the same record or camera won
            if attempt == 2:
                raise Refused("concurrent ingests of the same records; retry", 409) from None
    # erased ones are acknowledged too: the camera deletes its copy and stops re-sending
    return IngestOut(stored=ids, erased=erased)


def _erased_before(s, camera: str, ids: list[str]) -> dict[str, str]:
    """Of these record ids, those the retention sweep erased (their tombstones), with when."""
    q = select(ErasedRecord.id, ErasedRecord.erased_at).where(
        ErasedRecord.camera_id == camera, ErasedRecord.id.in_(ids)
    )
    return {rid: as_utc(at).isoformat() for rid, at in s.execute(q)}


def _store(ctx, body: IngestIn, caller: Caller, ids: list[str], now) -> list[str]:
    """Store the batch's new records; return the ids already erased by retention, which are
    not stored again (an erasure sticks, also when the camera's acknowledgement was lost and
    its outbox re-sends): neither checked against their epoch (its key may be shredded by
    now, and a refusal would keep them in the outbox for good) nor kept, only audited."""
    with ctx.factory.begin() as s:
        audit.lock(s)  # one ingest at a time on PostgreSQL: no duplicate-key races
        # under the trail's lock, as the sweep's erasure: a tombstone is written or not yet
        gone = _erased_before(s, caller.name, ids)
        records = [r for r in body.records if r.record_id not in gone]
        ids = [r.record_id for r in records]
        epochs = _known_epochs(s, ctx, {r.epoch_id for r in records})
        for rec in records:
            why = _check(rec, epochs.get(rec.epoch_id), ctx.max_ciphertext_bytes)
            if why:
                raise Refused(f"record {rec.record_id}: {why}", 422)
        have = dict(
            s.execute(
                select(SealedRecordRow.id, SealedRecordRow.ciphertext_sha256).where(
                    SealedRecordRow.camera_id == caller.name, SealedRecordRow.id.in_(ids)
                )
            ).all()
        )
        new = []
        for rec in records:
            digest = hashlib.sha256(rec.ciphertext).hexdigest()
            if rec.record_id in have:
                if have[rec.record_id] != digest:
                    raise Refused(store.other_content(rec.record_id), 409)
                continue
            sealed = sealing.record_from_fields(dict(rec))
            expires = store.expires_at(
                rec.best_time, ctx.policy.retention.for_camera(rec.camera_id)
            )
            new.append(store.row_from_sealed(sealed, rec.track_id, rec.quality, now, expires))
        if gone:
            detail = {"camera": caller.name, "records": sorted(gone), "erased": gone}
            audit.append(s, caller.actor, "ingest.erased_again", detail, now)
        if not records:
            return sorted(gone)
        store.ensure_camera(s, caller.name, now)
        s.add_all(new)
        s.flush()
        held, _ = warrants.refresh_holds(
            s, now, ctx.policy.legal_hold.after_warrant, ids=[r.id for r in new]
        )
        audit.append(
            s,
            caller.actor,
            "ingest",
            {"new": [r.id for r in new], "repeated": len(ids) - len(new), "held": held},
            now,
        )
        return sorted(gone)
