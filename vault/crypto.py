"""Envelope sealing of face crops: `seal()` on the camera, `open()` in the vault.

A fresh 256-bit data key per record encrypts the crop and its metadata with AES-256-GCM; the
data key is sealed with HPKE (RFC 9180) to the public key of the record's key epoch. Both
layers are bound to the record by the same associated data (record id, camera, epoch,
capture times, format version): moving a ciphertext or a sealed key to another record,
flipping a bit, or opening with another epoch's key raises `IntegrityError`, never returns
garbled bytes. Only pyca/cryptography primitives; nothing hand-made.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 1
SUITES = {
    # RFC 9180 DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM: the default.
    "x25519": hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
    # Hybrid post-quantum ML-KEM-768 + X25519 (X-Wing), for evidence kept for years.
    "mlkem768-x25519": hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
}


class IntegrityError(Exception):
    """The sealed record was altered, moved to another record, or the key is not its epoch's."""


@dataclass(frozen=True)
class RecordHeader:
    """What the associated data binds: public, indexed, and never secret."""

    record_id: str
    camera_id: str
    epoch_id: str
    first_seen: datetime
    last_seen: datetime
    best_time: datetime
    version: int = FORMAT_VERSION

    def aad(self) -> bytes:
        def ts(d: datetime) -> str:
            if d.tzinfo is None:
                raise ValueError("capture times must be timezone-aware (UTC)")
            return d.astimezone(UTC).isoformat(timespec="microseconds")

        body = {
            "v": self.version,
            "record": self.record_id,
            "camera": self.camera_id,
            "epoch": self.epoch_id,
            "first_seen": ts(self.first_seen),
            "last_seen": ts(self.last_seen),
            "best_time": ts(self.best_time),
        }
        return (
            b"keyframe-escrow/record\x00"
            + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        )


@dataclass(frozen=True)
class SealedRecord:
    header: RecordHeader
    suite: str
    sealed_key: bytes  # HPKE encapsulation || sealed data key
    nonce: bytes  # 96-bit AES-GCM nonce
    ciphertext: bytes  # AES-256-GCM(meta || crop), tag included


def _pack(crop: bytes, meta: dict, attachments: list[bytes]) -> bytes:
    """meta JSON, the crop, then any attachments (e.g. the frames of a short clip), each
    length-prefixed."""
    m = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    parts = [m, crop, *attachments]
    return struct.pack(">I", len(parts)) + b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _unpack(payload: bytes) -> tuple[bytes, dict, list[bytes]]:
    (count,) = struct.unpack_from(">I", payload, 0)
    parts, off = [], 4
    for _ in range(count):
        (n,) = struct.unpack_from(">I", payload, off)
        parts.append(payload[off + 4 : off + 4 + n])
        off += 4 + n
    return parts[1], json.loads(parts[0]), parts[2:]


def seal(
    crop: bytes,
    meta: dict,
    header: RecordHeader,
    epoch_public_key,
    suite: str,
    attachments: list[bytes] | None = None,
) -> SealedRecord:
    """Encrypt one crop (JPEG bytes), its metadata and optional attachments (the JPEG frames
    of a short clip) for the epoch's private key holder.

    The caller (vault.keys.SealingKey) has already verified the epoch key's signature and
    validity; this function only does the cryptography.
    """
    if suite not in SUITES:
        raise ValueError(f"unknown HPKE suite: {suite}")
    aad = header.aad()
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    ciphertext = AESGCM(data_key).encrypt(nonce, _pack(crop, meta, attachments or []), aad)
    sealed_key = SUITES[suite].encrypt(data_key, epoch_public_key, info=aad)
    return SealedRecord(header, suite, sealed_key, nonce, ciphertext)


def open(sealed: SealedRecord, epoch_private_key) -> tuple[bytes, dict]:  # noqa: A001
    """Decrypt a sealed record -> (crop bytes, metadata); IntegrityError on any mismatch."""
    crop, meta, _ = open_all(sealed, epoch_private_key)
    return crop, meta


def open_all(sealed: SealedRecord, epoch_private_key) -> tuple[bytes, dict, list[bytes]]:
    """Like open(), also returning the attachments (clip frames) sealed with the crop."""
    aad = sealed.header.aad()
    try:
        data_key = SUITES[sealed.suite].decrypt(sealed.sealed_key, epoch_private_key, info=aad)
        payload = AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, aad)
    except (InvalidTag, ValueError, TypeError, KeyError) as exc:  # any failure: not this key
        raise IntegrityError(
            f"record {sealed.header.record_id}: integrity check failed (altered, moved to "
            "another record, or not this epoch's key)"
        ) from exc
    return _unpack(payload)


# --- a trustee's share on its way to a release ---------------------------------------------

SHARE_SUITE = SUITES["x25519"]


def seal_share_for_release(share: bytes, release_public, request_public, aad: bytes) -> bytes:
    """On the trustee's machine: seal an unwrapped epoch-key share first to the vault's
    release key, then to the request's own key. Opening needs both private halves: the
    release key (in the vault's key store, never in the database) and the fetch secret
    (only the requester has it). A database copy with either one alone opens nothing."""
    inner = SHARE_SUITE.encrypt(share, release_public, info=aad + b"\x00release")
    return SHARE_SUITE.encrypt(inner, request_public, info=aad + b"\x00request")


def open_share_for_release(blob: bytes, request_private, release_private, aad: bytes) -> bytes:
    """In the vault at release, in memory only; IntegrityError if either layer does not
    open or the share was made for another request, trustee or epoch."""
    try:
        inner = SHARE_SUITE.decrypt(blob, request_private, info=aad + b"\x00request")
        return SHARE_SUITE.decrypt(inner, release_private, info=aad + b"\x00release")
    except Exception as exc:  # any HPKE failure: not sealed for this request and vault
        raise IntegrityError("a share was not sealed for this request and vault") from exc
