"""Key custody without a master key: per-(camera, epoch) key pairs split k-of-n to the
trustees' own keys at creation, then dropped.

Nothing in this module ever stores a private epoch key, whole or wrapped. At the ceremony
(`escrow keys init`) and whenever epochs are issued (`escrow keys issue`, which needs the
authority's offline signing key), each (camera, epoch) gets a fresh key pair; its private
half is split with Shamir (pycryptodome) and share i is sealed with HPKE to trustee i's
public key, with the authority, camera, epoch, index and certificate as associated data; a
SHA-256 of each share is kept so that a wrong share is caught before it is combined. Then
the private half is dropped. Opening a record needs k trustees to unseal their shares of
exactly that (camera, epoch) on their own machines (vault.openings).

Key store layout (a directory, kept apart from the record database on purpose):

    authority.json                   public: suite, k-of-n, trustees' public keys, signing
                                     and release public keys, mode
    authority-signing.key            the authority's Ed25519 signing key, passphrase-sealed:
                                     move it offline after the ceremony (issuing epochs and
                                     privileged tokens needs it; the API never does)
    release.key                      the vault's release key (X25519): trustees seal the
                                     shares they unwrap for a request to it; never in the DB
    warrant-signing.key              the vault's warrant key (signs warrants at issue)
    epochs/<camera>/<start>.cert.json    public: the epoch's public key, validity, signature
    epochs/<camera>/<start>.shares.json  the n sealed shares and their digests

Crypto-shredding overwrites and unlinks the shares file: every ciphertext of that epoch, in
the live database and in any backup of it, is then unreadable to anyone, trustees included.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from escrow.canonical import as_utc
from escrow.keyring import EpochCertificate, epoch_name
from escrow.sealing import (
    SUITES,
    KeyStoreError,
    b64,
    fingerprint,
    generate_keypair,
    load_public,
    open_with_passphrase,
    seal_share_to_trustee,
    seal_with_passphrase,
    unb64,
)
from escrow.trustee import TrusteeKey, share_aad, share_digest

AUTHORITY_FORMAT = "keyframe-escrow-authority/2"


def _ts(d: datetime) -> str:
    return as_utc(d).isoformat()


# --- Shamir k-of-n over a private key -------------------------------------------------------


def split_secret(secret: bytes, k: int, n: int) -> list[tuple[int, bytes]]:
    """k-of-n shares with pycryptodome's Shamir, which takes 16-byte secrets: the key is
    split as consecutive 16-byte blocks, and share i carries trustee i's point of each."""
    from Crypto.Protocol.SecretSharing import Shamir

    if not secret or len(secret) % 16 or not 1 <= k <= n:
        raise ValueError("need a secret of whole 16-byte blocks and 1 <= k <= n")
    blocks = [Shamir.split(k, n, secret[i : i + 16]) for i in range(0, len(secret), 16)]
    return [(idx, b"".join(b[j][1] for b in blocks)) for j, (idx, _) in enumerate(blocks[0])]


def combine_secret(shares: list[tuple[int, bytes]]) -> bytes:
    from Crypto.Protocol.SecretSharing import Shamir

    if len({i for i, _ in shares}) != len(shares):
        raise KeyStoreError("the same share was given twice")
    size = len(shares[0][1])
    if size % 16 or any(len(s) != size for _, s in shares):
        raise KeyStoreError("malformed share")
    return b"".join(
        Shamir.combine([(i, s[o : o + 16]) for i, s in shares]) for o in range(0, size, 16)
    )


# --- the authority's key store --------------------------------------------------------------


def _write_file(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def create_once(path: Path, data: bytes) -> None:
    """Create the private file `path` holding `data`, unless it exists. Written whole to a
    file of this process's own, then linked into place: processes racing to create it (two
    replicas starting on a fresh key store) all end up reading the one that came first,
    never half a file, never one replaced after another process read and used its own."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process came first: keep its
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _shred_file(path: Path) -> bool:
    if not path.exists():
        return False
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    path.unlink()
    return True


def write_authority(
    root: Path,
    *,
    mode: str,
    suite: str,
    epoch_hours: int,
    k: int,
    keys: list[TrusteeKey],
    signing: ed25519.Ed25519PrivateKey,
    signing_passphrase: str,
    created: str,
    extra: dict | None = None,
) -> None:
    """The authority's own files: the signing key sealed under its passphrase, a fresh
    release key, and authority.json (public: trustees' keys, signing and release keys)."""
    signing_pub = signing.public_key().public_bytes_raw()
    release = x25519.X25519PrivateKey.generate()
    info = {
        "format": AUTHORITY_FORMAT,
        "mode": mode,
        "suite": suite,
        "epoch_hours": epoch_hours,
        "threshold": k,
        "trustees": [
            {"index": t.index, "name": t.name, "public_key": b64(t.public_key)} for t in keys
        ],
        "signing_public_key": b64(signing_pub),
        "fingerprint": fingerprint(signing_pub),
        "release_public_key": b64(release.public_key().public_bytes_raw()),
        "created": created,
        **(extra or {}),
    }
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    sealed = seal_with_passphrase(
        signing.private_bytes_raw(), signing_passphrase, "authority signing key"
    )
    _write_file(root / "authority-signing.key", json.dumps(sealed).encode(), True)
    _write_file(root / "release.key", release.private_bytes_raw(), True)
    _write_file(root / "authority.json", json.dumps(info, indent=1).encode(), False)


class KeyStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._info: dict | None = None

    @property
    def epochs_dir(self) -> Path:
        return self.root / "epochs"

    def exists(self) -> bool:
        return (self.root / "authority.json").exists()

    def info(self) -> dict:
        """authority.json, read once: it changes only at the ceremony, and every request of
        the API asks for it (threshold, trustees, suite, release key)."""
        if self._info is None:
            self._info = self._read_info()
        return self._info

    def _read_info(self) -> dict:
        try:
            info = json.loads((self.root / "authority.json").read_text())
        except OSError as exc:
            raise KeyStoreError(
                f"no escrow authority at {self.root} (run `escrow keys init`)"
            ) from exc
        if info.get("format") != AUTHORITY_FORMAT:
            raise KeyStoreError(
                f"the authority at {self.root} uses a master key ({info.get('format')}): run "
                "the one-time `escrow keys migrate` ceremony with k of its shares first"
            )
        return info

    # -- the ceremony ---------------------------------------------------------------------

    def init(
        self,
        now: datetime,
        trustees: list[tuple[str, str]],
        k: int,
        signing_passphrase: str,
        suite: str = "x25519",
        epoch_hours: int = 24,
        dev: bool = False,
    ) -> list[TrusteeKey]:
        """Create the authority for trustees [(name, passphrase), ...] (k of them needed to
        open). Returns their keys (each to be written to its trustee's own file); epochs are
        issued per camera afterwards (`issue_epochs`). Development mode only marks the
        authority as such: it still holds no private epoch key."""
        if self.exists() or (self.root / "authority.json").exists():
            raise KeyStoreError(f"an escrow authority already exists at {self.root}")
        if suite not in SUITES:
            raise ValueError(f"unknown suite: {suite}")
        if not 1 <= k <= len(trustees):
            raise ValueError("need 1 <= threshold <= number of trustees")
        signing = ed25519.Ed25519PrivateKey.generate()
        signing_pub = signing.public_key().public_bytes_raw()
        fp = fingerprint(signing_pub)
        keys = [
            TrusteeKey.generate(i, name, suite, fp, pw) for i, (name, pw) in enumerate(trustees, 1)
        ]
        write_authority(
            self.root,
            mode="development" if dev else "production",
            suite=suite,
            epoch_hours=epoch_hours,
            k=k,
            keys=keys,
            signing=signing,
            signing_passphrase=signing_passphrase,
            created=_ts(now),
        )
        return keys

    def authority_signer(self, passphrase: str | None = None) -> ed25519.Ed25519PrivateKey:
        """The offline signing key (issuing epochs and privileged tokens). The passphrase
        comes from the argument or ESCROW_AUTHORITY_PASSPHRASE."""
        self.info()
        path = self.root / "authority-signing.key"
        if not path.exists():
            raise KeyStoreError(
                f"the authority's signing key is not at {path} (it is kept offline: run this "
                "where it is)"
            )
        if passphrase is None:
            passphrase = os.environ.get("ESCROW_AUTHORITY_PASSPHRASE")
        if passphrase is None:
            raise KeyStoreError(
                "the authority's passphrase is needed (ESCROW_AUTHORITY_PASSPHRASE)"
            )
        box = json.loads(path.read_text())
        raw = open_with_passphrase(box, passphrase, "authority signing key")
        key = ed25519.Ed25519PrivateKey.from_private_bytes(raw)
        if key.public_key().public_bytes_raw() != self.authority_public_raw():
            raise KeyStoreError("the signing key file is not this authority's")
        return key

    def authority_public_raw(self) -> bytes:
        return unb64(self.info()["signing_public_key"])

    def authority_public(self) -> ed25519.Ed25519PublicKey:
        return ed25519.Ed25519PublicKey.from_public_bytes(self.authority_public_raw())

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.authority_public_raw())

    def trustee_public(self, index: int):
        for t in self.info()["trustees"]:
            if t["index"] == index:
                return load_public(self.info()["suite"], unb64(t["public_key"]))
        raise KeyStoreError(f"no trustee {index} in this authority")

    def release_key(self) -> x25519.X25519PrivateKey:
        return x25519.X25519PrivateKey.from_private_bytes((self.root / "release.key").read_bytes())

    def release_public_raw(self) -> bytes:
        return unb64(self.info()["release_public_key"])

    def warrant_signer(self) -> ed25519.Ed25519PrivateKey:
        """The vault's warrant key: signs each warrant at issue so that a later edit of its
        scope in the database is detected. Usable without the trustees (issuing a warrant
        must not need them); created on first use, by whichever replica comes first (the
        others sign with that one: a warrant one replica signs, every other one verifies)."""
        path = self.root / "warrant-signing.key"
        if not path.exists():
            self.info()  # no authority, no warrants
            create_once(path, ed25519.Ed25519PrivateKey.generate().private_bytes_raw())
        return ed25519.Ed25519PrivateKey.from_private_bytes(path.read_bytes())

    # -- epochs ---------------------------------------------------------------------------

    def _paths(self, epoch_id: str) -> tuple[Path, Path]:
        camera, _, start = epoch_id.rpartition("@")
        folder = self.epochs_dir / (camera or "_global")
        return folder / f"{start}.cert.json", folder / f"{start}.shares.json"

    def issue_epochs(
        self, signer: ed25519.Ed25519PrivateKey, camera_id: str, start: datetime, count: int
    ) -> list[EpochCertificate]:
        """Create `count` consecutive epochs of one camera from the one containing `start`
        (skipping any that exist): a fresh key pair each, its private half split k-of-n and
        sealed to the trustees' keys, then dropped. Never writes a private key."""
        info = self.info()
        if signer.public_key().public_bytes_raw() != self.authority_public_raw():
            raise KeyStoreError("this signing key is not the authority's")
        hours, suite, k = info["epoch_hours"], info["suite"], info["threshold"]
        trustees = {
            t["index"]: load_public(suite, unb64(t["public_key"])) for t in info["trustees"]
        }
        t0 = as_utc(start).replace(minute=0, second=0, microsecond=0)
        t0 -= timedelta(hours=t0.hour % hours) if hours <= 24 else timedelta(0)
        made = []
        for i in range(count):
            a = t0 + timedelta(hours=hours * i)
            epoch_id = epoch_name(camera_id, a)
            cert_path, shares_path = self._paths(epoch_id)
            if cert_path.exists():
                continue
            priv, pub = generate_keypair(suite)
            cert = EpochCertificate(
                epoch_id, suite, _ts(a), _ts(a + timedelta(hours=hours)), b64(pub), "", camera_id
            )
            cert = EpochCertificate(**{**asdict(cert), "signature": b64(signer.sign(cert.body()))})
            sealed, digests = {}, {}
            for idx, share in split_secret(priv, k, len(trustees)):
                aad = share_aad(self.fingerprint, cert, idx)
                sealed[str(idx)] = b64(seal_share_to_trustee(share, suite, trustees[idx], aad))
                digests[str(idx)] = share_digest(cert, idx, share)
            del priv
            doc = {"epoch_id": epoch_id, "sealed_shares": sealed, "share_digests": digests}
            _write_file(shares_path, json.dumps(doc).encode(), True)
            _write_file(cert_path, json.dumps(asdict(cert)).encode(), False)
            made.append(cert)
        return made

    def certificates(self, camera_id: str | None = None) -> list[EpochCertificate]:
        folders = [self.epochs_dir / camera_id] if camera_id else [self.epochs_dir]
        pattern = "*.cert.json" if camera_id else "*/*.cert.json"
        return [
            EpochCertificate.from_dict(json.loads(p.read_text()))
            for folder in folders
            for p in sorted(folder.glob(pattern))
        ]

    def certificate(self, epoch_id: str) -> EpochCertificate:
        path, _ = self._paths(epoch_id)
        try:
            return EpochCertificate.from_dict(json.loads(path.read_text()))
        except OSError as exc:
            raise KeyStoreError(f"no epoch {epoch_id}") from exc
        except (ValueError, TypeError) as exc:
            raise KeyStoreError(f"epoch {epoch_id}: its certificate is unreadable") from exc

    def shares(self, epoch_id: str) -> dict:
        """{"sealed_shares": {index: b64}, "share_digests": {index: hex}} of one epoch."""
        _, path = self._paths(epoch_id)
        try:
            doc = json.loads(path.read_text())
        except OSError as exc:
            raise KeyStoreError(f"epoch {epoch_id}: key destroyed or never existed") from exc
        except ValueError as exc:  # not UTF-8, not JSON
            raise KeyStoreError(f"epoch {epoch_id}: its shares file is unreadable") from exc
        if not (
            isinstance(doc, dict)
            and all(
                isinstance(doc.get(k), dict)
                and all(isinstance(i, str) and isinstance(v, str) for i, v in doc[k].items())
                for k in ("sealed_shares", "share_digests")
            )
        ):
            raise KeyStoreError(f"epoch {epoch_id}: its shares file is not a shares file")
        return doc

    def camera_keyring(self, camera_id: str | None = None, now: datetime | None = None) -> dict:
        """Everything a camera needs, and nothing that can open: public keys only. With
        `now`, epochs already over are left out."""
        certs = self.certificates(camera_id)
        if now is not None:
            certs = [c for c in certs if c.window()[1] > now]
        return {
            "format": "keyframe-escrow-camera-keyring/2",
            "camera_id": camera_id,
            "authority_public_key": self.info()["signing_public_key"],
            "authority_fingerprint": self.fingerprint,
            "epochs": [asdict(c) for c in certs],
        }

    def shred(self, epoch_id: str) -> bool:
        """Destroy an epoch's key for good: overwrite, sync and unlink its sealed shares (the
        only material it could ever be rebuilt from). True if they existed."""
        _, path = self._paths(epoch_id)
        return _shred_file(path)
