"""The opening story through the API, on SQLite and PostgreSQL: ingest, warrant, request,
two trustee approvals, one release of exactly the sealed bytes; and every refusal."""

from __future__ import annotations

import base64
from datetime import timedelta

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
    assert api.approve("Trustee A", rid, api.shares[0]).status_code == 200
    assert api.release(rid, secret).status_code == 409
    assert api.approve("Trustee C", rid, api.shares[2]).status_code == 200

    out = api.release(rid, secret)
    assert out.status_code == 200, out.text
    body = out.json()
    assert sorted(c["record_id"] for c in body["released"]) == sorted(want)
    for c in body["released"]:
        assert base64.b64decode(c["jpeg"]) == crops[c["record_id"]]
    assert body["withheld"] == {}
    again = api.release(rid, secret)
    assert again.status_code == 410

    actions = api.audit_actions()
    for a in ("ingest", "warrant.issue", "warrant.list", "request.create", "request.release"):
        assert a in actions
    assert actions.count("request.approve") == 2
    assert audit.verify(api.ctx.factory).ok
    assert other  # the other camera's record exists but was never listed
