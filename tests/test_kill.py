"""SIGKILL of the vault in the middle of a retention sweep and of a release, on SQLite and
PostgreSQL, at chosen database events (not at chosen times).

The process that dies is a fork of the test process that builds the vault's context and
app afresh (its own engine and connections, as `escrow serve` does at start) and runs the
server's sweep, or the release through the app; a listener on every engine kills it with
SIGKILL just before its n-th database event (a statement, a commit, or just after a
commit). The test process is
the restarted vault: it checks what the issue asks of the state the dead one left, then runs
the sweep or the release again.

Sweep: no record past its retention survives the next sweep, no held record is erased, no
epoch key is shredded while a record of it remains, the trail verifies against the last
signed checkpoint, every erasure and every shredded key is in the trail (once).
Sender: the camera's outbox sender dies mid-send; no record is lost or taken in twice.
Agent: the whole capture agent (`escrow capture --vault-url`, against `escrow serve`) dies
at points of its life triggered by what it says (tests/killcapture.py) and is started again
on the same file: nothing lost or duplicated, no process of it left, the outbox drained.
Release: the request is released exactly once (crops returned and audited) or still pending
and releasable; never released without the crops reaching the requester. A death after the
release's commit and before the answer reached the requester leaves the release in the trail,
the shares wiped and the answer held sealed to the request's key: the restarted vault answers
the same crops again (audited as a redelivery, nothing opened again) until the requester
confirms receipt; then, and only then, a fetch is 410.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from tests.conftest import PASSPHRASE, TRUSTEES, ApiVault
from vault import anchor, audit
from vault.models import Approval, AuditEntry, KeyEpoch, OpeningRequest, SealedRecordRow


def killed_at(n: int, fn, trace: Path) -> bool:
    """Run fn() in a forked child that SIGKILLs itself just before its n-th database event;
    each event is appended to `trace` first. -> True if it died there, False if fn finished
    before its n-th event."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            seen = [0]
            out = open(trace, "w")  # noqa: SIM115 - the child never closes it: it dies

            def tick(kind: str, what: str) -> None:
                seen[0] += 1
                out.write(f"{kind}\t{what[:60]!r}\n")
                out.flush()
                if seen[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)

            event.listen(
                Engine,
                "before_cursor_execute",
                lambda conn, cur, stmt, *a: tick("sql", " ".join(stmt.split())),
            )
            event.listen(Engine, "commit", lambda conn: tick("commit", ""))
            event.listen(Session, "after_commit", lambda s: tick("committed", ""))
            fn()
        except BaseException:
            traceback.print_exc()
            os._exit(3)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the child failed otherwise (see its traceback)"
    return False


def _fresh_context(api):
    """What `escrow serve` builds at start: its own engine on the same database."""
    from vault.api import VaultContext
    from vault.db import make_engine

    url = api.ctx.engine.url.render_as_string(hide_password=False)
    return VaultContext(make_engine(url), api.keystore, api.ctx.policy, api.clock)


def _trail(api, action: str) -> list[dict]:
    with api.ctx.factory() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return [json.loads(e.detail) for e in rows]


# --- the sweep ------------------------------------------------------------------------------

HOURS = 12  # one kill round per hour: that hour's records expire and its epoch empties


@pytest.fixture
def hourly(db_url, tmp_path):
    """A vault whose authority issues 1-hour epochs: cam-1 has 2 records in each of the first
    HOURS epochs, each pair expiring just after its epoch ends, and 2 in a later epoch that
    outlive the test; cam-2's records are past their retention but held by a warrant."""
    from vault.keys import KeyStore

    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    ks = KeyStore(tmp_path / "keys")
    keys = ks.init(t0, [(n, PASSPHRASE) for n in TRUSTEES], 2, PASSPHRASE, epoch_hours=1)
    signer = ks.authority_signer(PASSPHRASE)
    for cam in ("cam-1", "cam-2"):
        ks.issue_epochs(signer, cam, t0, HOURS + 3)
    api = ApiVault(
        db_url, tmp_path, keystore=ks, trustee_keys=dict(zip(TRUSTEES, keys, strict=True)), t0=t0
    )
    w = api.warrant(["cam-2"], t0, t0 + timedelta(hours=HOURS), not_after=t0 + timedelta(days=60))
    assert w.status_code == 201, w.text
    expiry = {}
    for h in range(HOURS + 2):
        for cam in ("cam-1", "cam-2") if h < HOURS else ("cam-1",):
            recs = [api.seal(cam, t0 + timedelta(hours=h, minutes=m), track=m)[0] for m in (10, 20)]
            assert api.ingest(cam, recs).status_code == 200
            for r in recs:
                if cam == "cam-2":
                    expiry[r["record_id"]] = t0 + timedelta(minutes=1)
                elif h < HOURS:
                    expiry[r["record_id"]] = t0 + timedelta(hours=h + 1, minutes=5)
                else:
                    expiry[r["record_id"]] = t0 + timedelta(days=30)
    with api.ctx.factory.begin() as s:
        for rid, exp in expiry.items():
            s.execute(update(SealedRecordRow).where(SealedRecordRow.id == rid).values(expires=exp))
        assert all(
            s.scalars(
                select(SealedRecordRow.legal_hold).where(SealedRecordRow.camera_id == "cam-2")
            )
        )
    yield api, expiry
    api.client.close()
    api.ctx.engine.dispose()


def _sweep(engine, keystore, policy, now):
    """The server's sweep (vault.scheduler.sweep_once) in batches of one record, so a run has
    many transactions to die between, and keys kept 10 minutes past their epoch."""
    from vault import retention

    return retention.sweep(
        engine,
        keystore,
        now,
        1,
        after_warrant=policy.legal_hold.after_warrant,
        unfetched_after=policy.openings.unfetched_after,
        keep_keys_for=lambda camera: timedelta(minutes=10),
        rule=policy.retention.rule,
    )


def _check_sweep_invariants(api, expiry, now, witness):
    ks = api.keystore
    with api.ctx.factory() as s:
        rows = {r.id: r for r in s.scalars(select(SealedRecordRow))}
        epochs = {e.id: e for e in s.scalars(select(KeyEpoch))}
    # no record past its retention survives; no held and no unexpired record is erased
    for rid, exp in expiry.items():
        held = rid in rows and rows[rid].legal_hold
        if exp <= now and not held:
            assert rid not in rows, f"record {rid} survived past its retention"
        if exp > now:
            assert rid in rows, f"record {rid} was erased before its time"
    cam2 = [rid for rid, exp in expiry.items() if exp == api.t0 + timedelta(minutes=1)]
    assert all(rid in rows and rows[rid].legal_hold for rid in cam2), "a held record was erased"
    # no key shredded while a record of it remains; a shredded key is marked and in the trail
    shredded_in_trail = [e for d in _trail(api, "sweep.shred") for e in d["epochs"]]
    assert len(shredded_in_trail) == len(set(shredded_in_trail)), "a shred audited twice"
    for eid, e in epochs.items():
        gone = _shares_gone(ks, eid)
        if gone:
            assert not any(r.epoch_id == eid for r in rows.values()), f"{eid} shredded early"
            assert e.destroyed_at is not None and eid in shredded_in_trail, f"{eid} unaudited"
        else:
            assert e.destroyed_at is None, f"{eid} marked destroyed, its shares still on disk"
    # every erasure is in the trail, once; nothing in the trail was not erased
    erased = [rid for d in _trail(api, "sweep.erase") for rid in d["records"]]
    assert len(erased) == len(set(erased)), "an erasure audited twice"
    assert set(erased) == set(expiry) - set(rows), "an erasure missing from the trail"
    # the trail verifies, and extends the checkpoint signed before the kill
    assert audit.verify(api.ctx.factory).ok
    anchor.check_trail(api.ctx.factory, witness)


def _shares_gone(ks, epoch_id: str) -> bool:
    from escrow.sealing import KeyStoreError

    try:
        ks.shares(epoch_id)
    except KeyStoreError:
        return True
    return False


def test_sigkill_during_sweeps_loses_nothing_and_erases_nothing_early(hourly, tmp_path):
    api, expiry = hourly
    witness = tmp_path / "witness.jsonl"
    # where in each round the vault dies: spread over the sweep's events (about 40 a round)
    points = [1, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 34]
    assert len(points) == HOURS
    killed, trace = 0, tmp_path / "trace.tsv"
    for h, n in enumerate(points):
        now = api.t0 + timedelta(hours=h + 1, minutes=30)
        api.clock.t = now
        anchor.extend_witness(api.ctx.factory, api.ctx.checkpoint_key, now, witness)
        api.ctx.engine.dispose()  # the child opens its own connections

        def run_sweep(now=now):
            ctx = _fresh_context(api)
            _sweep(ctx.engine, ctx.keystore, ctx.policy, now)

        died = killed_at(n, run_sweep, trace)
        killed += died
        events = trace.read_text().splitlines()
        assert not died or len(events) == n
        _sweep(api.ctx.engine, api.keystore, api.ctx.policy, now)  # the restarted vault
        _check_sweep_invariants(api, expiry, now, witness)
    assert killed >= 10, f"only {killed} of {len(points)} rounds died mid-sweep"
    # the test can fail: every cam-1 record of the killed hours was erased, each key shredded
    assert len(_trail(api, "sweep.erase")) >= 2 * HOURS - 2
    assert sum(len(d["epochs"]) for d in _trail(api, "sweep.shred")) >= HOURS - 1


# --- the release ----------------------------------------------------------------------------

ROUNDS = 24  # one release counts its database events (about 18), then one dies at each


def test_sigkill_during_releases_releases_once_or_stays_releasable(api, tmp_path):
    """Approved requests; the first release runs through and counts its database events,
    then the release of each next request dies at the next event: every one is tried."""
    crops, reqs = {}, []
    for i in range(ROUNDS):
        rec, crop = api.seal("cam-1", api.t0 + timedelta(minutes=i + 1), track=i + 1)
        assert api.ingest("cam-1", [rec]).status_code == 200
        crops[rec["record_id"]] = crop
        w = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1))
        created = api.request(w.json()["id"], [rec["record_id"]]).json()
        rid, secret = created["request"]["id"], created["fetch_secret"]
        for t in ("Trustee A", "Trustee B"):
            assert api.approve(t, rid).status_code == 200
        reqs.append((rid, secret, rec["record_id"]))
    points = [10**6]  # the first runs through, counting; the points come from its count
    witness = tmp_path / "witness.jsonl"
    outcomes = {"pending": 0, "released": 0, "answer lost, fetched again": 0}
    for i, (rid, secret, record) in enumerate(reqs):
        if i == len(points):
            break
        n = points[i]
        anchor.extend_witness(api.ctx.factory, api.ctx.checkpoint_key, api.clock(), witness)
        got, trace = tmp_path / f"{rid}.json", tmp_path / f"{rid}.trace"
        api.ctx.engine.dispose()

        def fetch(rid=rid, secret=secret, got=got):
            from fastapi.testclient import TestClient

            from vault.api import create_app

            c = TestClient(create_app(_fresh_context(api)))
            r = c.post(
                f"/requests/{rid}/release",
                headers=api.h("Det. Vance"),
                json={"fetch_secret": secret},
            )
            assert r.status_code == 200, r.text
            got.write_bytes(r.content)  # the crops reached the requester

        died = killed_at(n, fetch, trace)
        events = trace.read_text().splitlines()
        if i == 0:
            assert not died and len(events) < ROUNDS, len(events)
            points += list(range(1, len(events) + 1))  # every event of a release, once
        with api.ctx.factory() as s:
            status = s.get(OpeningRequest, rid).status
            shares = s.scalars(select(Approval.sealed_share).where(Approval.request_id == rid))
            shares = list(shares)
        audited = [d for d in _trail(api, "request.release") if d["request"] == rid]
        assert audit.verify(api.ctx.factory).ok
        anchor.check_trail(api.ctx.factory, witness)
        if status == "pending":
            assert died and not got.exists() and not audited
            assert all(shares), "a pending request lost its shares"
            out = api.release(rid, secret)  # the restarted vault: still releasable
            assert out.status_code == 200, out.text
            assert out.json()["released"][0]["record_id"] == record
            outcomes["pending"] += 1
        else:
            assert status == "released"
            assert len(audited) == 1 and audited[0]["released"][0][0] == record
            assert shares == [None, None], "a released request kept its shares"
            if got.exists():
                body = json.loads(got.read_bytes())
                assert base64.b64decode(body["released"][0]["jpeg"]) == crops[record]
                outcomes["released"] += 1
            else:  # died between the commit and the answer: only ever after the commit
                assert died and any(e.startswith("commit") for e in events[:-1]), events
                again = api.release(rid, secret)  # the restarted vault: the held answer
                assert again.status_code == 200, again.text
                assert base64.b64decode(again.json()["released"][0]["jpeg"]) == crops[record]
                redelivered = [d for d in _trail(api, "request.redeliver") if d["request"] == rid]
                assert len(redelivered) == 1
                outcomes["answer lost, fetched again"] += 1
        received = api.call("Det. Vance", "POST", f"/requests/{rid}/received")
        assert received.status_code == 200, received.text
        assert api.release(rid, secret).status_code == 410  # received: never again
        assert len([d for d in _trail(api, "request.release") if d["request"] == rid]) == 1
    assert outcomes["pending"] >= 14, outcomes  # most points lie before the commit
    assert outcomes["answer lost, fetched again"] >= 1, outcomes  # one lies just after it
    assert sum(outcomes.values()) == len(points) >= 15


# --- the camera's sender --------------------------------------------------------------------

SENDS = 24


def test_sigkill_of_the_camera_sender_loses_and_duplicates_nothing(api, tmp_path):
    """The camera's outbox sender (escrow send) dies at its n-th database event, on either
    side (its outbox or, in the same forked process, the vault it posts to), SENDS times,
    with new records sealed between the deaths: every record is always in the outbox or the
    vault, stored once, and the outbox drains when a sender finally runs through."""
    from fastapi.testclient import TestClient

    from escrow.client import VaultClient
    from escrow.outbox import Sender
    from escrow.records import create_schema, make_engine, put, register_epochs, session_factory
    from escrow.sealing import record_from_fields
    from vault.api import create_app
    from vault.api.schemas import SealedRecordIn

    outbox_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    engine = make_engine(outbox_url)
    create_schema(engine)
    with session_factory(engine).begin() as s:
        register_epochs(s, api.keystore.certificates("cam-1"))
    engine.dispose()
    sealed_ids: list[str] = []

    def seal(n: int) -> None:
        eng = make_engine(outbox_url)
        for _ in range(n):
            i = len(sealed_ids)
            w = api.seal("cam-1", api.t0 + timedelta(minutes=1, seconds=i), track=i)[0]
            rec = record_from_fields(dict(SealedRecordIn.model_validate(w)))
            put(session_factory(eng), [(rec, i, -1.0)], api.t0, api.t0 + timedelta(days=3))
            sealed_ids.append(w["record_id"])
        eng.dispose()

    def outbox() -> list[str]:
        eng = make_engine(outbox_url)
        with session_factory(eng)() as s:
            out = list(s.scalars(select(SealedRecordRow.id)))
        eng.dispose()
        return out

    def vault() -> list[str]:
        with api.ctx.factory() as s:
            return list(s.scalars(select(SealedRecordRow.id)))

    def send():
        client = VaultClient("http://vault", api.tokens["cam-1"])
        client.http = TestClient(create_app(_fresh_context(api)))
        client.http.headers["Authorization"] = f"Bearer {api.tokens['cam-1']}"
        Sender(session_factory(make_engine(outbox_url)), client, batch=4).drain_once()

    seal(12)
    killed, trace = 0, tmp_path / "send.trace"
    for i in range(SENDS):
        n = 2 + (i * 11) % 53  # spread over a drain's events (a batch of 4 is about 15)
        api.ctx.engine.dispose()
        died = killed_at(n, send, trace)
        killed += died
        waiting, stored = outbox(), vault()
        assert len(stored) == len(set(stored)), "a record stored twice"
        assert set(waiting) | set(stored) == set(sealed_ids), "a record lost"
        seal(2)  # the camera goes on sealing between the deaths
    assert killed >= 20, f"only {killed} of {SENDS} sends died mid-way"
    send()  # a sender that runs through: the outbox drains
    assert outbox() == []
    assert sorted(vault()) == sorted(sealed_ids)
    new = [rid for d in _trail(api, "ingest") for rid in d["new"]]
    assert sorted(new) == sorted(sealed_ids), "a record taken in as new twice, or unaudited"
    assert audit.verify(api.ctx.factory).ok


# --- the whole camera agent -----------------------------------------------------------------

AGENT_KILLS = 6  # benchmarks/kill_capture.py runs 20 (each restart imports torch again)


@pytest.fixture(scope="module")
def clean_ids(tmp_path_factory, data_dir) -> set[str]:
    """The records of one undisturbed capture of the street clip (shared by both engines)."""
    from tests.killcapture import clean_capture

    clip = data_dir / "video" / "arcade-1080p.mp4"
    return clean_capture(tmp_path_factory.mktemp("clean-capture"), clip)


def test_sigkill_of_the_capture_agent_loses_duplicates_and_leaves_behind_nothing(
    db_url, tmp_path, data_dir, clean_ids
):
    """`escrow capture CLIP --vault-url URL` (the agent, its sender thread and any process
    it starts) SIGKILLed AGENT_KILLS times against `escrow serve`, at points drawn from a
    fixed seed and triggered by what the agent and the vault say (tests/killcapture.py):
    while it starts, once its keys are loaded, once its scoring process was spawned, after
    its n-th stored record, after the vault's n-th answer to its sender; the same capture
    started again after each. Nothing
    it reported stored is ever lost, the vault never holds a record a clean capture does
    not make, no process of a killed agent outlives it, and after a capture that runs
    through and `escrow send` the outbox is empty and the vault holds exactly the clean
    capture's records, each taken in once, its audit trail intact."""
    from tests.killcapture import make_world, run_kills

    assert len(clean_ids) >= 5
    world = make_world(tmp_path, db_url, data_dir / "video" / "arcade-1080p.mp4")
    report = run_kills(world, clean_ids, AGENT_KILLS, log=print)
    told = "\n".join(r.line() for r in report.rounds) + f"\n{report.final}\n{report.summary()}"
    assert report.kills == AGENT_KILLS, told
    killed = {r.mode for r in report.rounds if r.killed}
    assert killed == {"starting", "loaded", "spawned", "sealed", "posted"}, told  # every stage
    mid_clip = [r for r in report.rounds if r.killed and 0 < r.sealed < len(clean_ids)]
    assert mid_clip, told  # some died with records stored and tracks still to come
    assert not report.lost, f"reported stored, then gone: {report.lost}\n{told}"
    assert not report.extra, f"records no clean capture makes: {report.extra}\n{told}"
    assert not report.duplicated, f"taken in twice: {report.duplicated}\n{told}"
    assert not report.orphans, f"outlived the killed agent: {report.orphans}\n{told}"
    assert not report.missing, f"never reached the vault: {report.missing}\n{told}"
    assert report.outbox_left == 0, told
    assert report.audit_ok, told


def test_the_orphan_search_finds_a_pool_worker_that_outlives_its_killed_parent():
    """The search the test above relies on can fail: a spawned ProcessPoolExecutor worker
    (and multiprocessing's resource tracker) outlive their SIGKILLed parent unless the
    worker watches it, and it finds both by the environment they inherited."""
    import subprocess
    import sys
    import uuid

    from tests.killcapture import MARK, descendants, marked, outliving

    code = (
        "import concurrent.futures as cf, multiprocessing as mp, time\n"
        "pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context('spawn'))\n"
        "pool.submit(time.sleep, 0).result()\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    mark = uuid.uuid4().hex
    p = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, MARK: mark},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline() == "ready\n"
        assert len(descendants(p.pid)) == 2
    finally:
        p.kill()
        p.wait()
    orphans, _ = outliving(mark, grace=2.0)
    assert len(orphans) == 2, orphans
    assert any("spawn_main" in o for o in orphans) and any("resource_tracker" in o for o in orphans)
    assert marked(mark) == []  # and they were ended
