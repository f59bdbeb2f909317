"""The trustee's side of an approval, run on the trustee's own machine; also the trustee's
key file and the forms an approval is bound to (share AAD and digest, request digest), since
the trustee's machine has only this package, and the vault computes the same bytes from here.

The vault sends a review of the request (vault.openings.review): the warrant, the reason,
the requester, the records, and for each (camera, epoch) key they need, its signed
certificate and this trustee's share sealed to the trustee's own key. Before anything is
unsealed, every claim the vault makes is checked against what the trustee trusts: the
authority key pinned in the trustee's key file, the certificates' signatures, that each key
belongs to a camera and a time the warrant names, and that the digest the approval is bound
to is the digest of what was shown. Only then are the shares unsealed, checked against their
published digests, and sealed for the release (escrow.sealing.seal_share_for_release).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from escrow.canonical import canonical_json, parse_time
from escrow.keyring import EpochCertificate
from escrow.sealing import (
    KeyRefused,
    KeyStoreError,
    b64,
    fingerprint,
    generate_keypair,
    load_private,
    open_with_passphrase,
    public_of,
    seal_share_for_release,
    seal_with_passphrase,
    unb64,
    unseal_share,
)

TRUSTEE_KEY_FORMAT = "keyframe-escrow-trustee-key/1"


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
            if not isinstance(d, dict) or d.get("format") != TRUSTEE_KEY_FORMAT:
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


# --- what an approval is bound to ------------------------------------------------------------


def share_aad(authority_fp: str, cert: EpochCertificate, index: int) -> bytes:
    """Binds a sealed share to its authority, camera, epoch, trustee and certificate."""
    body = [authority_fp, cert.epoch_id, cert.camera_id, index, cert.key_sha256]
    return b"keyframe-escrow/epoch-share\x00" + canonical_json(body, spaced=True)


def share_digest(cert: EpochCertificate, index: int, share: bytes) -> str:
    """Published beside the sealed share: a trustee and the vault can tell a wrong share
    before combining. Shares are uniformly random (>= 256 bits): nothing to brute-force."""
    return hashlib.sha256(
        b"keyframe-escrow/share-check\x00" + cert.epoch_id.encode() + bytes([index]) + share
    ).hexdigest()


def digest_of(fields: dict) -> str:
    """What a trustee approves. The trustee's client recomputes it from what it shows."""
    body = {k: fields[k] for k in ("id", "warrant", "records", "requester", "reason")}
    body["public_key"] = fields["public_key"]
    body["created"] = fields["created"]
    return hashlib.sha256(canonical_json(body, spaced=True)).hexdigest()


def approval_aad(request_id: str, request_digest: str, index: int, epoch_id: str) -> bytes:
    """Binds a released share to one request (and its digest), one trustee, one epoch."""
    body = [request_id, request_digest, index, epoch_id]
    return b"keyframe-escrow/approval\x00" + canonical_json(body, spaced=True)


class ReviewRejected(Exception):
    """What the vault sent does not hold up: nothing is unsealed."""


def check(review: dict, key: TrusteeKey) -> list[EpochCertificate]:
    """The certificates to unseal shares of, after every check; ReviewRejected otherwise,
    also when the review is not of the shape the vault sends (it is the vault's word only)."""
    try:
        return _check(review, key)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ReviewRejected(f"the review is malformed ({type(exc).__name__}: {exc})") from exc


def _check(review: dict, key: TrusteeKey) -> list[EpochCertificate]:
    authority_raw = base64.b64decode(review["authority_public_key"])
    if fingerprint(authority_raw) != key.authority_fp:
        raise ReviewRejected(
            "the vault speaks for another authority than your key file's "
            f"({fingerprint(authority_raw)[:16]} vs {key.authority_fp[:16]})"
        )
    if review["trustee_index"] != key.index:
        raise ReviewRejected(
            f"your token speaks for trustee {review['trustee_index']}, your key file is "
            f"trustee {key.index}"
        )
    req, w = review["request"], review["warrant"]
    fields = review["digest_fields"]
    if digest_of(fields) != req["digest"] or fields["id"] != req["id"]:
        raise ReviewRejected("the request's digest is not the digest of what is shown")
    if sorted(fields["records"]) != sorted(req["record_ids"]) or fields["reason"] != req["reason"]:
        raise ReviewRejected("the request shown differs from the one its digest covers")
    if fields["warrant"] != w["id"]:
        raise ReviewRejected("the warrant shown is not the request's")
    authority = ed25519.Ed25519PublicKey.from_public_bytes(authority_raw)
    start, end = parse_time(w["window_start"]), parse_time(w["window_end"])
    certs = []
    for k in review["keys"]:
        cert = EpochCertificate.from_dict(k["certificate"])
        try:
            cert.verify(authority)
        except KeyRefused as exc:
            raise ReviewRejected(str(exc)) from exc
        a, b = cert.window()
        if cert.camera_id and cert.camera_id not in w["cameras"]:
            raise ReviewRejected(f"key {cert.epoch_id} is of a camera the warrant does not name")
        if not (a < end and start < b):
            raise ReviewRejected(f"key {cert.epoch_id} covers no time inside the warrant's window")
        if not k.get("sealed_share"):
            raise ReviewRejected(f"no share of yours for key {cert.epoch_id}")
        certs.append(cert)
    named = {c.epoch_id for c in certs}
    for r in review["records"]:
        if r["epoch_id"] not in named:
            raise ReviewRejected(f"record {r['id']} needs a key the review does not list")
    return certs


def approval_body(review: dict, key: TrusteeKey, passphrase: str) -> dict:
    """The approval to post: each share unsealed here and sealed for this release only."""
    certs = check(review, key)
    private = key.unlock(passphrase)
    release_pub = x25519.X25519PublicKey.from_public_bytes(
        base64.b64decode(review["release_public_key"])
    )
    fields = review["digest_fields"]
    request_pub = x25519.X25519PublicKey.from_public_bytes(base64.b64decode(fields["public_key"]))
    digest = review["request"]["digest"]
    by_epoch = {k["certificate"]["epoch_id"]: k for k in review["keys"]}
    shares = {}
    for cert in certs:
        k = by_epoch[cert.epoch_id]
        share = unseal_share(
            private,
            key.suite,
            base64.b64decode(k["sealed_share"]),
            share_aad(key.authority_fp, cert, key.index),
        )
        if share_digest(cert, key.index, share) != k["share_digest"]:
            raise ReviewRejected(f"your share of {cert.epoch_id} does not match its digest")
        sealed = seal_share_for_release(
            share,
            release_pub,
            request_pub,
            approval_aad(fields["id"], digest, key.index, cert.epoch_id),
        )
        shares[cert.epoch_id] = base64.b64encode(sealed).decode()
    del private
    return {"request_digest": digest, "shares": shares}


def summary(review: dict) -> list[str]:
    """What the trustee reads before confirming."""
    req, w = review["request"], review["warrant"]
    cams = sorted({r["camera_id"] for r in review["records"]})
    lines = [
        f"request    {req['id']}  ({len(req['approvals'])} of {req['required']} approvals)",
        f"case       {w['case_ref']}  (warrant {w['id']}, judge {w['judge']}, {w['state']})",
        f"legal basis {w['legal_basis']}",
        f"reason     {req['reason']}",
        f"requester  {req['requester']}",
        f"records    {len(review['records'])} of cameras {', '.join(cams) or '-'}",
    ]
    for r in review["records"]:
        lines.append(f"  {r['id']}  {r['camera_id']}  {r['best_time']}")
    lines.append(
        f"keys       {len(review['keys'])} (camera, epoch) key(s): "
        + ", ".join(k["certificate"]["epoch_id"] for k in review["keys"])
    )
    lines.append(f"digest     {req['digest']}")
    return lines
