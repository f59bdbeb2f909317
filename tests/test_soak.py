"""A short soak: `benchmarks/soak.py`'s own code for 25 s with 4 cameras against the real
PostgreSQL (CI=true makes a missing server a failure, as for every PostgreSQL test): each
camera's outbox sends to one of two `escrow serve` replicas while their sweepers erase every
5 s what is 10 s old and one opening (warrant, request, two approvals, release) happens.

Nothing may be lost, taken in twice or left out of the audit trail, no call may be answered
5xx; and the run must have done what it is there for (records erased and a key shredded by
the sweepers, crops released, both replicas used). The accounting itself is then shown to
catch a row deleted behind the trail's back, a record taken in twice, a record that never
arrived and a release whose entry does not match it: otherwise its zeros would prove nothing.
"""

from __future__ import annotations

import copy
import uuid

import pytest
from sqlalchemy import delete, select

from benchmarks.soak import Made, SoakConfig, account, run
from escrow.canonical import utcnow
from vault import audit
from vault.db import make_engine, session_factory
from vault.models import SealedRecordRow


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_short_soak_loses_duplicates_and_leaves_unaudited_nothing(db_url, tmp_path):
    cfg = SoakConfig(
        db_url,
        tmp_path,
        cameras=4,
        seconds=25,
        rate=2.0,
        sweep_seconds=5,
        retention_seconds=10,
        openings=1,
        sample_seconds=2,
        log=lambda m: None,
    )
    r = run(cfg)
    a = r["accounting"]
    assert a["made"] >= 80, a  # 4 cameras x 2/s x 25 s: about 200
    assert (a["lost"], a["duplicated"], a["unaudited"]) == (0, 0, 0), a["examples"]
    assert a["not_made_by_a_camera"] == 0 and a["bytes_changed"] == 0
    assert r["outboxes"] == {"waiting": 0, "refused": {}}
    assert r["audit_verify"]["ok"], r["audit_verify"]
    assert r["client_5xx"] == 0 and r["errors"] == {}, r["errors"]
    for name, rep in r["replicas"].items():
        assert rep["5xx"] == {} and rep["tracebacks"] == 0, (name, rep)
        assert rep["answers"].get("2xx", 0) > 10, (name, rep)  # both replicas took records
    # the run did what a soak is for: sweeps erased and shredded, an opening released
    assert a["erased"] > 0 and a["stored"] > 0 and a["erased"] + a["stored"] == a["made"]
    assert a["shredded_epochs"] >= 1  # yesterday's key, ended and empty
    (o,) = r["openings"]
    assert "failed" not in o, o
    assert o["released"] == len(o["records"]) > 0 and o["crops_not_as_sealed"] == []
    assert a["released"] == o["released"] and a["release_entries"] == 1
    assert r["ingest_latency_ms"]["p99"] is not None and r["records_per_s"] > 0
    assert set(r["memory"]) == {"cameras", "replica-1", "replica-2"}

    # the accounting can fail: tamper with the vault and with what the run knows
    made, openings = dict(r["made"]), copy.deepcopy(r["openings"])
    engine = make_engine(db_url)
    factory = session_factory(engine)
    with factory.begin() as s:
        stored = list(s.scalars(select(SealedRecordRow.id).order_by(SealedRecordRow.id)))
        gone = next(rid for rid in stored if rid not in o["records"])
        s.execute(delete(SealedRecordRow).where(SealedRecordRow.id == gone))  # no entry
        erased = sorted(set(made) - set(stored))[0]
        again = {"new": [erased], "repeated": 0, "held": 0}  # taken in a second time
        audit.append(s, "camera:cam-01", "ingest", again, utcnow())
    engine.dispose()
    made[str(uuid.uuid4())] = Made(bytes(16), bytes(16))  # a record that never arrived
    openings[0]["released_ids"] = openings[0]["released_ids"][1:]  # a release not as audited
    bad = account(db_url, made, openings)
    assert (bad["lost"], bad["duplicated"], bad["unaudited"]) == (2, 1, 2), bad
