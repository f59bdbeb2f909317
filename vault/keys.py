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

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from vault import crypto

AUTHORITY_FORMAT = "keyframe-escrow-authority/2"
TRUSTEE_KEY_FORMAT = "keyframe-escrow-trustee-key/1"


class KeyRefused(Exception):
    """The camera will not seal: no valid, signed epoch key for this moment."""


class KeyStoreError(Exception):
    """The key store is missing or incomplete, or a key file or passphrase is wrong."""


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def unb64(s: str) -> bytes:
    return base64.b64decode(s)


def _ts(d: datetime) -> str:
    return d.astimezone(UTC).isoformat()


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


# --- signed epoch certificates: what a camera holds ---------------------------------------


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
        return b"keyframe-escrow/epoch\x00" + json.dumps(d, sort_keys=True).encode()

    def window(self) -> tuple[datetime, datetime]:
        return datetime.fromisoformat(self.not_before), datetime.fromisoformat(self.not_after)

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
        return cls(**{k: d[k] for k in d if k in cls.__dataclass_fields__})


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
        header: crypto.RecordHeader,
        attachments: list[bytes] | None = None,
    ) -> crypto.SealedRecord:
        if header.epoch_id != self.cert.epoch_id:
            raise KeyRefused(f"record is for epoch {header.epoch_id}, key is {self.cert.epoch_id}")
        if self.cert.camera_id and header.camera_id != self.cert.camera_id:
            raise KeyRefused(
                f"epoch key {self.cert.epoch_id} belongs to camera {self.cert.camera_id}"
            )
        if not self.covers(header.best_time):
            raise KeyRefused(
                f"epoch key {self.cert.epoch_id} is not valid at {_ts(header.best_time)} "
                f"(valid {self.cert.not_before} .. {self.cert.not_after}): refusing to seal"
            )
        return crypto.seal(crop, meta, header, self._public, self.cert.suite, attachments)


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
            f"no signed epoch key covers {_ts(t)}: the camera is out of keys and stops "
            "capturing (refresh its keyring from the vault, or have the authority run "
            "`escrow keys issue`)"
        )


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


def share_aad(authority_fp: str, cert: EpochCertificate, index: int) -> bytes:
    """Binds a sealed share to its authority, camera, epoch, trustee and certificate."""
    body = [authority_fp, cert.epoch_id, cert.camera_id, index, cert.key_sha256]
    return b"keyframe-escrow/epoch-share\x00" + json.dumps(body).encode()


def share_digest(cert: EpochCertificate, index: int, share: bytes) -> str:
    """Published beside the sealed share: a trustee and the vault can tell a wrong share
    before combining. Shares are uniformly random (>= 256 bits): nothing to brute-force."""
    return hashlib.sha256(
        b"keyframe-escrow/share-check\x00" + cert.epoch_id.encode() + bytes([index]) + share
    ).hexdigest()


# --- a trustee's own key --------------------------------------------------------------------


@dataclass
class TrusteeKey:
    """A trustee's key pair: the public half sits in authority.json, the private half only
    in the trustee's passphrase-sealed file."""

    index: int
    name: str
    suite: str
    public_key: bytes
    authority_fp: str
    sealed_private: dict = field(repr=False, default_factory=dict)

    def purpose(self) -> str:
        return f"trustee key {self.index} of authority {self.authority_fp[:16]}"

    @classmethod
    def generate(cls, index: int, name: str, suite: str, authority_fp: str, passphrase: str):
        if not passphrase:
            raise KeyStoreError(f"trustee {index}: an empty passphrase is not allowed")
        priv, pub = generate_keypair(suite)
        key = cls(index, name, suite, pub, authority_fp)
        key.sealed_private = seal_with_passphrase(priv, passphrase, key.purpose())
        return key

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": TRUSTEE_KEY_FORMAT,
                "index": self.index,
                "name": self.name,
                "suite": self.suite,
                "public_key": b64(self.public_key),
                "authority_fingerprint": self.authority_fp,
                "private_key": self.sealed_private,
            },
            indent=1,
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: Path) -> TrusteeKey:
        try:
            d = json.loads(Path(path).read_text())
            if d.get("format") != TRUSTEE_KEY_FORMAT:
                raise ValueError("not a trustee key file")
            return cls(
                d["index"],
                d["name"],
                d["suite"],
                unb64(d["public_key"]),
                d["authority_fingerprint"],
                d["private_key"],
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"not a trustee key file: {path} ({exc})") from exc

    def unlock(self, passphrase: str):
        """The private key object, for the length of one approval."""
        raw = open_with_passphrase(self.sealed_private, passphrase, self.purpose())
        if public_of(self.suite, raw) != self.public_key:
            raise KeyStoreError("the trustee key file is inconsistent")
        return load_private(self.suite, raw)


def unseal_share(trustee_private, suite: str, sealed: bytes, aad: bytes) -> bytes:
    """On the trustee's machine: their share of one (camera, epoch) key."""
    try:
        return crypto.SUITES[suite].decrypt(sealed, trustee_private, info=aad)
    except Exception as exc:  # any HPKE failure: not this trustee's share of this epoch
        raise KeyStoreError("this sealed share is not yours for this epoch") from exc


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
        if suite not in crypto.SUITES:
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
        must not need them); created on first use."""
        path = self.root / "warrant-signing.key"
        if not path.exists():
            self.info()  # no authority, no warrants
            key = ed25519.Ed25519PrivateKey.generate()
            _write_file(path, key.private_bytes_raw(), True)
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
        t0 = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
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
                sealed[str(idx)] = b64(crypto.SUITES[suite].encrypt(share, trustees[idx], info=aad))
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

    def shares(self, epoch_id: str) -> dict:
        """{"sealed_shares": {index: b64}, "share_digests": {index: hex}} of one epoch."""
        _, path = self._paths(epoch_id)
        try:
            return json.loads(path.read_text())
        except OSError as exc:
            raise KeyStoreError(f"epoch {epoch_id}: key destroyed or never existed") from exc

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
