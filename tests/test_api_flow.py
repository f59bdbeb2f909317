"""The opening story through the API, on SQLite and PostgreSQL: ingest, warrant, request,
two trustee approvals, one release of exactly the sealed bytes; and every refusal."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from vault import audit


def _stored(api, n=3, camera="cam-1", start_minutes=10):
    recs, crops = [], {}
    for i in range(n):
        t = api.t0 + timedelta(minutes=start_minutes + i)
        rec, crop = api.seal(camera, t, track=i + 1)
        recs.append(rec)
        crops[rec["record_id"]] = crop
    r = api.ingest(camera, recs)
    assert r.status_code == 200, r.text
    return recs, crops


def test_full_opening_story(api):
    recs, crops = _stored(api, 3)
    other, _ = _stored(api, 1, camera="cam-2")
    w = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1))
    assert w.status_code == 201, w.text
    wid = w.json()["id"]

    listed = api.call("Det. Vance", "GET", f"/warrants/{wid}/records")
    assert listed.status_code == 200
    assert sorted(r["id"] for r in listed.json()) == sorted(r["record_id"] for r in recs)
    assert all("jpeg" not in r and r["legal_hold"] for r in listed.json())

    want = [recs[0]["record_id"], recs[2]["record_id"]]
    created = api.request(wid, want)
    assert created.status_code == 201, created.text
    rid, secret = created.json()["request"]["id"], created.json()["fetch_secret"]

    early = api.release(rid, secret)
    assert early.status_code == 409 and "0 of 2" in early.json()["detail"]
    assert api.approve("Trustee A", rid).status_code == 200
    assert api.release(rid, secret).status_code == 409
    assert api.approve("Trustee C", rid).status_code == 200

    out = api.release(rid, secret)
    assert out.status_code == 200, out.text
    body = out.json()
    assert sorted(c["record_id"] for c in body["released"]) == sorted(want)
    for c in body["released"]:
        assert base64.b64decode(c["jpeg"]) == crops[c["record_id"]]
    assert body["withheld"] == {}
    again = api.release(rid, secret)  # the answer again (it may have been lost), not opened
    assert again.status_code == 200 and again.json() == body
    assert api.call("Det. Vance", "POST", f"/requests/{rid}/received").status_code == 200
    assert api.release(rid, secret).status_code == 410  # received: gone

    actions = api.audit_actions()
    for a in ("ingest", "warrant.issue", "warrant.list", "request.create", "request.release"):
        assert a in actions
    assert actions.count("request.approve") == 2
    assert audit.verify(api.ctx.factory).ok
    assert other  # the other camera's record exists but was never listed


def _approved(api, wid, ids, trustees=("Trustee A", "Trustee B")):
    created = api.request(wid, ids)
    assert created.status_code == 201, created.text
    rid, secret = created.json()["request"]["id"], created.json()["fetch_secret"]
    for t in trustees:
        assert api.approve(t, rid).status_code == 200
    return rid, secret


def test_out_of_scope_records_are_refused(api):
    recs, _ = _stored(api, 2)  # cam-1 at t0+10, t0+11 min
    late, _ = _stored(api, 1, start_minutes=90)  # cam-1, outside the window
    other, _ = _stored(api, 1, camera="cam-2")
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]
    listed = {r["id"] for r in api.call("Det. Vance", "GET", f"/warrants/{wid}/records").json()}
    assert listed == {r["record_id"] for r in recs}
    for bad in (late[0], other[0]):
        r = api.request(wid, [recs[0]["record_id"], bad["record_id"]])
        assert r.status_code == 403 and bad["record_id"] in r.json()["detail"]
    assert api.request(wid, ["00000000-0000-4000-8000-000000000000"]).status_code == 403
    assert "request.create" not in api.audit_actions()
    assert api.audit_actions().count("refused") == 3


def test_expired_and_revoked_warrants_release_nothing(api):
    recs, _ = _stored(api, 2)
    ids = [r["record_id"] for r in recs]
    window = (api.t0, api.t0 + timedelta(hours=1))
    # expired between approval and fetch
    w1 = api.warrant(["cam-1"], *window, not_after=api.t0 + timedelta(hours=2)).json()["id"]
    rid1, secret1 = _approved(api, w1, ids[:1])
    # revoked between approval and fetch
    w2 = api.warrant(["cam-1"], *window).json()["id"]
    rid2, secret2 = _approved(api, w2, ids[1:])
    revoked = api.call("Judge Ito", "POST", f"/warrants/{w2}/revoke", json={"reason": "quashed"})
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    r2 = api.release(rid2, secret2)
    assert r2.status_code == 409 and "closed" in r2.json()["detail"]
    api.clock.advance(hours=3)
    r1 = api.release(rid1, secret1)
    assert r1.status_code == 403 and "expired" in r1.json()["detail"]
    assert api.call("Det. Vance", "GET", f"/warrants/{w1}/records").status_code == 403
    assert api.request(w2, ids[:1]).status_code == 403
    assert "request.release" not in api.audit_actions()
    # a warrant not yet valid is not usable either
    w3 = api.warrant(["cam-1"], *window, not_before=api.clock() + timedelta(days=1)).json()["id"]
    assert api.request(w3, ids[:1]).status_code == 403


def test_approval_rules(api):
    from escrow.sealing import KeyStoreError
    from escrow.trustee import ReviewRejected, approval_body
    from tests.conftest import PASSPHRASE

    recs, _ = _stored(api, 2)
    ids = [r["record_id"] for r in recs]
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]
    created = api.request(wid, ids[:1]).json()
    rid, secret = created["request"]["id"], created["fetch_secret"]
    other = api.request(wid, ids[1:]).json()["request"]

    # the requester cannot review or approve: not with their own token
    assert api.call("Det. Vance", "GET", f"/requests/{rid}/review").status_code == 403
    body_a = api.approval("Trustee A", rid)
    assert api.approve("Det. Vance", rid, body_a).status_code == 403
    # nor as a trustee of that name
    _, tok = api.make_token("trustee", "det. vance", trustee_index=3)
    api.tokens["det. vance"] = tok
    selfie = api.approve("det. vance", rid, api.approval("det. vance", rid, key_of="Trustee C"))
    assert selfie.status_code == 403 and "own request" in selfie.json()["detail"]
    # another trustee's key file, a wrong passphrase: the client refuses before unsealing
    review = api.call("Trustee A", "GET", f"/requests/{rid}/review").json()
    with pytest.raises(ReviewRejected, match="trustee 1, your key file is trustee 2"):
        approval_body(review, api.trustee_keys["Trustee B"], PASSPHRASE)
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        approval_body(review, api.trustee_keys["Trustee A"], "guess")
    # an approval made for another request (its digest) is not accepted here
    replay = api.approve("Trustee A", rid, {**body_a, "request_digest": other["digest"]})
    assert replay.status_code == 409 and "another request" in replay.json()["detail"]
    # an approval that leaves out a key the request needs
    assert api.approve("Trustee A", rid, {**body_a, "shares": {}}).status_code == 409
    # one approval per trustee token, one per trustee key
    assert api.approve("Trustee A", rid, body_a).status_code == 200
    assert api.approve("Trustee A", rid, body_a).status_code == 409
    _, tok = api.make_token("trustee", "Trustee A bis", trustee_index=1)
    api.tokens["Trustee A bis"] = tok
    assert api.approve("Trustee A bis", rid, body_a).status_code == 409
    assert api.release(rid, secret).status_code == 409  # still 1 of 2
    # only the requester, with the request's own secret, can fetch
    assert api.approve("Trustee B", rid).status_code == 200
    assert api.release(rid, secret, who="Det. Okafor").status_code == 404
    other_secret = api.request(wid, ids[:1]).json()["fetch_secret"]
    assert api.release(rid, other_secret).status_code == 403
    assert api.release(rid, "!!!").status_code == 422
    assert api.release(rid, secret).status_code == 200
    assert api.approve("Trustee C", rid, body_a).status_code == 409  # released


def test_an_approval_row_copied_to_another_request_does_not_open(api):
    from sqlalchemy import select

    from vault.models import Approval

    recs, _ = _stored(api, 2)
    ids = [r["record_id"] for r in recs]
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]
    rid_a, _ = _approved(api, wid, ids[:1])
    created = api.request(wid, ids[1:]).json()
    rid_b, secret_b = created["request"]["id"], created["fetch_secret"]
    with api.ctx.factory.begin() as s:  # an insider copies A's sealed approvals onto B
        for a in s.scalars(select(Approval).where(Approval.request_id == rid_a)).all():
            s.add(
                Approval(
                    request_id=rid_b,
                    trustee_token_id=a.trustee_token_id,
                    trustee=a.trustee,
                    share_index=a.share_index,
                    sealed_share=a.sealed_share,
                    created=a.created,
                )
            )
    r = api.release(rid_b, secret_b)
    assert r.status_code == 409 and "not spent" in r.json()["detail"]
    assert api.call("Det. Vance", "GET", f"/requests/{rid_b}").json()["status"] == "pending"


def test_max_records_and_edited_warrant(api):
    from vault.models import Warrant

    recs, _ = _stored(api, 3)
    ids = [r["record_id"] for r in recs]
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1), max_records=2).json()["id"]
    assert api.request(wid, ids).status_code == 403
    assert api.request(wid, ids[:2]).status_code == 201
    assert api.request(wid, ids[2:]).status_code == 403  # 2 already asked for
    with api.ctx.factory.begin() as s:  # widen the scope behind the judge's back
        s.get(Warrant, wid).cameras = '["cam-1", "cam-2"]'
    r = api.call("Det. Vance", "GET", f"/warrants/{wid}/records")
    assert r.status_code == 403 and "altered" in r.json()["detail"]


def test_holds_follow_warrants_and_the_sweeper_obeys(api):
    from vault.models import SealedRecordRow
    from vault.retention import sweep

    inside, _ = _stored(api, 2)
    outside, _ = _stored(api, 2, camera="cam-2")
    wid = api.warrant(
        ["cam-1"], api.t0, api.t0 + timedelta(hours=1), not_after=api.t0 + timedelta(days=5)
    ).json()["id"]
    after = api.ctx.policy.legal_hold.after_warrant

    def present():
        with api.ctx.factory() as s:
            return {r.id: r.legal_hold for r in s.query(SealedRecordRow)}

    assert all(present()[r["record_id"]] for r in inside)
    api.clock.advance(days=4)  # past the 72 h retention, warrant still active
    sweep(api.ctx.engine, api.keystore, api.clock(), after_warrant=after)
    left = present()
    assert set(left) == {r["record_id"] for r in inside}
    # late records of the warrant's scope are held on arrival
    late, _ = _stored(api, 1, start_minutes=30)
    assert present()[late[0]["record_id"]] is True
    api.call("Judge Ito", "POST", f"/warrants/{wid}/revoke", json={"reason": "case closed"})
    api.clock.advance(days=1)
    sweep(api.ctx.engine, api.keystore, api.clock(), after_warrant=after)
    assert set(present()) == {r["record_id"] for r in inside + late}  # grace period
    api.clock.t = api.clock() + after
    res = sweep(api.ctx.engine, api.keystore, api.clock(), after_warrant=after)
    assert res.holds_lifted == 3 and present() == {}


def test_auditor_sees_holds_and_detects_tampering(api):
    from sqlalchemy import select

    from vault.models import AuditEntry

    _stored(api, 2)
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]
    rep = api.call("Auditor", "GET", "/retention/report").json()
    assert [(h["warrant"], h["records_in_scope"]) for h in rep["warrant_holds"]] == [(wid, 2)]
    ok = api.call("Auditor", "GET", "/audit/verify").json()
    assert ok["ok"] and ok["entries"] == len(api.audit_actions())
    with api.ctx.factory.begin() as s:  # someone rewrites who issued the warrant
        e = s.scalars(select(AuditEntry).where(AuditEntry.action == "warrant.issue")).one()
        e.actor = "judge:Someone Else"
        n = e.id
    bad = api.call("Auditor", "GET", "/audit/verify").json()
    assert not bad["ok"] and bad["broken_at"] == n


def test_a_record_erased_before_the_release_is_withheld(api):
    from vault import store

    recs, crops = _stored(api, 2)
    ids = [r["record_id"] for r in recs]
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]
    rid, secret = _approved(api, wid, ids)
    store.delete(api.ctx.factory, ids[:1])  # e.g. erased by an erasure order meanwhile
    out = api.release(rid, secret).json()
    assert [c["record_id"] for c in out["released"]] == ids[1:]
    assert base64.b64decode(out["released"][0]["jpeg"]) == crops[ids[1]]
    assert list(out["withheld"]) == ids[:1] and "erased" in out["withheld"][ids[0]]
