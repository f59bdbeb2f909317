"""Concurrency on PostgreSQL through real HTTP (uvicorn's worker threads): parallel ingests
and openings, and a race to release one request twice. The audit chain stays whole, every
record is stored once, and a request's crops go out exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from conftest import LiveServer
from sqlalchemy import func, select

from vault import audit
from vault.models import AuditEntry, SealedRecordRow


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_parallel_ingests_and_openings_keep_the_chain(api):
    # records and approved requests prepared first
    base = [api.seal("cam-1", api.t0 + timedelta(minutes=1 + i), track=i)[0] for i in range(6)]
    assert api.ingest("cam-1", base).status_code == 200
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]
    requests = []
    for rec in base:
        made = api.request(wid, [rec["record_id"]]).json()
        rid = made["request"]["id"]
        for t in ("Trustee A", "Trustee B"):
            assert api.approve(t, rid).status_code == 200
        requests.append((rid, made["fetch_secret"]))
    batches = [
        [
            api.seal(cam, api.t0 + timedelta(minutes=10 + b, seconds=i), track=100 * b + i)[0]
            for i in range(8)
        ]
        for cam in ("cam-1", "cam-2")
        for b in range(6)
    ]
    entries_before = len(api.audit_actions())

    server = LiveServer(api.app)
    try:

        def post(who, path, body):
            with httpx.Client(base_url=server.url, timeout=60) as c:
                return c.post(path, json=body, headers=api.h(who)).status_code

        jobs = [
            ("cam-1" if b[0]["camera_id"] == "cam-1" else "cam-2", "/ingest", {"records": b})
            for b in batches
        ]
        jobs += [
            ("Det. Vance", f"/requests/{rid}/release", {"fetch_secret": s}) for rid, s in requests
        ]
        jobs += [
            ("Det. Vance", f"/requests/{requests[0][0]}/release", {"fetch_secret": requests[0][1]})
        ] * 3  # the same release, raced
        jobs += [(b[0]["camera_id"], "/ingest", {"records": b}) for b in batches[:4]]  # retries
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda j: post(*j), jobs))
    finally:
        server.stop()

    n_ingest = len(batches)
    assert statuses[:n_ingest] == [200] * n_ingest
    releases = statuses[n_ingest : n_ingest + len(requests) + 3]
    # each request opened exactly once; the raced fetches of one get its held answer again
    # (200, audited as a redelivery) until its receipt is confirmed
    assert releases == [200] * (len(requests) + 3)
    assert statuses[-4:] == [200] * 4
    with api.ctx.factory() as s:
        stored = s.scalar(select(func.count()).select_from(SealedRecordRow))
        acts = list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert stored == len(base) + sum(len(b) for b in batches)
    new = acts[entries_before:]
    assert new.count("ingest") == n_ingest + 4
    assert new.count("request.release") == len(requests)
    assert new.count("request.redeliver") == 3 and new.count("refused") == 0
    assert audit.verify(api.ctx.factory).ok
