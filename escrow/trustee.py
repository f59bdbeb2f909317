"""The trustee's side of an approval, run on the trustee's own machine.

The vault sends a review of the request (vault.openings.review): the warrant, the reason,
the requester, the records, and for each (camera, epoch) key they need, its signed
certificate and this trustee's share sealed to the trustee's own key. Before anything is
unsealed, every claim the vault makes is checked against what the trustee trusts: the
authority key pinned in the trustee's key file, the certificates' signatures, that each key
belongs to a camera and a time the warrant names, and that the digest the approval is bound
to is the digest of what was shown. Only then are the shares unsealed, checked against their
published digests, and sealed for the release (vault.crypto.seal_share_for_release).
"""

from __future__ import annotations

import base64
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from vault import crypto
from vault.keys import (
    EpochCertificate,
    KeyRefused,
    TrusteeKey,
    fingerprint,
    share_aad,
    share_digest,
    unseal_share,
)
from vault.openings import approval_aad, digest_of


class ReviewRejected(Exception):
    """What the vault sent does not hold up: nothing is unsealed."""


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def check(review: dict, key: TrusteeKey) -> list[EpochCertificate]:
    """The certificates to unseal shares of, after every check; ReviewRejected otherwise."""
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
    start, end = _t(w["window_start"]), _t(w["window_end"])
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
        sealed = crypto.seal_share_for_release(
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
