"""Two retention sweepers running for real at the same time (not a lock taken by hand), the
interleaving forced by events: the first stops right after it has read the records to erase,
the second sweeps until it finishes or waits on a lock, then the first goes on. On both
engines: neither fails, every record is erased once and in the trail once, and the trail
verifies."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

from sqlalchemy import event, select, update

from vault import audit
from vault.models import AuditEntry, SealedRecordRow
from vault.retention import sweep


def test_two_sweepers_at_once_erase_each_record_once(api):
    recs = [api.seal("cam-1", api.t0 + timedelta(minutes=i + 1), track=i)[0] for i in range(6)]
    assert api.ingest("cam-1", recs).status_code == 200
    with api.ctx.factory.begin() as s:
        s.execute(update(SealedRecordRow).values(expires=api.t0 + timedelta(hours=1)))
    now = api.t0 + timedelta(hours=2)
    engine = api.ctx.engine
    # the first goes on once the second has finished or waits on a lock (its next statement
    # would take the trail's writer lock): events, never a sleep
    first_read, second_done = threading.Event(), threading.Event()
    locks = ("UPDATE audit_log SET id = id WHERE 0", "pg_advisory_xact_lock")

    def pause_first(conn, cursor, statement, params, context, executemany):
        me = threading.current_thread().name
        if me == "second" and any(k in statement for k in locks):
            second_done.set()
        if (
            me == "first"
            and "FROM sealed_records" in statement
            and "expires <=" in statement
            and not first_read.is_set()
        ):
            first_read.set()
            assert second_done.wait(60), "the second sweeper never got going"

    results, errors = {}, {}

    def run(name):
        try:
            results[name] = sweep(engine, api.keystore, now, batch=100)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors[name] = repr(exc)
        finally:
            if name == "second":
                second_done.set()

    event.listen(engine, "after_cursor_execute", pause_first)
    event.listen(engine, "before_cursor_execute", pause_first)
    try:
        first = threading.Thread(target=run, args=("first",), name="first")
        first.start()
        assert first_read.wait(60), "the first sweeper never read its batch"
        second = threading.Thread(target=run, args=("second",), name="second")
        second.start()
        second.join(90)
        first.join(90)
    finally:
        event.remove(engine, "after_cursor_execute", pause_first)
        event.remove(engine, "before_cursor_execute", pause_first)
        second_done.set()
    assert not errors, errors
    erased = [rid for r in results.values() for rid in r.erased]
    assert sorted(erased) == sorted(r["record_id"] for r in recs), results
    with api.ctx.factory() as s:
        assert s.scalars(select(SealedRecordRow.id)).all() == []
        trail = [
            rid
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "sweep.erase"))
            for rid in json.loads(e.detail)["records"]
        ]
    assert sorted(trail) == sorted(erased), "an erasure missing from the trail, or twice"
    assert audit.verify(api.ctx.factory).ok


def test_a_sweep_during_a_release_never_erases_a_record_under_it(api):
    """The release stops right after it has read (and on PostgreSQL locked) its records; a
    sweep whose clock reads two months on (its warrant's hold long over, every record past
    its retention) runs meanwhile: it waits for the release (its row locks on PostgreSQL,
    SQLite's write lock), never takes a record from under it, and does not deadlock with it
    (it did: the sweep closing stale requests under the trail's lock, the release holding the
    request's row and then asking for the trail's lock). The crops go out, then the records
    are erased: in the trail, the release comes first."""
    recs = [api.seal("cam-1", api.t0 + timedelta(minutes=i + 1), track=i)[0] for i in range(3)]
    assert api.ingest("cam-1", recs).status_code == 200
    ids = [r["record_id"] for r in recs]
    w = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]
    created = api.request(w, ids[:2]).json()
    rid, secret = created["request"]["id"], created["fetch_secret"]
    for t in ("Trustee A", "Trustee B"):
        assert api.approve(t, rid).status_code == 200
    later = api.t0 + timedelta(days=60)
    with api.ctx.factory.begin() as s:
        s.execute(update(SealedRecordRow).values(expires=api.t0 + timedelta(days=30)))
    engine = api.ctx.engine
    release_read, sweep_waits = threading.Event(), threading.Event()
    locks = ("UPDATE audit_log SET id = id WHERE 0", "pg_advisory_xact_lock")

    def hook(conn, cursor, statement, params, context, executemany):
        me = threading.current_thread().name
        writes = statement.lstrip().upper().startswith(("UPDATE", "DELETE", "INSERT"))
        if me == "sweep" and (writes or any(k in statement for k in locks)):
            sweep_waits.set()  # its next statement may wait on the release
        reads = "FROM sealed_records" in statement and (
            "FOR UPDATE" in statement or engine.dialect.name == "sqlite"
        )
        if me != "sweep" and reads and not release_read.is_set():
            release_read.set()
            assert sweep_waits.wait(60), "the sweep never got going"

    out, errors = {}, {}

    def release():
        try:
            out["release"] = api.release(rid, secret)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors["release"] = repr(exc)

    def run_sweep():
        try:
            out["sweep"] = _server_sweep(api, later)
        except Exception as exc:  # noqa: BLE001
            errors["sweep"] = repr(exc)
        finally:
            sweep_waits.set()

    event.listen(engine, "before_cursor_execute", hook)
    try:
        opener = threading.Thread(target=release, name="release")
        opener.start()
        assert release_read.wait(60), "the release never read its records"
        sweeper = threading.Thread(target=run_sweep, name="sweep")
        sweeper.start()
        sweeper.join(90)
        opener.join(90)
    finally:
        event.remove(engine, "before_cursor_execute", hook)
        sweep_waits.set()
    assert not errors, errors
    r = out["release"]
    assert r.status_code == 200, r.text
    assert sorted(c["record_id"] for c in r.json()["released"]) == sorted(ids[:2])
    second = _server_sweep(api, later)  # the next run takes what is left
    with api.ctx.factory() as s:
        assert s.scalars(select(SealedRecordRow.id)).all() == []
        actions = [
            (e.action, e.detail)
            for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if e.action in ("request.release", "sweep.erase")
        ]
    assert set(out["sweep"].erased) | set(second.erased) == set(ids)
    first_release = next(i for i, (a, _) in enumerate(actions) if a == "request.release")
    for i, (a, d) in enumerate(actions):
        if a == "sweep.erase" and set(json.loads(d)["records"]) & set(ids[:2]):
            assert i > first_release, "a released record was erased before its release"
    assert audit.verify(api.ctx.factory).ok


def _server_sweep(api, now):
    """The server's sweep (vault.scheduler.sweep_once) at `now`."""
    from vault.scheduler import sweep_once

    return sweep_once(api.ctx.engine, api.keystore, api.ctx.policy, now)
