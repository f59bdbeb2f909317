"""Claims of docs/keys.md and docs/api.md run as attacks, on SQLite and PostgreSQL: the audit
write fails (the action must not happen), sealed shares after revocation and expiry (rows and
SQLite's files), a development authority, k below the split threshold, an outbox record refused
for good, and which endpoints ever return crop or ciphertext bytes."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

from sqlalchemy import event, select

from vault.models import Approval, AuditEntry, OpeningRequest, SealedRecordRow


def _stored(api, n, camera="cam-1", minutes=10, crops=None):
    recs = []
    for i in range(n):
        rec, crop = api.seal(camera, api.t0 + timedelta(minutes=minutes + i), track=i + 1)
        recs.append(rec)
        if crops is not None:
            crops.append(crop)
    assert api.ingest(camera, recs).status_code == 200
    return recs


def _approved(api, ids, trustees=("Trustee A", "Trustee B"), **kw):
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1), **kw).json()["id"]
    created = api.request(wid, ids)
    assert created.status_code == 201, created.text
    rid, secret = created.json()["request"]["id"], created.json()["fetch_secret"]
    for t in trustees:
        assert api.approve(t, rid).status_code == 200
    return wid, rid, secret


class AuditWriteFails:
    """Every INSERT into the audit trail fails as a full or broken disk makes it fail: the
    driver's own OperationalError, raised where the statement would run."""

    def __init__(self, engine):
        self.engine, self.failed = engine, 0
        self.dbapi_error = engine.dialect.dbapi.OperationalError

    def _hook(self, conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_LOG"):
            self.failed += 1
            raise self.dbapi_error("disk I/O error (injected)")

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._hook)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._hook)


def test_a_failed_audit_write_stops_the_ingest_and_the_release(api):
    engine = api.ctx.engine
    entries = len(api.audit_actions())
    rec, _ = api.seal("cam-1", api.t0 + timedelta(minutes=5))
    with AuditWriteFails(engine) as fault:
        r = api.ingest("cam-1", [rec])
    assert fault.failed >= 1  # the fault did fire
    assert r.status_code == 503 and r.headers.get("Retry-After"), (r.status_code, r.text)
    assert "traceback" not in r.text.lower() and "\n" not in r.json()["detail"]
    with api.ctx.factory() as s:
        assert s.scalars(select(SealedRecordRow.id)).all() == []  # not stored unrecorded
    assert len(api.audit_actions()) == entries
    # the cause gone, the same batch goes in
    assert api.ingest("cam-1", [rec]).status_code == 200

    _, rid, secret = _approved(api, [rec["record_id"]])
    actions = api.audit_actions()
    with AuditWriteFails(engine) as fault:
        r = api.release(rid, secret)
    assert fault.failed >= 1
    assert r.status_code == 503 and r.headers.get("Retry-After"), (r.status_code, r.text)
    assert "jpeg" not in r.text and "released" not in r.json()
    assert api.audit_actions() == actions  # no release entry, no refusal entry either
    with api.ctx.factory() as s:
        req = s.get(OpeningRequest, rid)
        assert req.status == "pending" and req.released_at is None
        shares = s.scalars(select(Approval.sealed_share).where(Approval.request_id == rid))
        assert all(shares.all())  # not wiped: the release did not happen
    out = api.release(rid, secret)  # releasable once the trail can be written again
    assert out.status_code == 200 and len(out.json()["released"]) == 1
    assert api.audit_actions()[-1] == "request.release"
    assert api.call("Det. Vance", "POST", f"/requests/{rid}/received").status_code == 200
    assert api.release(rid, secret).status_code == 410


def test_an_approval_whose_audit_entry_fails_is_not_counted(api):
    ids = [r["record_id"] for r in _stored(api, 1)]
    _, rid, secret = _approved(api, ids, trustees=("Trustee A",))
    body = api.approval("Trustee B", rid)
    with AuditWriteFails(api.ctx.engine):
        assert api.approve("Trustee B", rid, body).status_code == 503
    assert api.release(rid, secret).status_code == 409  # still 1 of 2
    assert api.approve("Trustee B", rid, body).status_code == 200
    assert api.release(rid, secret).status_code == 200


def _sqlite_files(root) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.glob("vault.db*")))


def test_sealed_shares_leave_the_rows_and_sqlite_files_at_revocation_and_expiry(tmp_path):
    """Rows, the database file and its WAL are scanned for the base64 of every sealed share
    an approval stored (the form it is stored in), before (the scan sees them) and after."""
    from tests.conftest import ApiVault
    from vault.db import upgrade
    from vault.retention import sweep

    url = f"sqlite:///{tmp_path / 'vault.db'}"
    upgrade(url)
    api = ApiVault(url, tmp_path)
    try:
        recs = _stored(api, 3)
        window = (api.t0, api.t0 + timedelta(hours=1))
        plans = {
            "revoked": {},
            "expired": {"not_after": api.t0 + timedelta(hours=2)},
            "unfetched": {"not_after": api.t0 + timedelta(days=30)},
        }
        reqs, blobs = {}, {}
        for (name, kw), rec in zip(plans.items(), recs, strict=True):
            wid = api.warrant(["cam-1"], *window, **kw).json()["id"]
            rid = api.request(wid, [rec["record_id"]]).json()["request"]["id"]
            assert api.approve("Trustee A", rid).status_code == 200
            assert api.approve("Trustee C", rid).status_code == 200
            reqs[name] = (wid, rid)
            with api.ctx.factory() as s:
                rows = s.scalars(select(Approval.sealed_share).where(Approval.request_id == rid))
                blobs[name] = [
                    b.encode() for raw in rows for b in json.loads(raw).values() if len(b) > 40
                ]
            assert len(blobs[name]) == 2

        def seen(name) -> list[bool]:
            disk = _sqlite_files(tmp_path)
            return [b in disk for b in blobs[name]]

        assert all(seen("revoked"))  # the scan can see them
        wid, rid = reqs["revoked"]
        r = api.call("Judge Ito", "POST", f"/warrants/{wid}/revoke", json={"reason": "quashed"})
        assert r.status_code == 200, r.text
        assert not any(seen("revoked")), "revocation left sealed shares on disk"
        assert any(seen("expired")) and any(seen("unfetched"))

        api.clock.advance(hours=3)  # the warrant of "expired" ended
        sweep(api.ctx.engine, api.keystore, api.clock(), unfetched_after=timedelta(days=7))
        assert not any(seen("expired")), "an expired request left sealed shares on disk"
        assert any(seen("unfetched"))
        api.clock.advance(days=7)  # nobody fetched "unfetched"
        sweep(api.ctx.engine, api.keystore, api.clock(), unfetched_after=timedelta(days=7))
        assert not any(seen("unfetched")), "an unfetched request left sealed shares on disk"
        with api.ctx.factory() as s:
            assert s.scalars(select(Approval.sealed_share)).all() == [None] * 6
    finally:
        api.client.close()
        api.ctx.engine.dispose()


def test_a_development_authority_releases_nothing_whatever_is_tried(db_url, tmp_path):
    from datetime import UTC, datetime

    from tests.conftest import ApiVault, make_authority

    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ks, keys = make_authority(tmp_path / "keys", t0, dev=True)
    api = ApiVault(db_url, tmp_path, keystore=ks, trustee_keys=keys, t0=t0)
    try:
        crops: list[bytes] = []
        ids = [r["record_id"] for r in _stored(api, 2, crops=crops)]
        wid = api.warrant(["cam-1"], t0, t0 + timedelta(hours=1)).json()["id"]
        created = api.request(wid, ids).json()
        rid, secret = created["request"]["id"], created["fetch_secret"]
        for t in ("Trustee A", "Trustee B", "Trustee C"):
            r = api.approve(t, rid)
            assert r.status_code == 403 and "development authority" in r.json()["detail"]
        r = api.release(rid, secret)
        assert r.status_code == 409 and "0 of 2" in r.json()["detail"]
        with api.ctx.factory() as s:
            assert s.scalars(select(Approval)).all() == []
        assert not any(base64.b64encode(c)[:40].decode() in r.text for c in crops)
    finally:
        api.client.close()
        api.ctx.engine.dispose()


def test_k_never_drops_below_the_split_threshold(db_url, tmp_path):
    """A policy asking for 1 approval over shares split 2-of-3: the release still needs 2."""
    from policies.schema import Openings
    from tests.conftest import ApiVault

    api = ApiVault(db_url, tmp_path)
    try:
        api.ctx.policy = api.ctx.policy.model_copy(
            update={"openings": Openings(threshold=1, trustees=3)}
        )
        assert api.ctx.required_approvals == 2
        ids = [r["record_id"] for r in _stored(api, 1)]
        _, rid, secret = _approved(api, ids, trustees=("Trustee A",))
        r = api.release(rid, secret)
        assert r.status_code == 409 and "1 of 2" in r.json()["detail"]
        assert api.approve("Trustee C", rid).status_code == 200
        assert api.release(rid, secret).status_code == 200
    finally:
        api.client.close()
        api.ctx.engine.dispose()


def test_an_outbox_record_refused_for_good_stays_and_is_reported(api, tmp_path):
    """A batch of five, one of them forged (its ciphertext starts like a JPEG): the four go,
    the one stays in the outbox, is reported with the vault's reason, and sending again
    changes nothing."""
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
    wires = [api.seal("cam-1", api.t0 + timedelta(minutes=i), track=i)[0] for i in range(5)]
    bad = wires[2]
    raw = base64.b64decode(bad["ciphertext"])
    bad["ciphertext"] = base64.b64encode(b"\xff\xd8\xff" + raw[3:]).decode()
    for w in wires:
        sealed = record_from_fields(dict(SealedRecordIn.model_validate(w)))
        put(factory, [(sealed, w["track_id"], w["quality"])], api.t0, api.t0)
    client = camera_client(api, "cam-1")
    try:
        sender = Sender(factory, client, batch=5)
        assert sender.drain_once() is True
        assert sender.report.sent == 4
        assert list(sender.report.refused) == [bad["record_id"]]
        assert "looks like a plaintext image" in sender.report.refused[bad["record_id"]]
        assert sender.waiting() == 1
        again = Sender(factory, client, batch=5)  # a restarted sender
        assert again.drain_once() is True and again.report.sent == 0
        assert list(again.report.refused) == [bad["record_id"]] and again.waiting() == 1
    finally:
        client.http.headers.pop("Authorization", None)
        engine.dispose()
    with api.ctx.factory() as s:
        stored = set(s.scalars(select(SealedRecordRow.id)))
    assert stored == {w["record_id"] for w in wires} - {bad["record_id"]}


def test_a_record_the_vault_holds_already_leaves_the_outbox_as_delivered(api, tmp_path):
    """A capture restarted on the same file seals its tracks again under the same record ids
    (camera, source, track), with new ciphertexts; the vault keeps what it took in first and
    answers 409 to the other content. The sender takes that answer for a record of its own
    camera as delivered: the outbox drains, the vault keeps its copy, nothing is refused;
    a forged record in the same batch is still refused and kept."""
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
    first = [api.seal("cam-1", api.t0 + timedelta(minutes=i), track=i)[0] for i in range(4)]
    assert api.ingest("cam-1", first[:3]).status_code == 200  # the first run delivered three
    again = [  # the restarted run: same ids, sealed anew
        api.seal(
            "cam-1", api.t0 + timedelta(minutes=i, seconds=1), track=i, record_id=w["record_id"]
        )[0]
        for i, w in enumerate(first)
    ]
    forged, _ = api.seal("cam-1", api.t0 + timedelta(minutes=9), track=9)
    raw = base64.b64decode(forged["ciphertext"])
    forged["ciphertext"] = base64.b64encode(b"\xff\xd8\xff" + raw[3:]).decode()
    for w in [*again, forged]:
        sealed = record_from_fields(dict(SealedRecordIn.model_validate(w)))
        put(factory, [(sealed, w["track_id"], w["quality"])], api.t0, api.t0)
    client = camera_client(api, "cam-1")
    try:
        sender = Sender(factory, client, batch=5)
        assert sender.drain_once() is True
        assert (sender.report.sent, sender.report.already_held) == (1, 3)
        assert list(sender.report.refused) == [forged["record_id"]]
        assert sender.waiting() == 1  # the forged one only
    finally:
        client.http.headers.pop("Authorization", None)
        engine.dispose()
    with api.ctx.factory() as s:
        stored = {r.id: r.ciphertext for r in s.scalars(select(SealedRecordRow))}
        ingests = s.scalars(select(AuditEntry.detail).where(AuditEntry.action == "ingest"))
        new = [rid for d in ingests for rid in json.loads(d)["new"]]
    assert set(stored) == {w["record_id"] for w in first}
    for w in first[:3]:  # the vault kept what it took in first
        assert stored[w["record_id"]] == base64.b64decode(w["ciphertext"])
    assert sorted(new) == sorted(w["record_id"] for w in first), "each taken in once"


def _needles(crops: list[bytes], wires: list[dict]) -> dict[str, list[bytes]]:
    """Byte strings whose presence in a response means a crop or a ciphertext left the vault:
    raw, base64 and hex prefixes (48 bytes of each: long enough to be no accident)."""
    out: dict[str, list[bytes]] = {"crop": [], "ciphertext": []}
    for c in crops:
        out["crop"] += [c[100:148], base64.b64encode(c[102:150]), c[100:148].hex().encode()]
    for w in wires:
        ct = base64.b64decode(w["ciphertext"])
        out["ciphertext"] += [
            ct[30:78],
            base64.b64encode(ct[33:81]),
            ct[30:78].hex().encode(),
            w["sealed_key"][8:56].encode(),
        ]
    return out


def test_no_endpoint_but_the_release_returns_crop_or_ciphertext_bytes(api):
    """Every GET route of the app (API and console), with every role's token and with none,
    its path parameters filled with real ids, after records were stored, requested, approved
    and released: only the release's answer carries crop bytes; no answer carries any
    ciphertext."""
    crops: list[bytes] = []
    wires = _stored(api, 3, crops=crops)
    ids = [w["record_id"] for w in wires]
    wid, rid, secret = _approved(api, ids[:2])
    audit_id = api.audit_actions() and 1
    needles = _needles(crops, wires)

    def leaks(body: bytes) -> set[str]:
        return {kind for kind, ns in needles.items() if any(n in body for n in ns)}

    release = api.release(rid, secret)
    assert release.status_code == 200
    assert leaks(release.content) == {"crop"}  # the scan can see crops where they are

    values = {
        "request_id": rid,
        "warrant_id": wid,
        "record_id": ids[0],
        "entry_id": str(audit_id),
        "token_id": api.token_ids["Det. Vance"],
        "camera_id": "cam-1",
        "epoch_id": wires[0]["epoch_id"],
    }
    import re

    from tests.test_console import login
    from vault.console.router import router as console

    def filled(path: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)

    api_paths = [p for p, ops in api.app.openapi()["paths"].items() if "get" in ops]
    console_paths = [r.path for r in console.routes if "GET" in r.methods]
    assert len(api_paths) >= 10 and len(console_paths) >= 15
    tried = 0
    for who in (None, *api.by_role.values()):
        for path in api_paths:
            r = api.call(who, "GET", filled(path), params={"limit": 1000})
            assert r.status_code < 500, (path, who, r.status_code)
            assert not leaks(r.content), f"GET {path} as {who} returned {leaks(r.content)}"
            tried += 1
        if who is None or who.startswith("cam-"):
            continue
        c, _ = login(api, who)
        with c:
            for path in console_paths:
                r = c.get(filled(path).replace("{name}", "x"))
                assert r.status_code < 500, (path, who, r.status_code)
                assert not leaks(r.content), f"console {path} as {who}: {leaks(r.content)}"
                tried += 1
    assert tried > 150
    # the writes that answer with bodies: the receipt, a release after it, a repeated ingest,
    # a review (before the receipt, a second release is the release's own answer again)
    assert not leaks(api.call("Det. Vance", "POST", f"/requests/{rid}/received").content)
    assert not leaks(api.release(rid, secret).content)
    assert not leaks(api.ingest("cam-1", wires).content)
    assert not leaks(api.call("Trustee A", "GET", f"/requests/{rid}/review").content)
    with api.ctx.factory() as s:
        trail = b"".join(e.detail.encode() for e in s.scalars(select(AuditEntry)))
    assert not leaks(trail)
