"""The retention sweep with a fake clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from escrow import sealing
from escrow.canonical import as_utc
from escrow.keyring import CameraKeyring
from escrow.sealing import KeyStoreError, load_private
from tests.conftest import PASSPHRASE, epoch_key, epoch_key_raw, make_authority
from vault import audit, store
from vault.db import make_engine, session_factory
from vault.models import AuditEntry, KeyEpoch, SealedRecordRow
from vault.retention import sweep

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # day 1 of the epochs


@pytest.fixture
def world(db_url, tmp_path):
    """A production authority (2 of 3 trustees) with three daily epochs of camera "cam"."""
    ks, keys = make_authority(tmp_path / "keys", T0, cameras=("cam",), epochs=3)
    (tmp_path / "ring.json").write_text(json.dumps(ks.camera_keyring("cam")))
    ring = CameraKeyring.load(tmp_path / "ring.json")
    eng = make_engine(db_url)
    factory = session_factory(eng)
    with factory.begin() as s:
        store.register_epochs(s, ks.certificates())

    def add(t: datetime, keep: timedelta, payload: bytes = b"\xff\xd8\xff" + b"x" * 500):
        key = ring.key_for(t, "cam")
        h = sealing.RecordHeader(str(uuid.uuid4()), "cam", key.cert.epoch_id, t, t, t)
        sealed = key.seal(payload, {}, h)
        store.put(factory, [(sealed, 1, 1.0)], t, t + keep)
        return sealed

    yield ks, eng, factory, add, list(keys.values())
    eng.dispose()


def ids(factory):
    with factory() as s:
        return set(s.scalars(sa.select(SealedRecordRow.id)))


def test_expired_go_held_stay_until_released(world):
    ks, eng, factory, add, _ = world
    a = add(T0, timedelta(hours=1))
    b = add(T0 + timedelta(minutes=5), timedelta(hours=1))
    c = add(T0 + timedelta(minutes=10), timedelta(hours=48))
    with factory.begin() as s:
        s.get(SealedRecordRow, ("cam", b.header.record_id)).legal_hold = True
    r = sweep(eng, ks, T0 + timedelta(hours=2))
    assert r.erased == [a.header.record_id] and r.held_expired == 1
    assert ids(factory) == {b.header.record_id, c.header.record_id}
    with factory.begin() as s:  # the warrant's hold ends
        s.get(SealedRecordRow, ("cam", b.header.record_id)).legal_hold = False
    r = sweep(eng, ks, T0 + timedelta(hours=3))
    assert r.erased == [b.header.record_id]
    assert audit.verify(factory).ok
    assert actions(factory) == ["sweep.erase", "sweep.run", "sweep.erase", "sweep.run"]


def actions(factory) -> list[str]:
    from sqlalchemy import select

    from vault.models import AuditEntry

    with factory() as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_epoch_key_destroyed_only_with_its_last_record_and_after_it_ended(world):
    ks, eng, factory, add, trustees = world
    day1 = add(T0, timedelta(hours=1))
    late = add(T0 + timedelta(hours=5), timedelta(hours=30))  # same epoch, kept longer
    epoch = day1.header.epoch_id
    assert late.header.epoch_id == epoch
    r = sweep(eng, ks, T0 + timedelta(hours=2))  # epoch still running, one record left
    assert r.shredded == []
    assert sealing.open(late, epoch_key(ks, trustees[:2], epoch))[0].startswith(b"\xff\xd8\xff")
    r = sweep(eng, ks, T0 + timedelta(hours=20))  # epoch over, but `late` remains
    assert r.shredded == []
    r = sweep(eng, ks, T0 + timedelta(hours=40))
    assert r.erased == [late.header.record_id] and epoch in r.shredded
    with pytest.raises(KeyStoreError, match="destroyed"):  # not even all n trustees together
        epoch_key(ks, trustees, epoch)
    with factory() as s:
        assert s.get(KeyEpoch, epoch).destroyed_at is not None
    assert sweep(eng, ks, T0 + timedelta(hours=41)).shredded == []  # once only


def test_batches(world):
    ks, eng, factory, add, _ = world
    for i in range(25):
        add(T0 + timedelta(seconds=i), timedelta(hours=1))
    r = sweep(eng, ks, T0 + timedelta(hours=2), batch=10)
    assert len(r.erased) == 25 and ids(factory) == set()
    # one audit entry per batch of 10, 10, 5, and the run's summary
    assert actions(factory) == ["sweep.erase"] * 3 + ["sweep.run"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # a file-level check
def test_no_bytes_of_an_erased_record_remain_in_the_sqlite_file(tmp_path, world):
    ks, eng, factory, add, _ = world
    gone = [add(T0, timedelta(hours=1), b"\xff\xd8\xff" + bytes([i]) * 3000) for i in range(5)]
    kept = add(T0, timedelta(hours=99))
    sweep(eng, ks, T0 + timedelta(hours=2))
    eng.dispose()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("vault.db*"))
    for sealed in gone:
        for i in range(0, len(sealed.ciphertext) - 32, 64):
            assert sealed.ciphertext[i : i + 32] not in raw
    assert kept.ciphertext[:32] in raw  # the scan can see what is still there


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # its advisory lock
def test_two_sweepers_do_not_both_act(world):
    ks, eng, factory, add, _ = world
    add(T0, timedelta(hours=1))
    with eng.connect() as other:  # another sweeper holds the lock
        other.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": 0x6B667377})
        r = sweep(eng, ks, T0 + timedelta(hours=2))
        assert r.skipped and r.erased == []
        other.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": 0x6B667377})
        other.commit()
    assert len(sweep(eng, ks, T0 + timedelta(hours=2)).erased) == 1


def test_sweep_once_command(tmp_path):
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "ESCROW_DATABASE_URL": f"sqlite:///{tmp_path / 'v.db'}",
        "ESCROW_KEYS_DIR": str(tmp_path / "keys"),
    }
    cmd = [sys.executable, "-m", "escrow.cli", "sweep", "--once"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["erased"] == 0
    bad = tmp_path / "p.toml"
    bad.write_text("[sweep]\nbatch = 0")
    r = subprocess.run([*cmd, "--policy", str(bad)], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "sweep.batch" in r.stderr


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # row locks
def test_a_record_being_released_is_not_erased_under_it(world):
    """An opening holds its records' rows locked while it releases them; a sweep running at
    that moment skips them (and erases them at the next run, once expired and unheld)."""
    ks, eng, factory, add, _ = world
    busy = add(T0, timedelta(hours=1))
    idle = add(T0, timedelta(hours=1))
    with factory.begin() as opening:
        opening.execute(
            sa.select(SealedRecordRow)
            .where(SealedRecordRow.id == busy.header.record_id)
            .with_for_update()
        ).scalar()
        r = sweep(eng, ks, T0 + timedelta(hours=2))
        assert r.erased == [idle.header.record_id]
        assert opening.get(SealedRecordRow, ("cam", busy.header.record_id)) is not None
    assert sweep(eng, ks, T0 + timedelta(hours=2)).erased == [busy.header.record_id]


def test_daemon_catches_up_at_start_and_keeps_sweeping(world, db_url, tmp_path):
    """Records that fell due while no sweeper ran go in the daemon's first run, at start."""
    import os
    import signal
    import subprocess
    import sys

    ks, eng, factory, add, _ = world
    now = datetime.now(UTC)
    ks.issue_epochs(ks.authority_signer(PASSPHRASE), "cam", now, 1)
    with factory.begin() as s:
        store.register_epochs(s, ks.certificates())
    (tmp_path / "ring2.json").write_text(json.dumps(ks.camera_keyring("cam")))
    key = CameraKeyring.load(tmp_path / "ring2.json").key_for(now, "cam")
    h = sealing.RecordHeader(str(uuid.uuid4()), "cam", key.cert.epoch_id, now, now, now)
    store.put(factory, [(key.seal(b"x", {}, h), 1, 1.0)], now, now - timedelta(seconds=1))
    pol = tmp_path / "p.toml"
    pol.write_text('[sweep]\nevery = "1m"\n')
    env = {**os.environ, "ESCROW_DATABASE_URL": db_url, "ESCROW_KEYS_DIR": str(tmp_path / "keys")}
    p = subprocess.Popen(
        [sys.executable, "-m", "escrow.cli", "sweep", "--daemon", "--policy", str(pol)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = p.stdout.readline()  # the first sweep reports as soon as the daemon starts
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    assert json.loads(line)["erased"] == 1
    assert h.record_id not in ids(factory)


def test_retention_report(world):
    """A data-protection officer reads whose data was erased and why: camera, capture time,
    expiry, erasure, the rule, and when the key was destroyed; not bare record ids."""
    from vault.retention import report

    ks, eng, factory, add, _ = world
    a = add(T0, timedelta(hours=1))
    b = add(T0, timedelta(hours=1))
    c = add(T0 + timedelta(days=1), timedelta(hours=2))  # the next epoch, alone in it
    with factory.begin() as s:
        s.get(SealedRecordRow, ("cam", b.header.record_id)).legal_hold = True
    at = T0 + timedelta(days=2)
    sweep(eng, ks, at, rule=lambda cam: f"{cam}'s rule")
    r = report(factory, at)
    assert r["erased_records"] == 2
    rows = {e["record"]: e for e in r["erased"]}
    assert rows[a.header.record_id] == {
        "record": a.header.record_id,
        "camera": "cam",
        "captured": T0.isoformat(),
        "expires": (T0 + timedelta(hours=1)).isoformat(),
        "erased": at.isoformat(),
        "epoch": a.header.epoch_id,
        "rule": "retention 1h (cam's rule)",
        "key_destroyed": None,  # b, held, still keeps its epoch's key alive
        "audit_entry": rows[a.header.record_id]["audit_entry"],
    }
    assert rows[c.header.record_id]["key_destroyed"] == at.isoformat()
    assert rows[c.header.record_id]["rule"] == "retention 2h (cam's rule)"
    d = add(at, timedelta(hours=1))  # kept 1 h; the policy says 2 h by the time it goes
    sweep(
        eng,
        ks,
        at + timedelta(hours=2),
        rule=lambda cam: "default",
        keep_keys_for=lambda c: timedelta(hours=2),
    )
    d_row = [e for e in report(factory, at)["erased"] if e["record"] == d.header.record_id]
    assert d_row[0]["rule"] == "retention 1h (the policy at capture)"
    assert r["held_past_expiry"][0]["records"] == 1
    gone = {e for d in r["destroyed_epoch_keys"] for e in d["epochs"]}
    assert b.header.epoch_id not in gone and c.header.epoch_id in gone


def test_idle_sweeps_are_one_entry_per_day_and_the_trail_stays_provable(world, tmp_path):
    """Hourly sweeps that find nothing write no entry each; the first sweep of the next day
    writes the day's count as one `sweep.idle` entry. Only appends: the chain verifies and
    the witness file's checkpoints stay consistent across it."""
    from vault import anchor
    from vault.retention import report

    ks, eng, factory, add, _ = world
    key, witness = anchor.CheckpointKey(tmp_path / "cp"), tmp_path / "witness.jsonl"
    add(T0, timedelta(hours=1))
    add(T0, timedelta(days=30))  # keeps day 1's key: its shredding would be an action
    sweep(eng, ks, T0 + timedelta(hours=2))  # erases the first: entries as before
    assert actions(factory) == ["sweep.erase", "sweep.run"]
    anchor.extend_witness(factory, key, T0 + timedelta(hours=2), witness)
    for h in range(3, 14):  # eleven idle hours
        r = sweep(eng, ks, T0 + timedelta(hours=h))
        assert r.idle and r.erased == []
    assert actions(factory) == ["sweep.erase", "sweep.run"]  # nothing written for them
    day2 = T0 + timedelta(days=1, hours=1)
    assert sweep(eng, ks, day2).idle
    assert actions(factory) == ["sweep.erase", "sweep.run", "sweep.idle"]
    with factory() as s:
        e = s.scalars(sa.select(AuditEntry).where(AuditEntry.action == "sweep.idle")).one()
    assert json.loads(e.detail) == {
        "day": T0.date().isoformat(),
        "idle_runs": 11,
        "first": (T0 + timedelta(hours=3)).isoformat(),
        "last": (T0 + timedelta(hours=13)).isoformat(),
    }
    sweep(eng, ks, day2 + timedelta(hours=1))  # still day 2: counted, not written
    assert actions(factory).count("sweep.idle") == 1
    busy = add(day2, timedelta(minutes=30))
    r = sweep(eng, ks, day2 + timedelta(hours=2))  # a run that acts writes as before
    assert r.erased == [busy.header.record_id]
    assert actions(factory)[-2:] == ["sweep.erase", "sweep.run"]
    assert audit.verify(factory).ok
    anchor.extend_witness(factory, key, day2 + timedelta(hours=3), witness)  # proves extension
    assert anchor.check_trail(factory, witness)[1].size == len(actions(factory))
    idle = report(factory, day2 + timedelta(hours=3))["idle_sweeps"]
    assert [(d["day"], d["runs"], d["audit_entry"] is not None) for d in idle] == [
        (T0.date().isoformat(), 11, True),
        ((T0 + timedelta(days=1)).date().isoformat(), 2, False),  # today's, not yet written
    ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # copies the database file
def test_backup_from_before_a_sweep_cannot_open_the_shredded_epoch(world, tmp_path):
    import shutil

    ks, eng, factory, add, trustees = world
    sealed = [add(T0 + timedelta(minutes=i), timedelta(hours=1)) for i in range(3)]
    epoch = sealed[0].header.epoch_id
    key = epoch_key_raw(ks, trustees[:2], epoch)  # what two trustees could rebuild before
    eng.dispose()
    shutil.copy(tmp_path / "vault.db", tmp_path / "backup.db")
    r = sweep(eng, ks, T0 + timedelta(days=2))
    assert epoch in r.shredded
    backup = session_factory(make_engine(f"sqlite:///{tmp_path / 'backup.db'}"))
    for s in sealed:
        old = store.get(backup, s.header.record_id, "cam")  # still in the backup...
        assert old.ciphertext == s.ciphertext  # intact: the key from before would open it
        assert sealing.open(old, load_private(ks.info()["suite"], key))[0][:3] == b"\xff\xd8\xff"
        with pytest.raises(KeyStoreError, match="destroyed"):  # ...and unopenable, even to
            sealing.open(old, epoch_key(ks, trustees, old.header.epoch_id))  # all n trustees
    assert key[:16] not in (tmp_path / "backup.db").read_bytes()  # nor was the key in it


def test_each_erasure_leaves_a_tombstone_of_id_camera_and_time_only(world):
    """The tombstone is written with the erasure (same transaction) and holds nothing but
    the camera, the record id and when: no crop, ciphertext or metadata."""
    from vault.models import ErasedRecord

    ks, eng, factory, add, _ = world
    a = add(T0, timedelta(hours=1))
    kept = add(T0, timedelta(hours=48))
    at = T0 + timedelta(hours=2)
    assert sweep(eng, ks, at).erased == [a.header.record_id]
    assert {c["name"] for c in sa.inspect(eng).get_columns("erased_records")} == {
        "camera_id",
        "id",
        "erased_at",
    }
    with factory() as s:
        rows = s.execute(sa.select(ErasedRecord.camera_id, ErasedRecord.id, ErasedRecord.erased_at))
        assert [(c, r, as_utc(t)) for c, r, t in rows] == [("cam", a.header.record_id, at)]
    assert kept.header.record_id in ids(factory)
