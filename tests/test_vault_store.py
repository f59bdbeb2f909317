"""The SQL index on SQLite and PostgreSQL: migrations up and down, one-transaction put and
delete, listing by camera and time, and no plaintext at rest."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from vault import crypto, store
from vault.db import downgrade, make_engine, session_factory, upgrade
from vault.keys import CameraKeyring, KeyStore

NOW = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)


@pytest.fixture
def authority(tmp_path):
    ks = KeyStore(tmp_path / "keys")
    ks.init(NOW, epochs_ahead=2, dev=True)
    cam = tmp_path / "keyring.json"
    cam.write_text(json.dumps(ks.camera_keyring()))
    return ks, CameraKeyring.load(cam)


@pytest.fixture(scope="module")
def jpegs(celeba_dir):
    return [(celeba_dir / f"{i:06d}.jpg").read_bytes() for i in range(11, 31)]


def seal_all(ring, jpegs, camera="cam-A"):
    out = []
    for i, jpeg in enumerate(jpegs):
        t = NOW + timedelta(minutes=i)
        key = ring.key_for(t)
        h = crypto.RecordHeader(
            str(uuid.uuid4()), camera, key.cert.epoch_id, t - timedelta(seconds=2), t, t
        )
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
    ks, ring = authority
    eng = make_engine(db_url)
    factory = session_factory(eng)
    with factory.begin() as s:
        store.register_epochs(s, ks.certificates())
    items = seal_all(ring, jpegs)
    assert store.put(factory, items, NOW, NOW + timedelta(hours=72)) == len(jpegs)
    master = ks.master_from()
    for sealed, _, _ in items[:5]:
        got = store.get(factory, sealed.header.record_id)
        priv = ks.epoch_private_key(master, got.header.epoch_id)
        assert crypto.open(got, priv)[0] == jpegs[items.index((sealed, _, _))]
    ids = store.list_ids(factory, "cam-A", NOW + timedelta(minutes=5), NOW + timedelta(minutes=10))
    assert ids == [it[0].header.record_id for it in items[5:10]]
    assert store.list_ids(factory, "cam-B", NOW, NOW + timedelta(days=1)) == []
    assert store.delete(factory, ids) == 5
    with pytest.raises(store.StoreError):
        store.get(factory, ids[0])
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
    ks, ring = authority
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


def test_backup_taken_before_a_shred_cannot_open_that_epoch(tmp_path, authority, jpegs):
    """Crypto-shredding: destroying the epoch key in the key store makes every ciphertext of
    the epoch unreadable, including the copies inside an earlier database backup."""
    import shutil

    ks, ring = authority
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
    master = ks.master_from()
    assert ks.shred(epoch)
    store.mark_epoch_destroyed(factory, epoch, NOW)
    from vault.keys import KeyStoreError

    backup = session_factory(make_engine(f"sqlite:///{tmp_path / 'backup.db'}"))
    for sealed, _, _ in items:
        old = store.get(backup, sealed.header.record_id)  # the ciphertext is still there...
        assert old.ciphertext == sealed.ciphertext
        with pytest.raises(KeyStoreError, match="destroyed"):  # ...but nothing opens it
            ks.epoch_private_key(master, old.header.epoch_id)
    # and the key material never was in the database file, backup or not
    raw = (tmp_path / "backup.db").read_bytes()
    assert not any(p.read_bytes()[12:40] in raw for p in ks.epochs_dir.glob("*.key.enc"))
