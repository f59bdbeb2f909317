"""The hash-chained audit trail on SQLite and PostgreSQL: any edit, deletion, insertion or
reordering is reported at the first broken link; parallel appenders keep the chain whole."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from vault import audit
from vault.db import make_engine, session_factory

T = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def trail(db_url):
    eng = make_engine(db_url)
    factory = session_factory(eng)
    for i in range(1, 21):
        audit.record(factory, f"user{i % 3}", "ingest", {"n": i}, T + timedelta(seconds=i))
    yield eng, factory
    eng.dispose()


def sql(eng, stmt, **kw):
    with eng.begin() as c:
        c.execute(sa.text(stmt), kw)


def test_intact_trail_verifies(trail):
    _, factory = trail
    v = audit.verify(factory)
    assert v.ok and v.entries == 20 and len(v.head) == 64
    assert audit.verify(factory, expect_head=v.head).ok


def test_edit_is_detected(trail):
    eng, factory = trail
    sql(eng, "UPDATE audit_log SET detail = :d WHERE id = 7", d='{"n":700}')
    v = audit.verify(factory)
    assert not v.ok and v.broken_at == 7 and "hash" in v.reason


def test_edit_with_recomputed_hash_is_detected_at_the_next_link(trail):
    eng, factory = trail
    with factory() as s:
        e = s.get(audit.AuditEntry, 7)
        forged = audit.entry_hash(e.prev_hash, 7, e.at, e.actor, e.action, '{"n":700}')
    sql(eng, "UPDATE audit_log SET detail = :d, hash = :h WHERE id = 7", d='{"n":700}', h=forged)
    v = audit.verify(factory)
    assert not v.ok and v.broken_at == 8 and "link" in v.reason


def test_deletion_is_detected(trail):
    eng, factory = trail
    sql(eng, "DELETE FROM audit_log WHERE id = 5")
    v = audit.verify(factory)
    assert not v.ok and v.broken_at == 5 and "missing" in v.reason


def test_tail_deletion_is_detected_against_a_recorded_head(trail):
    eng, factory = trail
    head = audit.verify(factory).head
    sql(eng, "DELETE FROM audit_log WHERE id >= 19")
    assert audit.verify(factory).ok  # a shorter chain is self-consistent...
    v = audit.verify(factory, expect_head=head)
    assert not v.ok and v.broken_at == 19  # ...but not the one the auditor saw


def test_reordering_is_detected(trail):
    eng, factory = trail
    with eng.connect() as c:
        a = c.execute(sa.text("SELECT detail, actor FROM audit_log WHERE id = 3")).one()
        b = c.execute(sa.text("SELECT detail, actor FROM audit_log WHERE id = 4")).one()
    sql(eng, "UPDATE audit_log SET detail = :d, actor = :a WHERE id = 3", d=b[0], a=b[1])
    sql(eng, "UPDATE audit_log SET detail = :d, actor = :a WHERE id = 4", d=a[0], a=a[1])
    v = audit.verify(factory)
    assert not v.ok and v.broken_at == 3


def test_insertion_is_detected(trail):
    eng, factory = trail
    sql(eng, "UPDATE audit_log SET id = id + 100 WHERE id > 10")
    with factory.begin() as s:
        prev = s.get(audit.AuditEntry, 10)
        h = audit.entry_hash(prev.hash, 11, T, "mallory", "release", "{}")
        s.add(
            audit.AuditEntry(
                id=11,
                at=T,
                actor="mallory",
                action="release",
                detail="{}",
                prev_hash=prev.hash,
                hash=h,
            )
        )
    v = audit.verify(factory)
    assert not v.ok and v.broken_at == 12


def test_an_append_fails_with_its_action(db_url):
    """Fail closed: the entry is part of the action's transaction."""
    eng = make_engine(db_url)
    factory = session_factory(eng)
    with pytest.raises(RuntimeError), factory.begin() as s:
        audit.append(s, "judge", "warrant.issue", {"case": "X"}, T)
        raise RuntimeError("the action itself failed")
    assert audit.verify(factory).entries == 0
    eng.dispose()


def test_parallel_appenders_keep_the_chain(db_url):
    """Appenders queue on the writer lock instead of racing for entry n: with no retries
    allowed, none of 8 x 25 appends may fail (SQLite once read the head outside its
    transaction, and under CI load a writer lost 20 retries in a row)."""
    eng = make_engine(db_url)
    factory = session_factory(eng)
    errors: list[Exception] = []

    def worker(w):
        for i in range(25):
            try:
                audit.record(factory, f"w{w}", "ingest", {"i": i}, datetime.now(UTC), attempts=1)
            except Exception as e:  # collected: a thread's exception would only warn
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    v = audit.verify(factory)
    assert v.ok and v.entries == 200
    eng.dispose()


def test_audit_verify_command(tmp_path):
    import os
    import subprocess
    import sys

    from vault.db import upgrade

    url = f"sqlite:///{tmp_path / 'v.db'}"
    upgrade(url)
    eng = make_engine(url)
    factory = session_factory(eng)
    for i in range(3):
        audit.record(factory, "cam", "ingest", {"i": i}, T)
    env = {**os.environ, "ESCROW_DATABASE_URL": url}

    def run():
        cmd = [sys.executable, "-m", "escrow.cli", "audit", "verify"]
        return subprocess.run(cmd, capture_output=True, text=True, env=env)

    r = run()
    assert r.returncode == 0 and "intact: 3 entries" in r.stdout
    sql(eng, "UPDATE audit_log SET actor = 'x' WHERE id = 2")
    r = run()
    assert r.returncode == 1 and "BROKEN at entry 2" in r.stderr and "Traceback" not in r.stderr
    eng.dispose()
