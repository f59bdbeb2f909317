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
