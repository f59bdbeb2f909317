"""Opening requests: an investigator asks, k distinct trustees approve with their master-key
shares, and the requested crops are released once.

Where the shares wait. A request carries a fresh X25519 public key whose private half (the
"fetch secret") is returned to the requester only, never stored. Each trustee's share is
sealed with HPKE to that key at once, with the request id, the trustee, the share index and
the request's digest as associated data. So the database alone never holds enough to rebuild
the master key, and a sealed approval copied onto another request does not open. At release
the requester presents the fetch secret; the vault unseals the shares, rebuilds the master
key in memory, opens exactly the requested records that are still in scope, stored and
within retention (or held), and wipes the sealed shares.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from sqlalchemy import select
from sqlalchemy.orm import Session

from vault import crypto, warrants
from vault.keys import KeyStore, KeyStoreError
from vault.models import Approval, OpeningRequest, SealedRecordRow, Warrant
from vault.refusals import Refused
from vault.store import as_utc, sealed_from_row

SHARE_SUITE = crypto.SUITES["x25519"]
MAX_RECORDS_PER_REQUEST = 1000


class OpeningRefused(Refused):
    """The request cannot be made, approved or released (yet)."""


def record_ids(req: OpeningRequest) -> list[str]:
    return json.loads(req.record_ids)


def digest(req: OpeningRequest) -> str:
    """What a trustee approves: this request, these records, this requester, this key."""
    body = {
        "id": req.id,
        "warrant": req.warrant_id,
        "records": record_ids(req),
        "requester": req.requester_token_id,
        "reason": req.reason,
        "public_key": base64.b64encode(req.public_key).decode(),
        "created": as_utc(req.created).isoformat(timespec="microseconds"),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _approval_aad(req_id: str, trustee_token_id: str, index: int, req_digest: str) -> bytes:
    body = [req_id, trustee_token_id, index, req_digest]
    return b"keyframe-escrow/approval\x00" + json.dumps(body).encode()


def _committed(s: Session, w: Warrant) -> int:
    """Records already asked for (pending) or released under this warrant."""
    reqs = s.scalars(
        select(OpeningRequest).where(
            OpeningRequest.warrant_id == w.id, OpeningRequest.status.in_(("pending", "released"))
        )
    )
    return sum(r.released_count if r.status == "released" else len(record_ids(r)) for r in reqs)


def create(
    s: Session,
    w: Warrant,
    warrant_key: ed25519.Ed25519PublicKey,
    *,
    requester: str,
    requester_token_id: str,
    ids: list[str],
    reason: str,
    now: datetime,
) -> tuple[OpeningRequest, str]:
    """-> (the request, its fetch secret: returned once, never stored)."""
    warrants.require_active(w, warrant_key, now)
    ids = sorted(set(ids))
    if not ids:
        raise OpeningRefused("name at least one record to open", 422)
    if len(ids) > MAX_RECORDS_PER_REQUEST:
        raise OpeningRefused(f"at most {MAX_RECORDS_PER_REQUEST} records per request", 422)
    found = {r.id for r in warrants.scoped_records(s, w, ids)}
    outside = [i for i in ids if i not in found]
    if outside:
        raise OpeningRefused(
            f"{len(outside)} record(s) are not stored within warrant {w.id}'s scope: "
            + ", ".join(outside[:5])
            + (" ..." if len(outside) > 5 else "")
        )
    if w.max_records is not None and _committed(s, w) + len(ids) > w.max_records:
        raise OpeningRefused(
            f"warrant {w.id} allows {w.max_records} record(s); "
            f"{_committed(s, w)} already requested or released"
        )
    key = x25519.X25519PrivateKey.generate()
    req = OpeningRequest(
        id=str(uuid.uuid4()),
        warrant_id=w.id,
        requester_token_id=requester_token_id,
        requester=requester,
        record_ids=json.dumps(ids),
        reason=reason,
        public_key=key.public_key().public_bytes_raw(),
        created=now,
        status="pending",
    )
    s.add(req)
    s.flush()
    return req, base64.urlsafe_b64encode(key.private_bytes_raw()).decode()


def approvals(s: Session, req: OpeningRequest) -> list[Approval]:
    return list(
        s.scalars(select(Approval).where(Approval.request_id == req.id).order_by(Approval.id))
    )


def approve(
    s: Session,
    req: OpeningRequest,
    w: Warrant,
    warrant_key: ed25519.Ed25519PublicKey,
    keystore: KeyStore,
    *,
    trustee: str,
    trustee_token_id: str,
    share: str,
    request_digest: str,
    now: datetime,
) -> int:
    """Record one trustee's approval; returns how many approvals the request now has."""
    if req.status != "pending":
        raise OpeningRefused(f"request {req.id} is {req.status}", 409)
    warrants.require_active(w, warrant_key, now)
    if request_digest != digest(req):
        raise OpeningRefused(
            "this approval was made for another request (its digest does not match)", 409
        )
    if trustee_token_id == req.requester_token_id or trustee.casefold() == req.requester.casefold():
        raise OpeningRefused("the requester cannot approve their own request")
    have = approvals(s, req)
    if any(a.trustee_token_id == trustee_token_id for a in have):
        raise OpeningRefused(f"trustee {trustee} has already approved this request", 409)
    try:
        index = keystore.check_share(share)
    except KeyStoreError as exc:
        raise OpeningRefused(str(exc), 422) from exc
    if any(a.share_index == index for a in have):
        raise OpeningRefused(f"share {index} was already submitted for this request", 409)
    sealed = SHARE_SUITE.encrypt(
        share.strip().encode(),
        x25519.X25519PublicKey.from_public_bytes(req.public_key),
        info=_approval_aad(req.id, trustee_token_id, index, request_digest),
    )
    s.add(
        Approval(
            request_id=req.id,
            trustee_token_id=trustee_token_id,
            trustee=trustee,
            share_index=index,
            sealed_share=sealed,
            created=now,
        )
    )
    s.flush()
    return len(have) + 1


def close(s: Session, req: OpeningRequest, status: str) -> None:
    """End a request (released or closed) and wipe the sealed shares it gathered."""
    req.status = status
    for a in approvals(s, req):
        a.sealed_share = None


def release(
    s: Session,
    req: OpeningRequest,
    w: Warrant,
    warrant_key: ed25519.Ed25519PublicKey,
    keystore: KeyStore,
    *,
    token_id: str,
    fetch_secret: str,
    required: int,
    now: datetime,
) -> tuple[list[dict], dict[str, str]]:
    """Open the request's records -> (released crops, {record id: why not released})."""
    if req.requester_token_id != token_id:
        raise OpeningRefused("only the requester can fetch a request's crops")
    if req.status == "released":
        raise OpeningRefused(f"request {req.id} was already released (crops go out once)", 410)
    if req.status != "pending":
        raise OpeningRefused(f"request {req.id} is {req.status}", 409)
    warrants.require_active(w, warrant_key, now)
    have = approvals(s, req)
    if len(have) < required:
        raise OpeningRefused(f"{len(have)} of {required} trustee approvals so far", 409)
    try:
        key = x25519.X25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(fetch_secret))
    except (ValueError, TypeError) as exc:
        raise OpeningRefused("malformed fetch secret", 422) from exc
    if key.public_key().public_bytes_raw() != req.public_key:
        raise OpeningRefused("this fetch secret is not the one issued with the request")
    req_digest = digest(req)
    try:
        shares = [
            SHARE_SUITE.decrypt(
                a.sealed_share or b"",
                key,
                info=_approval_aad(req.id, a.trustee_token_id, a.share_index, req_digest),
            ).decode()
            for a in have
        ]
    except Exception as exc:  # any HPKE failure: the approval was not made for this request
        raise OpeningRefused("an approval on this request was not made for it", 409) from exc
    try:
        master = keystore.master_from(shares)
    except KeyStoreError as exc:
        raise OpeningRefused(f"cannot rebuild the master key: {exc}", 409) from exc

    ids = record_ids(req)
    rows = {r.id: r for r in warrants.scoped_records(s, w, ids)}
    if s.get_bind().dialect.name == "postgresql" and rows:  # the sweeper skips locked rows
        s.execute(
            select(SealedRecordRow.id).where(SealedRecordRow.id.in_(list(rows))).with_for_update()
        ).all()
    released, withheld = [], {}
    try:
        for rid in ids:
            row = rows.get(rid)
            if row is None:
                withheld[rid] = "erased or no longer in the warrant's scope"
                continue
            if as_utc(row.expires) <= now and not row.legal_hold:
                withheld[rid] = "past its retention period"
                continue
            try:
                priv = keystore.epoch_private_key(master, row.epoch_id)
                crop, meta, clip = crypto.open_all(sealed_from_row(row), priv)
            except (KeyStoreError, crypto.IntegrityError) as exc:
                withheld[rid] = f"cannot be opened: {exc}"
                continue
            released.append(
                {
                    "record_id": rid,
                    "camera_id": row.camera_id,
                    "best_time": as_utc(row.best_time),
                    "quality": row.quality,
                    "ciphertext_sha256": row.ciphertext_sha256,
                    "jpeg": crop,
                    "clip": clip,
                    "meta": meta,
                }
            )
    finally:
        del master  # the master key lives only for this call
    close(s, req, "released")
    req.released_at = now
    req.released_count = len(released)
    return released, withheld
