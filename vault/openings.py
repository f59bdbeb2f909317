"""Opening requests: an investigator asks, k distinct trustees approve on their own machines,
and the requested crops are released once.

No master key exists. Each record is sealed to its (camera, epoch) key, whose private half
exists only as n shares, each sealed to one trustee's own key (vault.keys). To approve, a
trustee's client fetches its sealed shares of exactly the request's (camera, epoch) keys,
shows the warrant's case and legal basis, the reason, the requester and the records, unseals
the shares locally and seals each one twice: to the vault's release key (key store, never
the database) and to the request's own key (whose private half, the fetch secret, only the
requester holds), bound to the request's digest, the trustee and the epoch. So:
- a database copy with the fetch secret lacks the release key; with the key store it lacks
  the fetch secret; with one trustee's key it holds one share of each epoch: nothing opens;
- at release the vault rebuilds the request's epoch keys in memory, checks each against its
  certificate, opens only the requested records still in scope, stored and within retention
  (or held), forgets the keys and wipes the sealed shares.
A release that opens nothing is not spent: the request stays pending.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta
from itertools import combinations

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from escrow import sealing
from escrow.canonical import as_utc
from escrow.sealing import KeyStoreError, load_private, public_of, unb64
from escrow.trustee import approval_aad, digest_of
from escrow.trustee import share_digest as _share_digest
from vault import audit, warrants
from vault.keys import KeyStore, combine_secret
from vault.models import Approval, OpeningRequest, SealedRecordRow, Warrant
from vault.refusals import Refused
from vault.store import sealed_from_row

MAX_RECORDS_PER_REQUEST = 1000


class OpeningRefused(Refused):
    """The request cannot be made, approved or released (yet)."""


def record_ids(req: OpeningRequest) -> list[str]:
    return json.loads(req.record_ids)


def digest_fields(req: OpeningRequest) -> dict:
    return {
        "id": req.id,
        "warrant": req.warrant_id,
        "records": record_ids(req),
        "requester": req.requester_token_id,
        "reason": req.reason,
        "public_key": base64.b64encode(req.public_key).decode(),
        "created": as_utc(req.created).isoformat(timespec="microseconds"),
    }


def digest(req: OpeningRequest) -> str:
    return digest_of(digest_fields(req))


def _committed(s: Session, w: Warrant, exclude: str | None = None) -> int:
    """Records already asked for (pending) or released under this warrant. Counted in
    stored rows, not ids: ids are unique per camera, so one id may name a record of each
    camera the warrant covers."""
    reqs = s.scalars(
        select(OpeningRequest).where(
            OpeningRequest.warrant_id == w.id, OpeningRequest.status.in_(("pending", "released"))
        )
    )
    return sum(
        r.released_count if r.status == "released" else len(request_rows(s, r, w))
        for r in reqs
        if r.id != exclude
    )


def lock_warrant(s: Session, warrant_id: str) -> None:
    """Hold the warrant's row for the rest of the transaction: requests counted against its
    `max_records` are made (and released) one at a time, on both engines."""
    s.execute(update(Warrant).where(Warrant.id == warrant_id).values(id=Warrant.id))


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
    lock_warrant(s, w.id)
    s.refresh(w)
    warrants.require_active(w, warrant_key, now)
    ids = sorted(set(ids))
    if not ids:
        raise OpeningRefused("name at least one record to open", 422)
    if len(ids) > MAX_RECORDS_PER_REQUEST:
        raise OpeningRefused(f"at most {MAX_RECORDS_PER_REQUEST} records per request", 422)
    rows = warrants.scoped_records(s, w, ids)
    found = {r.id for r in rows}
    outside = [i for i in ids if i not in found]
    if outside:
        raise OpeningRefused(
            f"{len(outside)} record(s) are not stored within warrant {w.id}'s scope: "
            + ", ".join(outside[:5])
            + (" ..." if len(outside) > 5 else "")
        )
    if w.max_records is not None:
        committed = _committed(s, w)
        if committed + len(rows) > w.max_records:
            raise OpeningRefused(
                f"warrant {w.id} allows {w.max_records} record(s); "
                f"{committed} already requested or released"
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


def request_rows(s: Session, req: OpeningRequest, w: Warrant) -> list[SealedRecordRow]:
    """The request's records that are still stored within the warrant's scope."""
    return warrants.scoped_records(s, w, record_ids(req))


def needed_epochs(rows: list[SealedRecordRow]) -> list[str]:
    return sorted({r.epoch_id for r in rows})


def review(
    s: Session, req: OpeningRequest, w: Warrant, keystore: KeyStore, trustee_index: int | None
) -> dict:
    """What a trustee's client needs to decide and to approve: the records, and for each
    (camera, epoch) key they need, its certificate and this trustee's sealed share."""
    rows = request_rows(s, req, w)
    keys = []
    for epoch_id in needed_epochs(rows):
        try:
            cert = keystore.certificate(epoch_id)
            doc = keystore.shares(epoch_id)
        except KeyStoreError:
            continue  # shredded: nothing to approve for it
        idx = str(trustee_index)
        keys.append(
            {
                "certificate": asdict(cert),
                "sealed_share": doc["sealed_shares"].get(idx),
                "share_digest": doc["share_digests"].get(idx),
                "records": sum(r.epoch_id == epoch_id for r in rows),
            }
        )
    return {
        "rows": rows,
        "keys": keys,
        "digest_fields": digest_fields(req),
        "release_public_key": keystore.info()["release_public_key"],
        "authority_public_key": keystore.info()["signing_public_key"],
        "trustee_index": trustee_index,
    }


def approve(
    s: Session,
    req: OpeningRequest,
    w: Warrant,
    warrant_key: ed25519.Ed25519PublicKey,
    keystore: KeyStore,
    *,
    trustee: str,
    trustee_token_id: str,
    trustee_index: int | None,
    shares: dict[str, bytes],
    request_digest: str,
    now: datetime,
) -> int:
    """Record one trustee's approval (their shares of the request's epoch keys, sealed for
    the release); returns how many approvals the request now has."""
    if req.status != "pending":
        raise OpeningRefused(f"request {req.id} is {req.status}", 409)
    if keystore.info()["mode"] == "development":
        raise OpeningRefused(
            "a development authority's trustee keys sit beside its key store under a known "
            "passphrase: it opens nothing through the API (make a production authority)"
        )
    warrants.require_active(w, warrant_key, now)
    if request_digest != digest(req):
        raise OpeningRefused(
            "this approval was made for another request (its digest does not match)", 409
        )
    if trustee_token_id == req.requester_token_id or trustee.casefold() == req.requester.casefold():
        raise OpeningRefused("the requester cannot approve their own request")
    trustees = {t["index"] for t in keystore.info()["trustees"]}
    if trustee_index not in trustees:
        raise OpeningRefused("this trustee token speaks for no trustee key of the authority")
    have = approvals(s, req)
    if any(a.trustee_token_id == trustee_token_id for a in have):
        raise OpeningRefused(f"trustee {trustee} has already approved this request", 409)
    if any(a.share_index == trustee_index for a in have):
        raise OpeningRefused(f"trustee key {trustee_index} already approved this request", 409)
    need = set(needed_epochs(request_rows(s, req, w)))
    if set(shares) != need:
        raise OpeningRefused(
            f"an approval must carry exactly the request's {len(need)} epoch key share(s) "
            f"({', '.join(sorted(need)) or 'none'}): review the request again",
            409,
        )
    s.add(
        Approval(
            request_id=req.id,
            trustee_token_id=trustee_token_id,
            trustee=trustee,
            share_index=trustee_index,
            sealed_share=json.dumps(
                {e: base64.b64encode(b).decode() for e, b in shares.items()}
            ).encode(),
            created=now,
        )
    )
    s.flush()
    return len(have) + 1


def close(s: Session, req: OpeningRequest, status: str) -> None:
    """End a request (released, closed or expired) and wipe the sealed shares it gathered."""
    req.status = status
    for a in approvals(s, req):
        a.sealed_share = None


def _request_key(req: OpeningRequest, fetch_secret: str) -> x25519.X25519PrivateKey:
    try:
        key = x25519.X25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(fetch_secret))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise OpeningRefused("malformed fetch secret", 422) from exc
    if key.public_key().public_bytes_raw() != req.public_key:
        raise OpeningRefused("this fetch secret is not the one issued with the request")
    return key


def _rebuild_keys(
    req: OpeningRequest,
    have: list[Approval],
    epochs: list[str],
    keystore: KeyStore,
    request_key: x25519.X25519PrivateKey,
    k: int,
) -> tuple[dict, dict[str, str]]:
    """{epoch: private key} rebuilt in memory from k valid shares each, {epoch: why not}."""
    suite = keystore.info()["suite"]
    release_key = keystore.release_key()
    req_digest = digest(req)
    sealed = {a.share_index: json.loads(a.sealed_share or b"{}") for a in have}
    keys, missing = {}, {}
    for epoch_id in epochs:
        try:
            cert = keystore.certificate(epoch_id)
            digests = keystore.shares(epoch_id)["share_digests"]
        except KeyStoreError:
            missing[epoch_id] = "its key was destroyed"
            continue
        good = []
        for idx, blobs in sealed.items():
            if epoch_id not in blobs:
                continue
            try:
                share = sealing.open_share_for_release(
                    base64.b64decode(blobs[epoch_id]),
                    request_key,
                    release_key,
                    approval_aad(req.id, req_digest, idx, epoch_id),
                )
            except sealing.IntegrityError:
                continue
            if _share_digest(cert, idx, share) == digests.get(str(idx)):
                good.append((idx, share))
        want = unb64(cert.public_key)
        for subset in combinations(good, k):  # the first k good shares rebuild the key
            raw = combine_secret(list(subset))
            if public_of(suite, raw) == want:
                keys[epoch_id] = load_private(suite, raw)
                break
        else:
            missing[epoch_id] = f"{len(good)} valid share(s) of {k} needed"
    return keys, missing


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
    hold_for: timedelta = timedelta(hours=24),
) -> tuple[list[dict], dict[str, str]]:
    """Open the request's records -> (released crops, {record id: why not released}). The
    answer is held, sealed to the request's key, in the same transaction (see `redeliver`)."""
    if req.requester_token_id != token_id:
        raise OpeningRefused("only the requester can fetch a request's crops")
    if req.status == "released":
        raise OpeningRefused(f"request {req.id} was already released (crops go out once)", 410)
    if req.status != "pending":
        raise OpeningRefused(f"request {req.id} is {req.status}", 409)
    lock_warrant(s, w.id)
    warrants.require_active(w, warrant_key, now)
    have = approvals(s, req)
    if len(have) < required:
        raise OpeningRefused(f"{len(have)} of {required} trustee approvals so far", 409)
    key = _request_key(req, fetch_secret)
    ids = record_ids(req)
    rows = request_rows(s, req, w)
    if w.max_records is not None and _committed(s, w, exclude=req.id) + len(rows) > w.max_records:
        raise OpeningRefused(f"warrant {w.id} allows {w.max_records} record(s) in all", 409)
    if s.get_bind().dialect.name == "postgresql" and rows:  # the sweeper skips locked rows
        s.execute(
            select(SealedRecordRow.id)
            .where(
                SealedRecordRow.camera_id.in_({r.camera_id for r in rows}),
                SealedRecordRow.id.in_([r.id for r in rows]),
            )
            .with_for_update()
        ).all()
    keys, missing = _rebuild_keys(req, have, needed_epochs(rows), keystore, key, required)
    released, withheld = [], {}
    try:
        by_id: dict[str, list[SealedRecordRow]] = {}
        for r in rows:
            by_id.setdefault(r.id, []).append(r)
        for rid in ids:
            if rid not in by_id:
                withheld[rid] = "erased or no longer in the warrant's scope"
            for row in by_id.get(rid, []):
                if as_utc(row.expires) <= now and not row.legal_hold:
                    withheld[rid] = "past its retention period"
                    continue
                if row.epoch_id not in keys:
                    withheld[rid] = f"cannot be opened: {missing[row.epoch_id]}"
                    continue
                try:
                    crop, meta, clip = sealing.open_all(sealed_from_row(row), keys[row.epoch_id])
                except sealing.IntegrityError as exc:
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
        keys.clear()  # the rebuilt keys live only for this call
    if not released:
        raise OpeningRefused(
            "nothing could be opened ("
            + "; ".join(f"{r}: {why}" for r, why in list(withheld.items())[:3])
            + "); the request stays pending and is not spent",
            409,
        )
    close(s, req, "released")
    req.released_at = now
    req.released_count = len(released)
    ends = [as_utc(r.expires) for r in rows if not r.legal_hold]
    req.held_until = min([now + hold_for, *ends])
    req.held_release = sealing.seal_to_requester(
        _bundle(released, withheld), req.public_key, _held_aad(req)
    )
    return released, withheld


def _held_aad(req: OpeningRequest) -> bytes:
    return f"keyframe-escrow release|{req.id}|{digest(req)}".encode()


def _bundle(released: list[dict], withheld: dict[str, str]) -> bytes:
    b64 = base64.b64encode
    return json.dumps(
        {
            "released": [
                {
                    **r,
                    "best_time": r["best_time"].isoformat(),
                    "jpeg": b64(r["jpeg"]).decode(),
                    "clip": [b64(f).decode() for f in r["clip"]],
                }
                for r in released
            ],
            "withheld": withheld,
        }
    ).encode()


def _unbundle(data: bytes) -> tuple[list[dict], dict[str, str]]:
    doc = json.loads(data)
    released = [
        {
            **r,
            "best_time": datetime.fromisoformat(r["best_time"]),
            "jpeg": base64.b64decode(r["jpeg"]),
            "clip": [base64.b64decode(f) for f in r["clip"]],
        }
        for r in doc["released"]
    ]
    return released, doc["withheld"]


def redeliver(
    req: OpeningRequest, *, token_id: str, fetch_secret: str, now: datetime
) -> tuple[list[dict], dict[str, str]]:
    """The same answer again, for a released request whose crops did not reach the
    requester (the vault died after the commit, the connection broke): opened from the held
    copy with the fetch secret, not from the records; no key is rebuilt, nothing new opens."""
    if req.requester_token_id != token_id:
        raise OpeningRefused("only the requester can fetch a request's crops")
    if req.held_release is None or req.held_until is None or as_utc(req.held_until) <= now:
        raise OpeningRefused(
            f"request {req.id} was already released (crops go out once"
            + (", and their receipt was confirmed)" if req.held_until is None else ")"),
            410,
        )
    key = _request_key(req, fetch_secret)
    try:
        return _unbundle(sealing.open_as_requester(req.held_release, key, _held_aad(req)))
    except sealing.IntegrityError as exc:  # a row edited behind the vault's back
        raise OpeningRefused(f"the held answer of request {req.id} does not open", 409) from exc


def confirm_received(req: OpeningRequest, *, token_id: str) -> bool:
    """The requester has the crops: the held answer is wiped. False if none was held."""
    if req.requester_token_id != token_id:
        raise OpeningRefused("only the requester can confirm a request's crops")
    if req.status != "released":
        raise OpeningRefused(f"request {req.id} is {req.status}: nothing was released", 409)
    held = req.held_release is not None
    req.held_release, req.held_until = None, None
    return held


def drop_held(s: Session, now: datetime) -> list[str]:
    """Wipe the answers held past their time (nobody confirmed receipt). Returns the ids."""
    due = s.scalars(
        select(OpeningRequest).where(
            OpeningRequest.held_release.is_not(None), OpeningRequest.held_until <= now
        )
    ).all()
    for req in due:
        req.held_release = None
    if due:
        ids = [r.id for r in due]
        audit.append(s, "retention-sweeper", "request.held_expire", {"requests": ids}, now)
    return [r.id for r in due]


def expire_stale(s: Session, now: datetime, unfetched_after: timedelta) -> list[str]:
    """Close pending requests whose warrant ended or that waited longer than the policy
    allows, wiping the sealed shares they gathered. Returns their ids."""
    ended = []
    for req in s.scalars(select(OpeningRequest).where(OpeningRequest.status == "pending")):
        w = s.get(Warrant, req.warrant_id)
        stale = as_utc(req.created) + unfetched_after <= now
        if stale or w is None or warrants.state(w, now) != "active":
            close(s, req, "expired")
            ended.append(req.id)
    if ended:
        audit.append(s, "retention-sweeper", "request.expire", {"requests": ended}, now)
    return ended
