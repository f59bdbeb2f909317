"""The camera's half of the keys: signed epoch certificates, the keyring, kept fresh.

A camera is configured with its authority's key (pinned by fingerprint, or taken from a
keyring file the operator installed) and fetches its own signed epoch certificates from the
vault with its token (GET /keyring). It refreshes before they run out, and every certificate
is checked against the pinned authority key before a crop is sealed to it: a vault, or
anyone in between, can withhold keys (the camera then stops, exit 4) but cannot make the
camera seal to a key the authority did not sign.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from escrow.canonical import as_utc, canonical_json, parse_time
from escrow.sealing import (
    KeyRefused,
    KeyStoreError,
    RecordHeader,
    SealedRecord,
    fingerprint,
    load_public,
    seal,
    unb64,
)


def epoch_name(camera_id: str, start: datetime) -> str:
    return f"{camera_id}@{start.astimezone(UTC):%Y%m%dT%H%MZ}"


@dataclass(frozen=True)
class EpochCertificate:
    epoch_id: str
    suite: str
    not_before: str  # ISO 8601 UTC
    not_after: str
    public_key: str  # base64
    signature: str = ""  # base64 Ed25519 over body()
    camera_id: str = ""  # "" only for global epochs made before per-camera keys (legacy)

    def body(self) -> bytes:
        d = {k: v for k, v in asdict(self).items() if k != "signature"}
        if not d["camera_id"]:  # a legacy certificate was signed without the field
            del d["camera_id"]
        return b"keyframe-escrow/epoch\x00" + canonical_json(d, spaced=True)

    def window(self) -> tuple[datetime, datetime]:
        return parse_time(self.not_before), parse_time(self.not_after)

    @property
    def key_sha256(self) -> str:
        return fingerprint(unb64(self.public_key))

    def verify(self, authority: ed25519.Ed25519PublicKey) -> None:
        try:
            authority.verify(unb64(self.signature), self.body())
        except (InvalidSignature, ValueError) as exc:
            raise KeyRefused(
                f"epoch key {self.epoch_id} is not signed by the escrow authority: refusing "
                "to use it"
            ) from exc

    @classmethod
    def from_dict(cls, d: dict) -> EpochCertificate:
        """Parse and check the shape (ValueError): every field a string, the window two
        aware times in order, the public key base64. The signature is checked by verify."""
        if not isinstance(d, dict):
            raise ValueError("an epoch certificate is a JSON object")
        cert = cls(**{k: d[k] for k in d if k in cls.__dataclass_fields__})
        if not all(isinstance(v, str) for v in asdict(cert).values()):
            raise ValueError(f"epoch certificate {cert.epoch_id!r}: every field is a string")
        try:
            start, end = cert.window()
            unb64(cert.public_key)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"epoch certificate {cert.epoch_id!r}: {exc}") from exc
        if start.tzinfo is None or end.tzinfo is None or not start < end:
            raise ValueError(f"epoch certificate {cert.epoch_id!r}: not a window of UTC times")
        return cert


class SealingKey:
    """Camera side: a verified epoch public key. Can seal; holds nothing that can open."""

    def __init__(self, cert: EpochCertificate, authority: ed25519.Ed25519PublicKey):
        cert.verify(authority)
        self.cert = cert
        self._public = load_public(cert.suite, unb64(cert.public_key))

    def covers(self, t: datetime) -> bool:
        start, end = self.cert.window()
        return start <= t < end

    def seal(
        self,
        crop: bytes,
        meta: dict,
        header: RecordHeader,
        attachments: list[bytes] | None = None,
    ) -> SealedRecord:
        if header.epoch_id != self.cert.epoch_id:
            raise KeyRefused(f"record is for epoch {header.epoch_id}, key is {self.cert.epoch_id}")
        if self.cert.camera_id and header.camera_id != self.cert.camera_id:
            raise KeyRefused(
                f"epoch key {self.cert.epoch_id} belongs to camera {self.cert.camera_id}"
            )
        if not self.covers(header.best_time):
            raise KeyRefused(
                f"epoch key {self.cert.epoch_id} is not valid at "
                f"{as_utc(header.best_time).isoformat()} "
                f"(valid {self.cert.not_before} .. {self.cert.not_after}): refusing to seal"
            )
        return seal(crop, meta, header, self._public, self.cert.suite, attachments)


class CameraKeyring:
    """The public material a camera is configured with: the authority's key and its own
    signed epoch certificates (another camera's are never used)."""

    def __init__(
        self,
        authority_public: bytes,
        certs: list[EpochCertificate],
        camera_id: str | None = None,
    ):
        self.authority_raw = authority_public
        self.authority = ed25519.Ed25519PublicKey.from_public_bytes(authority_public)
        self.camera_id = camera_id
        self.certs = [c for c in certs if not camera_id or c.camera_id in ("", camera_id)]

    @property
    def authority_fingerprint(self) -> str:
        return fingerprint(self.authority_raw)

    @classmethod
    def from_dict(cls, d: dict) -> CameraKeyring:
        try:
            return cls(
                unb64(d["authority_public_key"]),
                [EpochCertificate.from_dict(c) for c in d["epochs"]],
                d.get("camera_id"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"not a camera keyring ({exc})") from exc

    @classmethod
    def load(cls, path: Path) -> CameraKeyring:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"not a camera keyring: {path} ({exc})") from exc

    def valid_until(self, t: datetime, camera_id: str | None = None) -> datetime | None:
        """End of the unbroken run of this camera's epochs from t (None: none covers t)."""
        spans = sorted(
            c.window() for c in self.certs if not camera_id or c.camera_id in ("", camera_id)
        )
        end = None
        for a, b in spans:
            if a <= (end or t) < b:
                end = b
        return end

    def key_for(self, t: datetime, camera_id: str | None = None) -> SealingKey:
        """The verified key of this camera whose epoch covers t; KeyRefused when none."""
        for cert in self.certs:
            if camera_id and cert.camera_id not in ("", camera_id):
                continue
            start, end = cert.window()
            if start <= t < end:
                return SealingKey(cert, self.authority)
        raise KeyRefused(
            f"no signed epoch key covers {as_utc(t).isoformat()}: the camera is out of keys and "
            "stops capturing (refresh its keyring from the vault, or have the authority run "
            "`escrow keys issue`)"
        )


class FreshKeyring:
    def __init__(
        self,
        ring: CameraKeyring,
        camera_id: str,
        fetch: Callable[[], dict] | None = None,
        refresh_before: timedelta = timedelta(days=7),
        log: Callable[[str], None] = lambda m: None,
        retry_after: float = 300.0,
    ):
        self.ring, self.camera_id, self.fetch = ring, camera_id, fetch
        self.refresh_before, self.log, self.retry_after = refresh_before, log, retry_after
        self.pinned = ring.authority_fingerprint
        self._next_try = 0.0  # time.monotonic() before which no refresh is tried again

    @property
    def certs(self):
        return self.ring.certs

    def valid_until(self, t: datetime) -> datetime | None:
        return self.ring.valid_until(t, self.camera_id)

    def refresh(self) -> None:
        """Fetch this camera's certificates; keep the old ones if the vault is away or
        answers with another authority's key."""
        if self.fetch is None or time.monotonic() < self._next_try:
            return
        try:
            new = CameraKeyring.from_dict(self.fetch())
        except (KeyStoreError, Exception) as exc:  # noqa: BLE001 - the vault may be away
            # not on every record while the vault is away: a dropped network blocks each try
            self._next_try = time.monotonic() + self.retry_after
            self.log(f"keyring refresh failed: {exc} (next try in {self.retry_after:.0f} s)")
            return
        if new.authority_fingerprint != self.pinned:
            self._next_try = time.monotonic() + self.retry_after
            self.log(
                f"keyring refresh refused: authority {new.authority_fingerprint[:16]} is not "
                f"the pinned {self.pinned[:16]}"
            )
            return
        known = {c.epoch_id for c in self.ring.certs}
        self.ring = CameraKeyring(
            self.ring.authority_raw,
            self.ring.certs + [c for c in new.certs if c.epoch_id not in known],
            self.camera_id,
        )

    def key_for(self, t: datetime) -> SealingKey:
        until = self.valid_until(t)
        if until is None or until - t < self.refresh_before:
            self.refresh()
        return self.ring.key_for(t, self.camera_id)
