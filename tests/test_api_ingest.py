"""POST /ingest: sealed records only, idempotent, bounded, and all-or-nothing per batch."""

from __future__ import annotations

import base64
from datetime import timedelta

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from escrow.canonical import as_utc
from vault import audit, store
from vault.models import AuditEntry, ErasedRecord, SealedRecordRow
from vault.retention import sweep


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
    assert first.json() == again.json() == {"stored": [r["record_id"] for r in recs], "erased": []}
    assert _count(api) == 3
    with api.ctx.factory() as s:
        row = s.get(SealedRecordRow, ("cam-1", recs[0]["record_id"]))
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
    assert r.status_code == 422  # not JSON (its bytes are not UTF-8): invalid input, declared
    color = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    files = [jpeg] + [cv2.imencode(ext, color)[1].tobytes() for ext in (".png", ".bmp", ".tiff")]
    files.append(cv2.imencode(".webp", color)[1].tobytes())
    for magic in files:
        rec = dict(_batch(api, 1)[0], ciphertext=base64.b64encode(magic).decode())
        r = api.ingest("cam-1", [rec])
        assert r.status_code == 422 and "plaintext image" in r.json()["detail"], magic[:12]
    assert _count(api) == 0


def test_a_ciphertext_that_begins_like_an_image_by_chance_is_stored():
    """Ciphertext is random: it begins with "BM" once in 65,536 records, with "RIFF" once in
    2^32. Such a record is a sealed record, not an image, and must not be refused for good
    (it would stay in the camera's outbox forever)."""
    from vault.api.routers.ingest import looks_like_an_image

    rng = np.random.default_rng(1)
    for prefix in (b"BM", b"RIFF", b"GIF8", b"\x89PNG"):
        for _ in range(200):
            data = prefix + rng.bytes(int(rng.integers(15, 400)))
            assert not looks_like_an_image(data), prefix
    assert not any(looks_like_an_image(rng.bytes(64)) for _ in range(20000))


def test_malformed_records_get_clear_4xx(api):
    """Each case is refused for its own reason (asserted), by the schema or by the check
    that ingest makes against the epoch: not merely by some 422."""
    good = _batch(api, 1)[0]
    epoch = good["epoch_id"]
    schema = "body.records.0."
    bad = {  # why: (the record, what the one-line detail must say)
        "unknown epoch": (dict(good, epoch_id="19990101T0000Z"), "unknown key epoch 1999"),
        "unknown camera epoch": (
            dict(good, epoch_id="cam-1@19990101T0000Z"),
            "unknown key epoch cam-1@19990101T0000Z",
        ),
        "another camera's epoch": (
            dict(good, epoch_id=epoch.replace("cam-1", "cam-2")),
            "belongs to camera cam-2",
        ),
        "another key": (dict(good, epoch_key_sha256="0" * 64), "sealed to another key"),
        "no key digest": (
            {k: v for k, v in good.items() if k != "epoch_key_sha256"},
            schema + "epoch_key_sha256: Field required",
        ),
        "outside its epoch": (
            dict(good, best_time=(api.t0 + timedelta(days=30)).isoformat()),
            f"best_time lies outside key epoch {epoch}",
        ),
        "naive time": (
            dict(good, best_time=good["best_time"][:19]),
            schema + "best_time: Input should have timezone info",
        ),
        "bad base64": (dict(good, nonce="***"), schema + "nonce: Value error, not valid base64"),
        "short nonce": (
            dict(good, nonce=base64.b64encode(b"123").decode()),
            "nonce must be 12 bytes",
        ),
        "short sealed key": (
            dict(good, sealed_key=base64.b64encode(b"k" * 10).decode()),
            "sealed_key must be 80 bytes for x25519",
        ),
        "unknown suite": (dict(good, suite="rot13"), schema + "suite: Input should be"),
        "another suite than its epoch's": (
            dict(good, suite="mlkem768-x25519"),
            f"suite mlkem768-x25519 does not match epoch {epoch} (x25519)",
        ),
        "short ciphertext": (
            dict(good, ciphertext=base64.b64encode(b"c" * 16).decode()),
            "ciphertext must be 17..",
        ),
        "extra field": (
            dict(good, plaintext="x"),
            schema + "plaintext: Extra inputs are not permitted",
        ),
        "not a uuid": (
            dict(good, record_id="../../etc/passwd"),
            schema + "record_id: String should match pattern",
        ),
        "nan quality": (dict(good, quality="NaN"), schema + "quality: Input should be a finite"),
        "order of times": (
            dict(good, first_seen=(api.t0 + timedelta(hours=2)).isoformat()),
            "best_time must lie between first_seen and last_seen",
        ),
    }
    for why, (rec, reason) in bad.items():
        r = api.ingest("cam-1", [rec])
        assert r.status_code == 422, (why, r.status_code, r.text)
        assert reason in r.json()["detail"], (why, r.json()["detail"])
        if not reason.startswith(schema):  # a check of ingest's own, past the schema
            assert r.json()["detail"].startswith(f"record {good['record_id']}: "), why
    r = api.call("cam-1", "POST", "/ingest", json={"records": []})
    assert r.status_code == 422 and "body.records: List should have at least 1" in r.text
    r = api.call("cam-1", "POST", "/ingest", json=[good])
    assert r.status_code == 422 and "body: Input should be a valid dictionary" in r.text
    assert _count(api) == 0
    assert api.ingest("cam-1", [good]).status_code == 200  # the good one itself goes in


def _seal_as(api, camera, best_time, record_id, track=1):
    """A record of `camera` sealed under a given record id, as a camera makes it."""
    return api.seal(camera, best_time, track=track, record_id=record_id)


def test_record_ids_are_unique_per_camera(api):
    """Two cameras may store the same record id (no camera can squat an id another camera
    will use, the primary key is (camera, id)); within one camera the id stays idempotent
    and other content under it is a conflict."""
    t = api.t0 + timedelta(minutes=5)
    mine, my_crop = api.seal("cam-1", t, track=1)
    rid = mine["record_id"]
    theirs, their_crop = _seal_as(api, "cam-2", t, rid, track=2)
    assert theirs["ciphertext"] != mine["ciphertext"] and their_crop != my_crop
    try:
        assert api.ingest("cam-1", [mine]).status_code == 200
        r = api.ingest("cam-2", [theirs])
        assert r.status_code == 200, r.text
        assert r.json() == {"stored": [rid], "erased": []}
        assert api.ingest("cam-2", [theirs]).status_code == 200  # a retry: stored once
        assert _count(api) == 2
        # a camera re-sending its own id with other content is still refused, batch and all
        forged, _ = _seal_as(api, "cam-2", t + timedelta(seconds=1), rid, track=3)
        other = _batch(api, 1, camera="cam-2")[0]
        r = api.ingest("cam-2", [other, forged])
        assert r.status_code == 409 and "other content" in r.json()["detail"]
        r = api.ingest("cam-1", [dict(mine, ciphertext=theirs["ciphertext"])])
        assert r.status_code == 409
        assert _count(api) == 2
        with api.ctx.factory() as s:
            for cam, rec in (("cam-1", mine), ("cam-2", theirs)):
                row = s.get(SealedRecordRow, (cam, rid))
                assert row.ciphertext == base64.b64decode(rec["ciphertext"])
                assert row.epoch_id == rec["epoch_id"] and row.epoch_id.startswith(f"{cam}@")
        # max_records counts records, not ids: one id of two cameras is two records
        w1 = api.warrant(["cam-1", "cam-2"], api.t0, api.t0 + timedelta(hours=1), max_records=1)
        r = api.request(w1.json()["id"], [rid])
        assert r.status_code == 403 and "allows 1 record" in r.json()["detail"], r.text
        # both stay openable, each with its own camera's key
        wid = api.warrant(["cam-1", "cam-2"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]
        made = api.request(wid, [rid]).json()
        req = made["request"]["id"]
        for trustee in ("Trustee A", "Trustee B"):
            assert api.approve(trustee, req).status_code == 200
        out = api.release(req, made["fetch_secret"])
        assert out.status_code == 200, out.text
        got = {r["camera_id"]: base64.b64decode(r["jpeg"]) for r in out.json()["released"]}
        assert got == {"cam-1": my_crop, "cam-2": their_crop}
        # and no downgrade to the id-only schema drops one of them silently
        from vault.db import downgrade

        url = api.ctx.engine.url.render_as_string(hide_password=False)
        with pytest.raises(RuntimeError, match="cannot downgrade below 0004"):
            downgrade(url, "0003")
    finally:
        # Migration 0004's downgrade (the fixture's teardown) cannot restore a primary key on
        # the id alone while two cameras share an id: leave one of them.
        store.delete(api.ctx.factory, [rid], "cam-2")


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


# --- an erasure sticks (issue 26) ----------------------------------------------------------


def _sweep(api, keep_keys: bool = False):
    """The retention sweep at the API's clock. It shreds the emptied, ended epochs at once,
    or with `keep_keys` as `escrow serve` does: only once no record of theirs can still
    arrive (epoch end + the 72 h retention), so a re-sent record still passes its checks."""
    keep = (lambda camera: timedelta(hours=72)) if keep_keys else None
    return sweep(api.ctx.engine, api.keystore, api.clock(), keep_keys_for=keep)


def _tombstones(api) -> set[tuple[str, str]]:
    with api.ctx.factory() as s:
        return set(s.execute(select(ErasedRecord.camera_id, ErasedRecord.id)).all())


def _entries(api, action: str) -> list[dict]:
    import json

    with api.ctx.factory() as s:
        q = select(AuditEntry.detail).where(AuditEntry.action == action).order_by(AuditEntry.id)
        return [json.loads(d) for d in s.scalars(q)]


def test_a_record_resent_after_its_erasure_is_not_stored_again(api):
    """The camera's acknowledgement was lost; the sweep erased the record (and shredded its
    epoch's key); the camera re-sends it. The vault acknowledges it as erased, stores
    nothing, and says so in the trail; a new record in the same batch is stored."""
    recs = _batch(api, 2)
    assert api.ingest("cam-1", recs).status_code == 200
    api.clock.advance(hours=73)  # past the 72 h retention
    gone = sorted(r["record_id"] for r in recs)
    result = _sweep(api)
    assert sorted(result.erased) == gone and result.shredded  # the key too: day 1 is empty
    assert _tombstones(api) == {("cam-1", rid) for rid in gone}
    assert _count(api) == 0
    fresh = api.seal("cam-1", api.t0 + timedelta(hours=50))[0]  # day 3's epoch, unexpired
    for _ in range(2):  # and a retry of the re-send answers the same
        r = api.ingest("cam-1", [*recs, fresh])
        assert r.status_code == 200, r.text
        assert r.json() == {
            "stored": [*(x["record_id"] for x in recs), fresh["record_id"]],
            "erased": gone,
        }
        with api.ctx.factory() as s:
            assert set(s.scalars(select(SealedRecordRow.id))) == {fresh["record_id"]}
    again = _entries(api, "ingest.erased_again")
    assert len(again) == 2 and again[0]["records"] == gone and again[0]["camera"] == "cam-1"
    assert set(again[0]["erased"]) == set(gone)
    assert _entries(api, "ingest")[-2]["new"] == [fresh["record_id"]]
    assert _entries(api, "ingest")[-1] == {"new": [], "repeated": 1, "held": 0}
    assert _sweep(api).erased == []  # nothing came back to erase
    # a tombstone is per camera: another camera's record of the same id is its own record
    theirs = api.seal("cam-2", api.t0 + timedelta(hours=50), record_id=gone[0])[0]
    assert api.ingest("cam-2", [theirs]).json() == {"stored": [gone[0]], "erased": []}
    assert _count(api) == 2
    assert audit.verify(api.ctx.factory).ok


def test_the_outbox_drains_a_record_the_vault_erased_and_it_is_not_stored_again(api, tmp_path):
    """The attack through the camera's own Sender: the vault stored a batch but the answer
    was lost, so the outbox still holds it when the sweep erases it. The Sender's re-send is
    acknowledged as erased: the outbox deletes its copies and drains, the vault stores
    nothing, and the trail names each record's erasure and its re-send."""
    from escrow.outbox import Sender
    from escrow.records import create_schema, make_engine, put, register_epochs, session_factory
    from escrow.sealing import record_from_fields
    from tests.conftest import camera_client
    from vault.api.schemas import SealedRecordIn

    engine = make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    create_schema(engine)
    factory = session_factory(engine)
    with factory.begin() as s:
        register_epochs(s, api.keystore.certificates("cam-1"))
    wires = _batch(api, 3)
    for w in wires:
        sealed = record_from_fields(dict(SealedRecordIn.model_validate(w)))
        put(factory, [(sealed, w["track_id"], w["quality"])], api.t0, api.t0)
    assert api.ingest("cam-1", wires).status_code == 200  # the answer that never arrived
    api.clock.advance(hours=73)
    ids = sorted(w["record_id"] for w in wires)
    result = _sweep(api, keep_keys=True)
    assert sorted(result.erased) == ids and result.shredded == []  # the epoch would accept
    assert _tombstones(api) == {("cam-1", rid) for rid in ids}
    client = camera_client(api, "cam-1")
    try:
        sender = Sender(factory, client, batch=2)
        assert sender.drain_once() is True
        assert sender.report.sent == 3
        assert sorted(sender.report.erased) == ids and sender.report.refused == {}
        assert sender.waiting() == 0  # drained: nothing left to re-send
    finally:
        client.http.headers.pop("Authorization", None)
        engine.dispose()
    assert _count(api) == 0
    assert _sweep(api, keep_keys=True).erased == []
    erased = [rid for e in _entries(api, "sweep.erase") for rid in e["records"]]
    again = [rid for e in _entries(api, "ingest.erased_again") for rid in e["records"]]
    assert sorted(erased) == sorted(again) == ids  # erased once, re-sent once, each on record


def test_a_record_past_its_retention_on_arrival_is_stored_then_erased_by_the_next_sweep(api):
    """A camera offline for days delivers a record whose retention already ran out. Its
    epoch's key still exists (nothing emptied it), so it is accepted like any other (a
    holding warrant could still claim it on arrival) and the next sweep erases it; a re-send
    after that is answered as erased."""
    api.clock.advance(days=4)
    old = api.seal("cam-1", api.t0 + timedelta(minutes=5))[0]
    r = api.ingest("cam-1", [old])
    assert r.status_code == 200 and r.json()["erased"] == []
    with api.ctx.factory() as s:
        row = s.get(SealedRecordRow, ("cam-1", old["record_id"]))
        assert row is not None and as_utc(row.expires) <= api.clock()
    assert _sweep(api).erased == [old["record_id"]]
    assert api.ingest("cam-1", [old]).json() == {
        "stored": [old["record_id"]],
        "erased": [old["record_id"]],
    }
    assert _count(api) == 0
