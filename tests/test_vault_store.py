"""The SQL index on SQLite and PostgreSQL: migrations up and down, one-transaction put and
delete, listing by camera and time, record ids unique per camera, and no plaintext nor any
epoch key at rest."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from escrow import sealing
from escrow.keyring import CameraKeyring
from escrow.sealing import KeyStoreError, load_private, open_with_passphrase, public_of
from tests.conftest import PASSPHRASE, epoch_key, make_authority, trustee_shares
from vault import store
from vault.db import downgrade, make_engine, session_factory, upgrade
from vault.keys import combine_secret

NOW = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)


@pytest.fixture
def authority(tmp_path):
    """A production authority, 2 of 3 trustees, epochs of cam-A and cam-B; cam-A's keyring."""
    ks, keys = make_authority(tmp_path / "keys", NOW, cameras=("cam-A", "cam-B"), epochs=2)
    cam = tmp_path / "keyring.json"
    cam.write_text(json.dumps(ks.camera_keyring("cam-A")))
    return ks, list(keys.values()), CameraKeyring.load(cam)


@pytest.fixture(scope="module")
def jpegs(celeba_dir):
    return [(celeba_dir / f"{i:06d}.jpg").read_bytes() for i in range(11, 31)]


def seal_all(ring, jpegs, camera="cam-A", ids=None):
    out = []
    for i, jpeg in enumerate(jpegs):
        t = NOW + timedelta(minutes=i)
        key = ring.key_for(t, camera)
        rid = ids[i] if ids else str(uuid.uuid4())
        h = sealing.RecordHeader(rid, camera, key.cert.epoch_id, t - timedelta(seconds=2), t, t)
        out.append((key.seal(jpeg, {"track": i}, h), i, float(i)))
    return out


def test_migrations_create_and_drop_every_table(db_url):
    eng = make_engine(db_url)
    names = set(sa.inspect(eng).get_table_names())
    assert {"cameras", "key_epochs", "sealed_records", "audit_log"} <= names
    idx = {i["name"] for i in sa.inspect(eng).get_indexes("sealed_records")}
    assert {"ix_records_camera_time", "ix_records_expires"} <= idx
    downgrade(db_url, "base")
    assert not {"cameras", "sealed_records"} & set(sa.inspect(eng).get_table_names())
    upgrade(db_url, "head")
    assert "sealed_records" in set(sa.inspect(eng).get_table_names())
    eng.dispose()


def test_store_round_trip_list_and_delete(db_url, authority, jpegs):
    ks, trustees, ring = authority
    eng = make_engine(db_url)
    factory = session_factory(eng)
    with factory.begin() as s:
        store.register_epochs(s, ks.certificates())
    items = seal_all(ring, jpegs)
    assert store.put(factory, items, NOW, NOW + timedelta(hours=72)) == len(jpegs)
    assert store.put(factory, items[:3], NOW, NOW + timedelta(hours=72)) == 0  # a retry
    keys = {}
    for n, (sealed, _, _) in enumerate(items[:5]):
        got = store.get(factory, sealed.header.record_id, "cam-A")
        assert got == sealed
        epoch = got.header.epoch_id
        keys.setdefault(epoch, epoch_key(ks, trustees[:2], epoch))
        assert sealing.open(got, keys[epoch])[0] == jpegs[n]
    # record ids are unique per camera: cam-B may use an id cam-A has used, and each camera's
    # record opens only with that camera's own epoch key
    ring_b = CameraKeyring(ks.authority_public_raw(), ks.certificates("cam-B"), "cam-B")
    twin = items[0][0].header.record_id
    b_items = seal_all(ring_b, jpegs[5:6], camera="cam-B", ids=[twin])
    assert store.put(factory, b_items, NOW, NOW + timedelta(hours=72)) == 1
    a_rec, b_rec = store.get(factory, twin, "cam-A"), store.get(factory, twin, "cam-B")
    assert a_rec.ciphertext == items[0][0].ciphertext
    assert b_rec.ciphertext == b_items[0][0].ciphertext
    b_key = epoch_key(ks, trustees[1:], b_rec.header.epoch_id)
    assert sealing.open(b_rec, b_key)[0] == jpegs[5]
    with pytest.raises(sealing.IntegrityError):
        sealing.open(a_rec, b_key)
    assert store.delete(factory, [twin], "cam-B") == 1
    assert store.get(factory, twin, "cam-A").ciphertext == items[0][0].ciphertext
    with pytest.raises(store.StoreError):
        store.get(factory, twin, "cam-B")
    ids = store.list_ids(factory, "cam-A", NOW + timedelta(minutes=5), NOW + timedelta(minutes=10))
    assert ids == [it[0].header.record_id for it in items[5:10]]
    assert store.list_ids(factory, "cam-B", NOW, NOW + timedelta(days=1)) == []
    assert store.delete(factory, ids, "cam-A") == 5
    with pytest.raises(store.StoreError):
        store.get(factory, ids[0], "cam-A")
    # A batch with one bad row (unknown epoch) stores nothing at all.
    bad = seal_all(ring, jpegs[:3])
    h = bad[2][0].header
    import dataclasses

    bad[2] = (
        dataclasses.replace(bad[2][0], header=dataclasses.replace(h, epoch_id="nope")),
        2,
        2.0,
    )
    before = store.list_ids(factory, "cam-A", NOW - timedelta(days=1), NOW + timedelta(days=2))
    with pytest.raises(sa.exc.IntegrityError):
        store.put(factory, bad, NOW, NOW + timedelta(hours=72))
    after = store.list_ids(factory, "cam-A", NOW - timedelta(days=1), NOW + timedelta(days=2))
    assert before == after
    eng.dispose()


def test_no_plaintext_at_rest(db_url, authority, jpegs, tmp_path):
    ks, _, ring = authority
    eng = make_engine(db_url)
    factory = session_factory(eng)
    with factory.begin() as s:
        store.register_epochs(s, ks.certificates())
    store.put(factory, seal_all(ring, jpegs), NOW, NOW + timedelta(hours=72))
    # everything the database holds, read back as bytes
    with eng.connect() as c:
        rows = c.execute(sa.text("SELECT * FROM sealed_records")).all()
    blobs = [
        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for r in rows for v in r
    ]
    files = []
    if eng.dialect.name == "sqlite":
        eng.dispose()
        files = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    everything = b"".join(blobs + files)
    assert len(rows) == len(jpegs)
    # No JPEG start (FF D8 FF plus the crop's own next bytes: FF D8 FF alone turns up by
    # chance in random ciphertext about once in 2^24 bytes), nor any 32-byte run of a crop.
    for jpeg in jpegs:
        assert jpeg[:3] == b"\xff\xd8\xff" and jpeg[:12] not in everything
        for i in range(0, len(jpeg) - 32, 512):
            assert jpeg[i : i + 32] not in everything
    eng.dispose()


def _db_bytes(eng, files=()) -> bytes:
    """Every value of every row of every table, read back as bytes, and the given files."""
    parts = []
    with eng.connect() as c:
        for table in sa.inspect(eng).get_table_names():
            for row in c.execute(sa.text(f'SELECT * FROM "{table}"')):
                parts += [
                    bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row
                ]
    return b"\x00".join(parts + [p.read_bytes() for p in files])


def _assert_absent(secret: bytes, everything: bytes) -> None:
    """Not raw (not even a 16-byte piece of it: shares are made block by block), not in hex,
    not in base64."""
    for i in range(0, len(secret), 16):
        assert secret[i : i + 16] not in everything
    assert secret.hex().encode() not in everything
    assert base64.b64encode(secret) not in everything


@pytest.mark.parametrize("suite", ["x25519", "mlkem768-x25519"])
def test_no_epoch_private_key_at_rest(db_url, suite, jpegs, tmp_path):
    """After the ceremony and issuing, with records of two cameras stored: no file of the key
    store, no row of the database (nor the SQLite file) holds any epoch's private key, any
    share of it in the clear, or a trustee's private key. The private keys to look for are
    rebuilt from the trustees' shares."""
    ks, keys = make_authority(
        tmp_path / "keys", NOW, cameras=("cam-A", "cam-B"), epochs=2, suite=suite
    )
    trustees = list(keys.values())
    eng = make_engine(db_url)
    factory = session_factory(eng)
    with factory.begin() as s:
        store.register_epochs(s, ks.certificates())
    for cam in ("cam-A", "cam-B"):
        ring = CameraKeyring(ks.authority_public_raw(), ks.certificates(cam), cam)
        store.put(factory, seal_all(ring, jpegs[:4], camera=cam), NOW, NOW + timedelta(hours=72))
    db_files = list(tmp_path.glob("vault.db*"))  # SQLite: the file and its WAL
    assert bool(db_files) == (eng.dialect.name == "sqlite")
    everything = _db_bytes(eng, db_files) + b"".join(
        p.read_bytes() for p in ks.root.rglob("*") if p.is_file()
    )
    secrets = [open_with_passphrase(t.sealed_private, PASSPHRASE, t.purpose()) for t in trustees]
    certs = ks.certificates()
    assert len(certs) == 4
    for c in certs:
        shares = trustee_shares(ks, trustees, c.epoch_id)
        raw = combine_secret(shares[1:])
        assert public_of(suite, raw) == base64.b64decode(c.public_key)
        assert len(raw) == {"x25519": 32, "mlkem768-x25519": 96}[suite]
        secrets += [raw, *(share for _, share in shares)]
        # the scan does see what is there: each epoch's public key, in the DB and the store
        assert base64.b64decode(c.public_key)[:16] in everything
    for secret in secrets:
        _assert_absent(secret, everything)
    eng.dispose()


def test_approvals_leave_no_epoch_key_or_share_at_rest(api, tmp_path):
    """Through the API, on both engines: while a request holds k approvals (the trustees'
    shares, sealed for the release) and after its release, no row holds an epoch key or a
    share in the clear, nor the release key or the request's fetch secret."""
    recs = [api.seal("cam-1", api.t0 + timedelta(minutes=10 + i), track=i)[0] for i in range(3)]
    assert api.ingest("cam-1", recs).status_code == 200
    w = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1))
    assert w.status_code == 201, w.text
    created = api.request(w.json()["id"], [r["record_id"] for r in recs])
    assert created.status_code == 201, created.text
    rid, secret = created.json()["request"]["id"], created.json()["fetch_secret"]
    for t in ("Trustee A", "Trustee C"):
        assert api.approve(t, rid).status_code == 200
    ks, trustees = api.keystore, list(api.trustee_keys.values())
    keys = [ks.release_key().private_bytes_raw(), base64.urlsafe_b64decode(secret)]
    for c in ks.certificates():
        shares = trustee_shares(ks, trustees, c.epoch_id)
        keys += [combine_secret(shares[:2]), *(share for _, share in shares)]
    db_files = list(tmp_path.glob("vault.db*"))
    with api.ctx.engine.connect() as c:
        held = c.execute(sa.text("SELECT sealed_share FROM approvals")).scalars().all()
    assert len(held) == 2 and all(held)  # the approvals are there, their shares sealed
    for secret_bytes in keys:
        _assert_absent(secret_bytes, _db_bytes(api.ctx.engine, db_files))
    out = api.release(rid, secret)
    assert out.status_code == 200 and len(out.json()["released"]) == 3, out.text
    everything = _db_bytes(api.ctx.engine, db_files)
    for secret_bytes in keys:
        _assert_absent(secret_bytes, everything)


def test_backup_taken_before_a_shred_cannot_open_that_epoch(tmp_path, authority, jpegs):
    """Crypto-shredding: destroying the epoch's sealed shares in the key store makes every
    ciphertext of the epoch unreadable, including the copies inside an earlier database
    backup, to all the trustees together."""
    import shutil

    ks, trustees, ring = authority
    url = f"sqlite:///{tmp_path / 'vault.db'}"
    upgrade(url)
    eng = make_engine(url)
    factory = session_factory(eng)
    with factory.begin() as s:
        store.register_epochs(s, ks.certificates())
    items = seal_all(ring, jpegs[:4])
    store.put(factory, items, NOW, NOW + timedelta(hours=72))
    eng.dispose()
    shutil.copy(tmp_path / "vault.db", tmp_path / "backup.db")  # the backup

    epoch = items[0][0].header.epoch_id
    assert {it[0].header.epoch_id for it in items} == {epoch}
    shares = trustee_shares(ks, trustees, epoch)  # what the trustees could unseal before
    sealed_shares = ks.shares(epoch)["sealed_shares"].values()
    key = load_private(ks.info()["suite"], combine_secret(shares[:2]))
    assert sealing.open(store.get(factory, items[0][0].header.record_id), key)[0] == jpegs[0]
    assert ks.shred(epoch)
    store.mark_epoch_destroyed(factory, epoch, NOW)

    backup = session_factory(make_engine(f"sqlite:///{tmp_path / 'backup.db'}"))
    for sealed, _, _ in items:
        old = store.get(backup, sealed.header.record_id, "cam-A")  # the ciphertext is there...
        assert old.ciphertext == sealed.ciphertext
        with pytest.raises(KeyStoreError, match="destroyed"):  # ...but nothing opens it,
            epoch_key(ks, trustees, old.header.epoch_id)  # not even all n trustees together
    # and the key material never was in the database file, backup or not: neither the key,
    # nor a share of it, nor a sealed share
    raw = (tmp_path / "backup.db").read_bytes() + (tmp_path / "vault.db").read_bytes()
    for secret in [combine_secret(shares[:2]), *(s for _, s in shares)]:
        _assert_absent(secret, raw)
    for blob in sealed_shares:
        assert base64.b64decode(blob)[:32] not in raw and blob.encode() not in raw


def test_migration_0007_from_0006_tombstones_what_the_trail_says_was_erased(db_url):
    """Upgrading a vault at 0006: each record a `sweep.erase` entry names with its camera
    gets a tombstone; one erased and then stored again (the bug 0007 fixes) keeps its row
    and gets none; an old entry without cameras adds nothing. Down and up again works."""
    from vault.models import KeyEpoch, SealedRecordRow

    downgrade(db_url, "0006")
    eng = make_engine(db_url)
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    log = sa.table(
        "audit_log",
        *(sa.column(c) for c in ("id", "actor", "action", "detail", "prev_hash", "hash")),
        sa.column("at", sa.DateTime(timezone=True)),
    )
    rows = [{"record": f"r{i}", "camera": "cam"} for i in range(3)]
    with eng.begin() as c:
        c.execute(
            sa.insert(log),
            [
                {
                    "id": 1,
                    "at": at,
                    "actor": "retention-sweeper",
                    "action": "sweep.erase",
                    "detail": json.dumps({"records": ["old"]}),
                    "prev_hash": "0",
                    "hash": "h1",
                },
                {
                    "id": 2,
                    "at": at,
                    "actor": "retention-sweeper",
                    "action": "sweep.erase",
                    "detail": json.dumps({"records": ["r0", "r1", "r2"], "rows": rows}),
                    "prev_hash": "h1",
                    "hash": "h2",
                },
            ],
        )
        c.execute(sa.text("INSERT INTO cameras (id, created) VALUES ('cam', :t)"), {"t": at})
        c.execute(
            sa.insert(KeyEpoch.__table__),
            {
                "id": "cam@e",
                "camera_id": "cam",
                "suite": "x25519",
                "not_before": at,
                "not_after": at,
                "public_key": b"k",
                "signature": b"s",
            },
        )
        c.execute(  # r2 came back (stored again after its erasure, the bug): it stays
            sa.insert(SealedRecordRow.__table__),
            {
                "camera_id": "cam",
                "id": "r2",
                "track_id": 1,
                "first_seen": at,
                "last_seen": at,
                "best_time": at,
                "quality": 0.0,
                "epoch_id": "cam@e",
                "suite": "x25519",
                "format_version": 1,
                "sealed_key": b"k",
                "nonce": b"n",
                "ciphertext": b"c",
                "ciphertext_sha256": "0" * 64,
                "created": at,
                "expires": at,
                "legal_hold": False,
            },
        )
    upgrade(db_url, "head")
    with eng.connect() as c:
        got = c.execute(sa.text("SELECT camera_id, id FROM erased_records ORDER BY id")).all()
    assert [tuple(r) for r in got] == [("cam", "r0"), ("cam", "r1")]
    with eng.begin() as c:  # the fixture's teardown downgrades through 0004
        c.execute(sa.text("DELETE FROM sealed_records"))
    downgrade(db_url, "0006")
    assert "erased_records" not in sa.inspect(eng).get_table_names()
    upgrade(db_url, "head")
    eng.dispose()


_RACE = """
import sys, time
from vault.db import upgrade
import alembic.command, migrations  # imported before the start, so both begin together
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
upgrade(sys.argv[1])
"""


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_two_replicas_migrating_a_fresh_database_at_once_both_succeed(engine, tmp_path):
    """Two `escrow serve` replicas start together on an unmigrated database and each runs
    the migrations (two processes released at the same instant): both succeed, one after
    the other, and the database holds exactly one alembic_version row, at head."""
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import IN_CI, PG_URL

    if engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        base = sa.engine.make_url(PG_URL)
        url = base.set(database=f"{base.database}_migrate_race").render_as_string(False)
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{base.database}_migrate_race"'))
                c.execute(sa.text(f'CREATE DATABASE "{base.database}_migrate_race"'))
        except sa.exc.OperationalError as exc:
            if IN_CI:
                raise
            pytest.skip(f"PostgreSQL not reachable: {type(exc).__name__}")
        finally:
            admin.dispose()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    start = str(time.time() + 4)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, url, start], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    eng = make_engine(url)
    try:
        with eng.connect() as c:
            versions = c.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        from alembic.script import ScriptDirectory

        from vault.db import _alembic_config

        head = ScriptDirectory.from_config(_alembic_config(url)).get_current_head()
        assert [v[0] for v in versions] == [head] and head >= "0008"
        assert "erased_records" in sa.inspect(eng).get_table_names()
    finally:
        eng.dispose()
    if engine == "postgresql":
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE "{base.database}_migrate_race"'))
        admin.dispose()
