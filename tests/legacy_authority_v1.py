# The escrow authority exactly as it shipped before per-camera custody (commit f8ab3dd): used
# only by the upgrade test, to make a vault with the old code and migrate it.
# ruff: noqa
"""The escrow authority's keys: signing key, master key, signed epoch keys, Shamir shares.

Key store layout (a directory, kept apart from the record database on purpose):

    authority.json            public: signing public key, suite, k-of-n, mode, master check
    signing.key.enc           Ed25519 signing key, AES-256-GCM under the master key
    master.key                DEVELOPMENT MODE ONLY: the master key in a 0600 file
    epochs/<id>.cert.json     public: the epoch's public key, validity, authority signature
    epochs/<id>.key.enc       the epoch's private key, AES-256-GCM under the master key

Crypto-shredding deletes `epochs/<id>.key.enc`. Because no private key material ever enters
the record database, a backup of that database taken before the shred holds only
ciphertexts whose key no longer exists anywhere (provided the key store itself is not
backed up beyond the retention period; see docs/keys.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from escrow import sealing


class KeyRefused(Exception):
    """The camera will not seal: no valid, signed epoch key for this moment."""


class KeyStoreError(Exception):
    """The key store is missing, incomplete, or the master key/shares are wrong."""


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)


def _ts(d: datetime) -> str:
    return d.astimezone(UTC).isoformat()


# --- epoch key pairs, per suite -------------------------------------------------------


def generate_epoch_keypair(suite: str) -> tuple[bytes, bytes]:
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


# --- signed epoch certificates: what a camera holds -------------------------------------


@dataclass(frozen=True)
class EpochCertificate:
    epoch_id: str
    suite: str
    not_before: str  # ISO 8601 UTC
    not_after: str
    public_key: str  # base64
    signature: str = ""  # base64 Ed25519 over body()

    def body(self) -> bytes:
        d = {k: v for k, v in asdict(self).items() if k != "signature"}
        return b"keyframe-escrow/epoch\x00" + json.dumps(d, sort_keys=True).encode()

    def window(self) -> tuple[datetime, datetime]:
        return datetime.fromisoformat(self.not_before), datetime.fromisoformat(self.not_after)


class SealingKey:
    """Camera side: a verified epoch public key. Can seal; holds nothing that can open."""

    def __init__(self, cert: EpochCertificate, authority: ed25519.Ed25519PublicKey):
        try:
            authority.verify(_unb64(cert.signature), cert.body())
        except (InvalidSignature, ValueError) as exc:
            raise KeyRefused(
                f"epoch key {cert.epoch_id} is not signed by the escrow authority: refusing "
                "to seal with it"
            ) from exc
        self.cert = cert
        self._public = load_public(cert.suite, _unb64(cert.public_key))

    def covers(self, t: datetime) -> bool:
        start, end = self.cert.window()
        return start <= t < end

    def seal(
        self,
        crop: bytes,
        meta: dict,
        header: sealing.RecordHeader,
        attachments: list[bytes] | None = None,
    ) -> sealing.SealedRecord:
        if header.epoch_id != self.cert.epoch_id:
            raise KeyRefused(f"record is for epoch {header.epoch_id}, key is {self.cert.epoch_id}")
        if not self.covers(header.best_time):
            raise KeyRefused(
                f"epoch key {self.cert.epoch_id} is not valid at {_ts(header.best_time)} "
                f"(valid {self.cert.not_before} .. {self.cert.not_after}): refusing to seal"
            )
        return sealing.seal(crop, meta, header, self._public, self.cert.suite, attachments)


class CameraKeyring:
    """The public material a camera is configured with: authority key + epoch certificates."""

    def __init__(self, authority_public: bytes, certs: list[EpochCertificate]):
        self.authority = ed25519.Ed25519PublicKey.from_public_bytes(authority_public)
        self.certs = certs

    @classmethod
    def load(cls, path: Path) -> CameraKeyring:
        try:
            d = json.loads(Path(path).read_text())
            return cls(
                _unb64(d["authority_public_key"]), [EpochCertificate(**c) for c in d["epochs"]]
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"not a camera keyring: {path} ({exc})") from exc

    def key_for(self, t: datetime) -> SealingKey:
        """The verified key whose epoch covers t; KeyRefused when there is none."""
        for cert in self.certs:
            start, end = cert.window()
            if start <= t < end:
                return SealingKey(cert, self.authority)
        raise KeyRefused(
            f"no signed epoch key covers {_ts(t)}: the camera is out of keys and stops "
            "capturing (run `escrow keys export-camera` after adding epochs)"
        )


# --- Shamir k-of-n over the 32-byte master key -------------------------------------------


def split_master(master: bytes, k: int, n: int) -> list[str]:
    """k-of-n shares of a 32-byte key with pycryptodome's Shamir (16-byte secrets: the key
    is split as two halves, each share carries both halves for one trustee index)."""
    from Crypto.Protocol.SecretSharing import Shamir

    if len(master) != 32 or not 1 <= k <= n:
        raise ValueError("need a 32-byte key and 1 <= k <= n")
    lo, hi = Shamir.split(k, n, master[:16]), Shamir.split(k, n, master[16:])
    return [f"kfe1-{i}-{(a + b).hex()}" for (i, a), (_, b) in zip(lo, hi, strict=True)]


def combine_master(shares: list[str]) -> bytes:
    from Crypto.Protocol.SecretSharing import Shamir

    parsed = []
    for s in shares:
        try:
            tag, idx, hexed = s.strip().split("-")
            raw = bytes.fromhex(hexed)
            if tag != "kfe1" or len(raw) != 32:
                raise ValueError
            parsed.append((int(idx), raw))
        except ValueError as exc:
            raise KeyStoreError("malformed master-key share") from exc
    if len({i for i, _ in parsed}) != len(parsed):
        raise KeyStoreError("the same share was given twice")
    lo = Shamir.combine([(i, r[:16]) for i, r in parsed])
    hi = Shamir.combine([(i, r[16:]) for i, r in parsed])
    return lo + hi


# --- the authority's key store ------------------------------------------------------------


def _share_digest(share: str) -> str:
    return hashlib.sha256(share.strip().encode()).hexdigest()


def _check_value(master: bytes) -> str:
    return hmac.new(master, b"keyframe-escrow master check", hashlib.sha256).hexdigest()


class KeyStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def epochs_dir(self) -> Path:
        return self.root / "epochs"

    def exists(self) -> bool:
        return (self.root / "authority.json").exists()

    def info(self) -> dict:
        try:
            return json.loads((self.root / "authority.json").read_text())
        except OSError as exc:
            raise KeyStoreError(
                f"no escrow authority at {self.root} (run `escrow keys init`)"
            ) from exc

    def _write(self, name: str | Path, data: bytes, private: bool) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    @staticmethod
    def _wrap(master: bytes, purpose: str, secret: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(master).encrypt(nonce, secret, purpose.encode())

    @staticmethod
    def _unwrap(master: bytes, purpose: str, blob: bytes) -> bytes:
        try:
            return AESGCM(master).decrypt(blob[:12], blob[12:], purpose.encode())
        except InvalidTag as exc:
            raise KeyStoreError(f"cannot unwrap {purpose}: wrong master key") from exc

    def init(
        self,
        now: datetime,
        suite: str = "x25519",
        epoch_hours: int = 24,
        epochs_ahead: int = 7,
        k: int = 2,
        n: int = 3,
        dev: bool = False,
    ) -> list[str]:
        """Create the authority. Returns the n master-key shares (production mode; they are
        shown once and never stored) or [] in development mode."""
        if self.exists():
            raise KeyStoreError(f"an escrow authority already exists at {self.root}")
        if suite not in sealing.SUITES:
            raise ValueError(f"unknown suite: {suite}")
        master = AESGCM.generate_key(bit_length=256)
        signing = ed25519.Ed25519PrivateKey.generate()
        info = {
            "format": "keyframe-escrow-authority/1",
            "mode": "development" if dev else "production",
            "suite": suite,
            "epoch_hours": epoch_hours,
            "threshold": k,
            "trustees": n,
            "master_check": _check_value(master),
            # SHA-256 of each share (256-bit values: nothing to brute-force), so that a wrong
            # share is refused when a trustee submits it, not later when k are combined.
            "share_checks": {},
            "signing_public_key": _b64(signing.public_key().public_bytes_raw()),
            "created": _ts(now),
        }
        shares = [] if dev else split_master(master, k, n)
        info["share_checks"] = {s.split("-")[1]: _share_digest(s) for s in shares}
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        raw_signing = signing.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self._write("signing.key.enc", self._wrap(master, "signing-key", raw_signing), True)
        if dev:
            self._write("master.key", master, True)
        self._write("authority.json", json.dumps(info, indent=1).encode(), False)
        self.add_epochs(master, now, epochs_ahead)
        return shares

    def master_from(self, shares: list[str] | None = None) -> bytes:
        """The master key: from trustee shares, or (development mode) from master.key."""
        info = self.info()
        if shares:
            if len(shares) < info["threshold"]:
                raise KeyStoreError(f"{len(shares)} share(s) given, {info['threshold']} needed")
            master = combine_master(shares)
        elif info["mode"] == "development":
            master = (self.root / "master.key").read_bytes()
        else:
            raise KeyStoreError(f"production mode: {info['threshold']} trustee shares are needed")
        if not hmac.compare_digest(_check_value(master), info["master_check"]):
            raise KeyStoreError("wrong master key: a share is wrong or from another authority")
        return master

    def check_share(self, share: str) -> int:
        """The trustee index of a well-formed share of this authority; KeyStoreError if the
        share is malformed or (for authorities that recorded share digests) not theirs."""
        info = self.info()
        try:
            tag, idx, hexed = share.strip().split("-")
            if tag != "kfe1" or len(bytes.fromhex(hexed)) != 32:
                raise ValueError
            index = int(idx)
        except ValueError as exc:
            raise KeyStoreError("malformed master-key share") from exc
        if not 1 <= index <= info["trustees"]:
            raise KeyStoreError(f"share index {index} is not one of 1..{info['trustees']}")
        checks = info.get("share_checks") or {}
        if checks and not hmac.compare_digest(checks.get(str(index), ""), _share_digest(share)):
            raise KeyStoreError(f"share {index} is wrong (not this authority's trustee share)")
        return index

    def warrant_signer(self) -> ed25519.Ed25519PrivateKey:
        """The vault's warrant key: signs each warrant at issue so that a later edit of its
        scope in the database is detected. Unlike the authority's key it is usable without
        the master key (issuing a warrant must not need the trustees); created on first use."""
        path = self.root / "warrant-signing.key"
        if not path.exists():
            self.info()  # no authority, no warrants
            key = ed25519.Ed25519PrivateKey.generate()
            self._write("warrant-signing.key", key.private_bytes_raw(), True)
        return ed25519.Ed25519PrivateKey.from_private_bytes(path.read_bytes())

    def _signing_key(self, master: bytes) -> ed25519.Ed25519PrivateKey:
        raw = self._unwrap(master, "signing-key", (self.root / "signing.key.enc").read_bytes())
        return ed25519.Ed25519PrivateKey.from_private_bytes(raw)

    def add_epochs(self, master: bytes, start: datetime, count: int) -> list[EpochCertificate]:
        """Create `count` consecutive epochs from the one containing `start` (skipping any
        that exist), each with a fresh key pair and a certificate signed by the authority."""
        info = self.info()
        hours = info["epoch_hours"]
        signer = self._signing_key(master)
        t0 = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        t0 -= timedelta(hours=t0.hour % hours) if hours <= 24 else timedelta(0)
        made = []
        for i in range(count):
            a = t0 + timedelta(hours=hours * i)
            epoch_id = a.strftime("%Y%m%dT%H%MZ")
            if (self.epochs_dir / f"{epoch_id}.cert.json").exists():
                continue
            priv, pub = generate_epoch_keypair(info["suite"])
            cert = EpochCertificate(
                epoch_id, info["suite"], _ts(a), _ts(a + timedelta(hours=hours)), _b64(pub)
            )
            cert = EpochCertificate(**{**asdict(cert), "signature": _b64(signer.sign(cert.body()))})
            self._write(
                f"epochs/{epoch_id}.key.enc",
                self._wrap(master, f"epoch-key:{epoch_id}:{info['suite']}", priv),
                True,
            )
            self._write(f"epochs/{epoch_id}.cert.json", json.dumps(asdict(cert)).encode(), False)
            made.append(cert)
        return made

    def certificates(self) -> list[EpochCertificate]:
        return [
            EpochCertificate(**json.loads(p.read_text()))
            for p in sorted(self.epochs_dir.glob("*.cert.json"))
        ]

    def camera_keyring(self) -> dict:
        """Everything a camera needs, and nothing that can open: public keys only."""
        return {
            "format": "keyframe-escrow-camera-keyring/1",
            "authority_public_key": self.info()["signing_public_key"],
            "epochs": [asdict(c) for c in self.certificates()],
        }

    def epoch_private_key(self, master: bytes, epoch_id: str):
        path = self.epochs_dir / f"{epoch_id}.key.enc"
        if not path.exists():
            raise KeyStoreError(f"epoch {epoch_id}: private key destroyed or never existed")
        suite = self.info()["suite"]
        raw = self._unwrap(master, f"epoch-key:{epoch_id}:{suite}", path.read_bytes())
        return load_private(suite, raw)

    def shred(self, epoch_id: str) -> bool:
        """Destroy an epoch's private key: overwrite, sync, unlink. True if it existed."""
        path = self.epochs_dir / f"{epoch_id}.key.enc"
        if not path.exists():
            return False
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.write(os.urandom(size))
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
        return True
