"""Sealing, the one place HPKE and AES-GCM are composed: records on the camera, shares on
their way to a release, passphrase-sealed key files. Camera, trustee and vault import it.

A record: a fresh 256-bit data key encrypts the crop and its metadata with AES-256-GCM; the
data key is sealed with HPKE (RFC 9180) to the public key of the record's (camera, epoch).
Both layers are bound to the record by the same associated data (record id, camera, epoch,
capture times, format version): moving a ciphertext or a sealed key to another record,
flipping a bit, or opening with another epoch's key raises `IntegrityError`, never returns
garbled bytes. The wire format a camera posts is written and read here too (`to_wire`,
`record_from_fields`). Only pyca/cryptography primitives; nothing hand-made.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from escrow.canonical import canonical_json, iso_utc

FORMAT_VERSION = 1
SUITES = {
    # RFC 9180 DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM: the default.
    "x25519": hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
    # Hybrid post-quantum ML-KEM-768 + X25519 (X-Wing), for evidence kept for years.
    "mlkem768-x25519": hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
}
# HPKE encapsulated key + AES-256 data key + GCM tag, per suite: a record's sealed_key size.
SEALED_KEY_BYTES = {"x25519": 32 + 32 + 16, "mlkem768-x25519": 1120 + 32 + 16}


class IntegrityError(Exception):
    """The sealed record was altered, moved to another record, or the key is not its epoch's."""


class KeyRefused(Exception):
    """The camera will not seal: no valid, signed epoch key for this moment."""


class KeyStoreError(Exception):
    """The key store is missing or incomplete, or a key file or passphrase is wrong."""


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def unb64(s: str) -> bytes:
    return base64.b64decode(s)


def fingerprint(public_raw: bytes) -> str:
    """What people compare by eye: SHA-256 of a public key, hex."""
    return hashlib.sha256(public_raw).hexdigest()


# --- key pairs, per suite -----------------------------------------------------------------


def generate_keypair(suite: str) -> tuple[bytes, bytes]:
    """-> (private bytes, public bytes) in this project's raw encoding for the suite."""
    if suite == "x25519":
        sk = x25519.X25519PrivateKey.generate()
        return sk.private_bytes_raw(), sk.public_key().public_bytes_raw()
    if suite == "mlkem768-x25519":
        m, x = mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate()
        priv = m.private_bytes_raw() + x.private_bytes_raw()  # 64-byte seed || 32
        pub = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
        return priv, pub
    raise ValueError(f"unknown suite: {suite}")


def load_public(suite: str, raw: bytes):
    if suite == "x25519":
        return x25519.X25519PublicKey.from_public_bytes(raw)
    if suite == "mlkem768-x25519":
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(raw[:-32]),
            x25519.X25519PublicKey.from_public_bytes(raw[-32:]),
        )
    raise ValueError(f"unknown suite: {suite}")


def load_private(suite: str, raw: bytes):
    if suite == "x25519":
        return x25519.X25519PrivateKey.from_private_bytes(raw)
    if suite == "mlkem768-x25519":
        return hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:64]),
            x25519.X25519PrivateKey.from_private_bytes(raw[64:]),
        )
    raise ValueError(f"unknown suite: {suite}")


def public_of(suite: str, private_raw: bytes) -> bytes:
    """The public key of a private key in raw encoding: checks a rebuilt key is the one."""
    if suite == "x25519":
        return (
            x25519.X25519PrivateKey.from_private_bytes(private_raw).public_key().public_bytes_raw()
        )
    if suite == "mlkem768-x25519":
        m = mlkem.MLKEM768PrivateKey.from_seed_bytes(private_raw[:64])
        x = x25519.X25519PrivateKey.from_private_bytes(private_raw[64:])
        return m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
    raise ValueError(f"unknown suite: {suite}")


# --- passphrase-sealed secrets (trustee keys, the authority's signing key) ----------------


def _passphrase_key(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase.encode())


def seal_with_passphrase(secret: bytes, passphrase: str, purpose: str) -> dict:
    salt, nonce = os.urandom(16), os.urandom(12)
    ct = AESGCM(_passphrase_key(passphrase, salt)).encrypt(nonce, secret, purpose.encode())
    return {"kdf": "scrypt-n15-r8-p1", "salt": b64(salt), "nonce": b64(nonce), "sealed": b64(ct)}


def open_with_passphrase(box: dict, passphrase: str, purpose: str) -> bytes:
    try:
        key = _passphrase_key(passphrase, unb64(box["salt"]))
        return AESGCM(key).decrypt(unb64(box["nonce"]), unb64(box["sealed"]), purpose.encode())
    except (InvalidTag, KeyError, ValueError) as exc:
        raise KeyStoreError(f"wrong passphrase for the {purpose}") from exc


# --- sealed records -------------------------------------------------------------------------


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
        for d in (self.first_seen, self.last_seen, self.best_time):
            if d.tzinfo is None:
                raise ValueError("capture times must be timezone-aware (UTC)")
        body = {
            "v": self.version,
            "record": self.record_id,
            "camera": self.camera_id,
            "epoch": self.epoch_id,
            "first_seen": iso_utc(self.first_seen),
            "last_seen": iso_utc(self.last_seen),
            "best_time": iso_utc(self.best_time),
        }
        return b"keyframe-escrow/record\x00" + canonical_json(body)


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
    parts = [canonical_json(meta), crop, *attachments]
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

    The caller (escrow.keyring.SealingKey) has already verified the epoch key's signature and
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


# --- the wire: what a camera posts to /ingest -------------------------------------------------


def to_wire(sealed: SealedRecord, track_id: int, quality: float, epoch_key_sha256: str) -> dict:
    """The JSON a camera posts. `epoch_key_sha256` names the public key it sealed to, so the
    vault refuses a record sealed to another authority's key that carries a known name."""
    h = sealed.header
    return {
        "record_id": h.record_id,
        "camera_id": h.camera_id,
        "epoch_id": h.epoch_id,
        "epoch_key_sha256": epoch_key_sha256,
        "first_seen": h.first_seen.isoformat(),
        "last_seen": h.last_seen.isoformat(),
        "best_time": h.best_time.isoformat(),
        "version": h.version,
        "suite": sealed.suite,
        "track_id": track_id,
        "quality": quality,
        "sealed_key": b64(sealed.sealed_key),
        "nonce": b64(sealed.nonce),
        "ciphertext": b64(sealed.ciphertext),
    }


def record_from_fields(f: Mapping) -> SealedRecord:
    """The wire's fields, already decoded (bytes and aware datetimes, as the vault's schema
    validates them), as the sealed record they describe."""
    header = RecordHeader(
        f["record_id"],
        f["camera_id"],
        f["epoch_id"],
        f["first_seen"],
        f["last_seen"],
        f["best_time"],
        f["version"],
    )
    return SealedRecord(header, f["suite"], f["sealed_key"], f["nonce"], f["ciphertext"])


# --- epoch-key shares: to a trustee at issue, from a trustee to a release ---------------------


def seal_share_to_trustee(share: bytes, suite: str, trustee_public, aad: bytes) -> bytes:
    """At issue: one Shamir share of an epoch key, readable only with trustee i's key."""
    return SUITES[suite].encrypt(share, trustee_public, info=aad)


def unseal_share(trustee_private, suite: str, sealed: bytes, aad: bytes) -> bytes:
    """On the trustee's machine: their share of one (camera, epoch) key."""
    try:
        return SUITES[suite].decrypt(sealed, trustee_private, info=aad)
    except Exception as exc:  # any HPKE failure: not this trustee's share of this epoch
        raise KeyStoreError("this sealed share is not yours for this epoch") from exc


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


# --- a release's answer, held for the requester alone ------------------------------------


def seal_to_requester(payload: bytes, request_public_raw: bytes, aad: bytes) -> bytes:
    """In the vault at release: the answer (the opened crops) sealed to the request's own
    public key, whose private half is the fetch secret only the requester holds. Stored in
    the release's own transaction, so a release whose answer was lost on the way can be
    delivered again without opening anything again; the vault, its admin and a database copy
    cannot read it."""
    public = x25519.X25519PublicKey.from_public_bytes(request_public_raw)
    return SHARE_SUITE.encrypt(payload, public, info=aad + b"\x00held-release")


def open_as_requester(blob: bytes, request_private, aad: bytes) -> bytes:
    """With the fetch secret: the held answer; IntegrityError for another request's."""
    try:
        return SHARE_SUITE.decrypt(blob, request_private, info=aad + b"\x00held-release")
    except Exception as exc:  # any HPKE failure: not held for this request and secret
        raise IntegrityError("the held release was not sealed for this request") from exc
