"""POST /ingest: sealed records only, idempotent, bounded, and all-or-nothing per batch."""

from __future__ import annotations

import base64
from datetime import timedelta

import cv2
import numpy as np
from sqlalchemy import func, select

from vault.models import SealedRecordRow


def _count(api) -> int:
    with api.ctx.factory() as s:
        return s.scalar(select(func.count()).select_from(SealedRecordRow))


def _batch(api, n=3, camera="cam-1"):
    return [api.seal(camera, api.t0 + timedelta(minutes=5 + i), track=i)[0] for i in range(n)]


def test_retry_returns_the_same_answer_and_stores_once(api):
    recs = _batch(api)
    first = api.ingest("cam-1", recs)
    again = api.ingest("cam-1", recs)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"stored": [r["record_id"] for r in recs]}
    assert _count(api) == 3
    with api.ctx.factory() as s:
        row = s.get(SealedRecordRow, recs[0]["record_id"])
        assert base64.b64decode(recs[0]["ciphertext"]) == row.ciphertext
        assert row.expires == row.best_time + timedelta(hours=72) or row.expires.replace(
            tzinfo=None
        ) == (row.best_time + timedelta(hours=72)).replace(tzinfo=None)
    assert api.audit_actions().count("ingest") == 2


def test_same_id_other_content_is_a_conflict_and_the_batch_is_refused(api):
    recs = _batch(api, 2)
    assert api.ingest("cam-1", recs[:1]).status_code == 200
    forged = dict(recs[0], ciphertext=_batch(api, 1)[0]["ciphertext"])
    r = api.ingest("cam-1", [recs[1], forged])
    assert r.status_code == 409
    assert _count(api) == 1  # recs[1] was not stored either: one transaction per batch


def test_images_are_refused_in_any_form(api):
    img = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    r = api.client.post(
        "/ingest", content=jpeg, headers={**api.h("cam-1"), "Content-Type": "image/jpeg"}
    )
    assert r.status_code == 415
    r = api.client.post(
        "/ingest", content=jpeg, headers={**api.h("cam-1"), "Content-Type": "application/json"}
    )
    assert r.status_code == 400  # not JSON
    for magic in (jpeg, cv2.imencode(".png", img)[1].tobytes()):
        rec = dict(_batch(api, 1)[0], ciphertext=base64.b64encode(magic).decode())
        r = api.ingest("cam-1", [rec])
        assert r.status_code == 422 and "plaintext image" in r.json()["detail"]
    assert _count(api) == 0


def test_malformed_records_get_clear_4xx(api):
    good = _batch(api, 1)[0]
    bad = {
        "unknown epoch": dict(good, epoch_id="19990101T0000Z"),
        "outside its epoch": dict(good, best_time=(api.t0 + timedelta(days=30)).isoformat()),
        "naive time": dict(good, best_time=good["best_time"][:19]),
        "bad base64": dict(good, nonce="***"),
        "short nonce": dict(good, nonce=base64.b64encode(b"123").decode()),
        "short sealed key": dict(good, sealed_key=base64.b64encode(b"k" * 10).decode()),
        "suite": dict(good, suite="rot13"),
        "extra field": dict(good, plaintext="x"),
        "not a uuid": dict(good, record_id="../../etc/passwd"),
        "nan quality": dict(good, quality="NaN"),
        "order of times": dict(good, first_seen=(api.t0 + timedelta(hours=2)).isoformat()),
    }
    for why, rec in bad.items():
        r = api.ingest("cam-1", [rec])
        assert r.status_code == 422, (why, r.status_code, r.text)
    assert api.call("cam-1", "POST", "/ingest", json={"records": []}).status_code == 422
    assert api.call("cam-1", "POST", "/ingest", json=[good]).status_code == 422
    assert _count(api) == 0


def test_cameras_ingest_only_their_own_records(api):
    r = api.ingest("cam-2", _batch(api, 1, camera="cam-1"))
    assert r.status_code == 403 and api.audit_actions()[-1] == "refused"
    assert _count(api) == 0


def test_size_limits(api):
    api.ctx.max_body_bytes = 4096
    r = api.ingest("cam-1", _batch(api, 10))
    assert r.status_code == 413
    r = api.client.post(  # no content-length: counted while reading
        "/ingest",
        content=iter([b'{"records": [', b" " * 5000, b"]}"]),
        headers={**api.h("cam-1"), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    api.ctx.max_body_bytes = 32 * 1024 * 1024
    api.ctx.max_records_per_ingest = 2
    assert api.ingest("cam-1", _batch(api, 3)).status_code == 413
    assert _count(api) == 0
