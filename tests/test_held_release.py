"""A release's answer lost on its way (the vault died after the commit, the connection broke)
is not lost: the vault holds it sealed to the request's own key, which only the fetch secret
opens, until the requester confirms receipt or the policy's `redeliver_for` passes. A second
fetch answers the same crops from that copy, audited, without rebuilding any key; after the
receipt or the deadline it is 410. Whoever holds the vault's database, its key store or its
admin token reads nothing from the held copy."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from sqlalchemy import select

from escrow import sealing
from escrow.canonical import as_utc
from vault.models import Approval, OpeningRequest, SealedRecordRow
from vault.openings import _held_aad
from vault.retention import sweep


def _released(api, n: int = 2):
    """n records in one approved request: -> (request id, fetch secret, {record: crop})."""
    crops, recs = {}, []
    for i in range(n):
        rec, crop = api.seal("cam-1", api.t0 + timedelta(minutes=i + 1), track=i + 1)
        recs.append(rec)
        crops[rec["record_id"]] = crop
    assert api.ingest("cam-1", recs).status_code == 200
    w = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1))
    made = api.request(w.json()["id"], sorted(crops)).json()
    rid, secret = made["request"]["id"], made["fetch_secret"]
    for t in ("Trustee A", "Trustee B"):
        assert api.approve(t, rid).status_code == 200
    return rid, secret, crops


def _crops(body: dict) -> dict[str, bytes]:
    return {r["record_id"]: base64.b64decode(r["jpeg"]) for r in body["released"]}


def _row(api, rid: str) -> OpeningRequest:
    with api.ctx.factory() as s:
        return s.get(OpeningRequest, rid)


def test_a_lost_answer_is_fetched_again_then_gone_once_received(api):
    rid, secret, crops = _released(api)
    first = api.release(rid, secret)
    assert first.status_code == 200 and _crops(first.json()) == crops
    # the answer is lost on its way; the shares are wiped, so nothing could be opened again
    with api.ctx.factory() as s:
        assert list(s.scalars(select(Approval.sealed_share))) == [None, None]
    held = api.call("Det. Vance", "GET", f"/requests/{rid}").json()
    assert held["status"] == "released" and held["held_until"] is not None
    again = api.release(rid, secret)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()  # the same answer, byte for byte
    actions = api.audit_actions()
    assert actions.count("request.release") == 1 and actions.count("request.redeliver") == 1
    # another investigator cannot see it, the requester with a wrong secret gets nothing
    assert api.release(rid, secret, who="Det. Okafor").status_code == 404
    wrong = base64.urlsafe_b64encode(x25519.X25519PrivateKey.generate().private_bytes_raw())
    assert api.release(rid, wrong.decode()).status_code == 403
    assert api.call("Det. Okafor", "POST", f"/requests/{rid}/received").status_code == 404
    # received: the held copy is erased and the request is gone for good
    got = api.call("Det. Vance", "POST", f"/requests/{rid}/received")
    assert got.status_code == 200 and got.json()["held_until"] is None
    row = _row(api, rid)
    assert row.held_release is None and row.held_until is None
    gone = api.release(rid, secret)
    assert gone.status_code == 410 and "receipt was confirmed" in gone.json()["detail"]
    assert api.audit_actions().count("request.received") == 1
    assert api.call("Det. Vance", "GET", "/audit/verify").status_code == 403  # (auditor's)
    assert api.call("Auditor", "GET", "/audit/verify").json()["ok"]


def test_the_held_copy_opens_with_the_fetch_secret_only(api):
    """A database copy holds the sealed answer: neither the vault's release key nor the
    camera's epoch key nor any trustee key opens it; the fetch secret opens exactly the
    crops that were released, and the copy is bound to its request."""
    rid, secret, crops = _released(api)
    assert api.release(rid, secret).status_code == 200
    row = _row(api, rid)
    aad = _held_aad(row)  # the binding the vault uses
    not_the_secret = [
        api.keystore.release_key(),
        x25519.X25519PrivateKey.generate(),
    ]
    for key in not_the_secret:
        with pytest.raises(sealing.IntegrityError):
            sealing.open_as_requester(row.held_release, key, aad)
    requester = x25519.X25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(secret))
    with pytest.raises(sealing.IntegrityError):  # moved to another request: does not open
        sealing.open_as_requester(row.held_release, requester, aad.replace(rid.encode(), b"x"))
    opened = json.loads(sealing.open_as_requester(row.held_release, requester, aad))
    assert {r["record_id"]: base64.b64decode(r["jpeg"]) for r in opened["released"]} == crops
    for jpeg in crops.values():  # and no crop lies in the row in the clear
        assert jpeg not in row.held_release and base64.b64encode(jpeg) not in row.held_release


def test_the_held_copy_expires_and_the_sweep_erases_it(api):
    rid, secret, _ = _released(api, n=1)
    assert api.release(rid, secret).status_code == 200
    hold = api.ctx.policy.openings.redeliver_for
    assert _row(api, rid).held_until is not None
    api.clock.advance(seconds=hold.total_seconds() - 60)
    assert api.release(rid, secret).status_code == 200  # still within its time
    api.clock.advance(seconds=61)
    assert api.release(rid, secret).status_code == 410  # past it: gone, swept or not
    result = sweep(api.ctx.engine, api.keystore, api.clock())
    assert result.dropped_releases == [rid]
    assert _row(api, rid).held_release is None
    assert "request.held_expire" in api.audit_actions()
    again = sweep(api.ctx.engine, api.keystore, api.clock())
    assert again.dropped_releases == []


def test_the_held_copy_never_outlives_a_record_in_it(api):
    """A record not under legal hold that expires before `redeliver_for` ends its copy's
    hold too: the sweep that erases the record erases the held crop."""
    rid, secret, crops = _released(api, n=1)
    with api.ctx.factory.begin() as s:
        row = s.scalars(select(SealedRecordRow)).one()
        row.legal_hold, row.expires = False, api.t0 + timedelta(hours=2)
    assert api.release(rid, secret).status_code == 200
    assert as_utc(_row(api, rid).held_until) == api.t0 + timedelta(hours=2)
    api.clock.advance(hours=2)
    result = sweep(api.ctx.engine, api.keystore, api.clock())
    assert result.dropped_releases == [rid] and list(crops) == result.erased


def test_receipt_is_only_for_a_released_request(api):
    rid, secret, _ = _released(api, n=1)
    pending = api.call("Det. Vance", "POST", f"/requests/{rid}/received")
    assert pending.status_code == 409 and "nothing was released" in pending.json()["detail"]
    assert _row(api, rid).status == "pending"
