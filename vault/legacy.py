"""The one-time ceremony that takes a vault made before per-camera custody (a master key
split k-of-n, every epoch key wrapped under it) to the new custody, and destroys the master.

With k of the old master-key shares: rebuild the master in memory, unwrap the signing key and
every epoch key still present, make one key pair per trustee, re-split each epoch key to the
trustees' keys exactly as `KeyStore.issue_epochs` does, keep the signing key (so the old
certificates, and the records sealed under them, stay valid) sealed under the authority's
passphrase, then shred every file the master key could open, and the master key file of a
development authority. Only reads the old format; nothing here writes it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from escrow import sealing
from escrow.keyring import EpochCertificate
from escrow.sealing import KeyStoreError, b64, fingerprint, load_public
from escrow.trustee import TrusteeKey, share_aad, share_digest
from vault.keys import _shred_file, _write_file, split_secret, write_authority

LEGACY_FORMAT = "keyframe-escrow-authority/1"


def _master(info: dict, root: Path, shares: list[str]) -> bytes:
    from Crypto.Protocol.SecretSharing import Shamir

    if info.get("mode") == "development" and not shares:
        master = (root / "master.key").read_bytes()
    else:
        parsed = []
        for s in shares:
            try:
                tag, idx, hexed = s.strip().split("-")
                raw = bytes.fromhex(hexed)
                if tag != "kfe1" or len(raw) != 32:
                    raise ValueError
            except ValueError as exc:
                raise KeyStoreError("malformed master-key share") from exc
            parsed.append((int(idx), raw))
        if len({i for i, _ in parsed}) < info["threshold"]:
            raise KeyStoreError(f"{info['threshold']} distinct old shares are needed")
        lo = Shamir.combine([(i, r[:16]) for i, r in parsed])
        hi = Shamir.combine([(i, r[16:]) for i, r in parsed])
        master = lo + hi
    check = hmac.new(master, b"keyframe-escrow master check", hashlib.sha256).hexdigest()
    if not hmac.compare_digest(check, info["master_check"]):
        raise KeyStoreError("wrong master key: a share is wrong or from another authority")
    return master


def _unwrap(master: bytes, purpose: str, blob: bytes) -> bytes:
    try:
        return AESGCM(master).decrypt(blob[:12], blob[12:], purpose.encode())
    except InvalidTag as exc:
        raise KeyStoreError(f"cannot unwrap {purpose}") from exc


def migrate(
    root: Path,
    shares: list[str],
    trustees: list[tuple[str, str]],
    k: int,
    signing_passphrase: str,
    now: datetime,
    save: Callable[[list[TrusteeKey]], None],
) -> tuple[list[TrusteeKey], list[str]]:
    """-> (the new trustee keys, the epochs re-split). `save` writes the trustee key files
    before anything old is touched; the old key store is then rewritten in place (on any
    error before that, it is left as it was)."""
    root = Path(root)
    try:
        info = json.loads((root / "authority.json").read_text())
    except OSError as exc:
        raise KeyStoreError(f"no escrow authority at {root}") from exc
    if info.get("format") != LEGACY_FORMAT:
        raise KeyStoreError(f"{root} is not a master-key authority: nothing to migrate")
    if not 1 <= k <= len(trustees):
        raise ValueError("need 1 <= threshold <= number of trustees")
    master = _master(info, root, shares)
    suite = info["suite"]
    signing = ed25519.Ed25519PrivateKey.from_private_bytes(
        _unwrap(master, "signing-key", (root / "signing.key.enc").read_bytes())
    )
    signing_pub = signing.public_key().public_bytes_raw()
    fp = fingerprint(signing_pub)
    keys = [TrusteeKey.generate(i, n, suite, fp, pw) for i, (n, pw) in enumerate(trustees, 1)]
    publics = {t.index: load_public(suite, t.public_key) for t in keys}
    epochs_dir = root / "epochs"
    moved, plans = [], []
    for cert_path in sorted(epochs_dir.glob("*.cert.json")):
        cert = EpochCertificate.from_dict(json.loads(cert_path.read_text()))
        key_path = epochs_dir / f"{cert.epoch_id}.key.enc"
        if not key_path.exists():
            plans.append((cert_path, key_path, cert, None))  # already shredded
            continue
        priv = _unwrap(master, f"epoch-key:{cert.epoch_id}:{suite}", key_path.read_bytes())
        sealed, digests = {}, {}
        for idx, share in split_secret(priv, k, len(keys)):
            aad = share_aad(fp, cert, idx)
            sealed[str(idx)] = b64(sealing.SUITES[suite].encrypt(share, publics[idx], info=aad))
            digests[str(idx)] = share_digest(cert, idx, share)
        del priv
        plans.append(
            (
                cert_path,
                key_path,
                cert,
                {"epoch_id": cert.epoch_id, "sealed_shares": sealed, "share_digests": digests},
            )
        )
    del master
    save(keys)
    # from here on the old store is rewritten: new files first, then the old ones shredded
    write_authority(
        root,
        mode=info["mode"],
        suite=suite,
        epoch_hours=info["epoch_hours"],
        k=k,
        keys=keys,
        signing=signing,
        signing_passphrase=signing_passphrase,
        created=info["created"],
        extra={"migrated_from_master_key": now.isoformat()},
    )
    for cert_path, key_path, cert, doc in plans:
        folder = epochs_dir / "_global"
        _write_file(folder / cert_path.name, cert_path.read_bytes(), False)
        if doc is not None:
            stamp = cert.epoch_id
            _write_file(folder / f"{stamp}.shares.json", json.dumps(doc).encode(), True)
            moved.append(cert.epoch_id)
        _shred_file(key_path)
        cert_path.unlink()
    _shred_file(root / "signing.key.enc")
    _shred_file(root / "master.key")
    return keys, moved
