"""The command line as people use it (issue 25): header rows and `--json` on every list,
cameras registered without curl, the audit trail read and followed, the trustee's summary
before approving, released crops kept private, and a second fetch told in words.

Real HTTP (uvicorn in a thread) and the `escrow` command in a subprocess, as a user runs it."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, ApiVault, LiveServer, escrow_cli


def escrow(args, env, timeout=120):
    return escrow_cli(args, env, timeout)


@pytest.fixture
def live(tmp_path):
    """A vault on SQLite under real HTTP with three sealed records of cam-1; env(who) is the
    environment of that person's `escrow`."""
    from vault.db import upgrade

    url = f"sqlite:///{tmp_path / 'vault.db'}"
    upgrade(url)
    api = ApiVault(url, tmp_path)
    recs = [api.seal("cam-1", api.t0 + timedelta(minutes=10 + i), track=i)[0] for i in range(3)]
    assert api.ingest("cam-1", recs).status_code == 200
    server = LiveServer(api.app)

    def env(who: str) -> dict:
        return {
            **os.environ,
            "ESCROW_VAULT_URL": server.url,
            "ESCROW_TOKEN": api.tokens[who],
            "ESCROW_REQUESTS_DIR": str(tmp_path / "requests"),
            "ESCROW_TRUSTEE_PASSPHRASE": PASSPHRASE,
        }

    api.env = env
    api.records = [r["record_id"] for r in recs]
    yield api
    server.stop()
    api.client.close()
    api.ctx.engine.dispose()


def _ok(r):
    assert r.returncode == 0, r.stderr
    return r.stdout


def _header(out: str) -> list[str]:
    return out.splitlines()[0].split()


def _warrant(api) -> str:
    out = _ok(
        escrow(
            [
                "warrant",
                "create",
                "--case",
                "K-25",
                "--basis",
                "§ 100h StPO",
                "--camera",
                "cam-1",
                "--from",
                api.t0.isoformat(),
                "--to",
                (api.t0 + timedelta(hours=1)).isoformat(),
                "--valid-from",  # the vault runs on a fake clock at t0
                api.t0.isoformat(),
                "--valid-until",
                (api.t0 + timedelta(days=3)).isoformat(),
                "--json",
            ],
            api.env("Judge Ito"),
        )
    )
    return json.loads(out)["id"]


def test_every_list_has_a_header_row_and_json(live):
    admin, judge, inv = live.env("Admin"), live.env("Judge Ito"), live.env("Det. Vance")
    added = _ok(escrow(["camera", "add", "lobby-2", "--name", "Lobby, east door"], admin))
    assert _header(added) == ["CAMERA", "NAME", "REGISTERED"] and "lobby-2" in added
    listed = _ok(escrow(["camera", "list"], admin))
    assert _header(listed) == ["CAMERA", "NAME", "REGISTERED"]
    assert {c["id"] for c in json.loads(_ok(escrow(["camera", "list", "--json"], admin)))} == {
        "cam-1",  # registered by its first ingest
        "lobby-2",
    }
    again = escrow(["camera", "add", "lobby-2"], admin)
    assert again.returncode == 6 and "exists" in again.stderr and "Traceback" not in again.stderr
    tok = _ok(escrow(["camera", "token", "lobby-2"], admin)).splitlines()[-1]
    assert tok.startswith("kfe_")  # a camera token made without curl: it can read its keyring
    assert escrow(["camera", "list"], {**admin, "ESCROW_TOKEN": tok}).returncode == 6

    wid = _warrant(live)
    out = _ok(escrow(["warrant", "list"], judge))
    assert _header(out)[:4] == ["ID", "STATE", "CASE", "CAMERAS"]
    assert wid in out.splitlines()[1] and "K-25" in out
    assert [w["id"] for w in json.loads(_ok(escrow(["warrant", "list", "--json"], judge)))] == [wid]
    out = _ok(escrow(["warrant", "records", wid], inv))
    assert _header(out) == ["RECORD", "CAMERA", "CAPTURED", "QUALITY", "EXPIRES", "HOLD"]
    assert len(out.splitlines()) == 4
    _ok(escrow(["request", "create", "--warrant", wid, "--all", "--reason", "seen"], inv))
    out = _ok(escrow(["request", "status"], inv))
    assert _header(out)[:5] == ["ID", "STATUS", "WARRANT", "RECORDS", "APPROVALS"]
    assert "pending" in out and "0/2" in out
    assert len(json.loads(_ok(escrow(["request", "status", "--json"], inv)))) == 1
    empty = _ok(escrow(["request", "status"], live.env("Det. Okafor")))
    assert _header(empty)[:2] == ["ID", "STATUS"] and len(empty.splitlines()) == 1


def test_audit_list_filters_and_tail_follows_until_stopped(live):
    auditor, judge = live.env("Auditor"), live.env("Judge Ito")
    wid = _warrant(live)
    out = _ok(escrow(["audit", "list", "--action", "warrant.issue"], auditor))
    assert _header(out) == ["ID", "TIME", "ACTOR", "ACTION", "DETAIL"]
    rows = out.splitlines()[1:]
    assert len(rows) == 1 and "judge:Judge Ito" in rows[0] and wid in rows[0]
    by_record = json.loads(
        _ok(escrow(["audit", "list", "--record", live.records[0], "--json"], auditor))
    )
    assert [e["action"] for e in by_record] == ["ingest"]
    by_role = json.loads(_ok(escrow(["audit", "list", "--actor", "judge", "--json"], auditor)))
    assert {e["action"] for e in by_role} == {"warrant.issue"}
    later = (live.t0 + timedelta(days=1)).isoformat()
    assert json.loads(_ok(escrow(["audit", "list", "--since", later, "--json"], auditor))) == []
    naive = escrow(["audit", "list", "--since", "2026-12-01T00:00"], auditor)
    assert naive.returncode == 2 and "time zone" in naive.stderr
    denied = escrow(["audit", "list"], judge)  # the trail is the auditors' to read
    assert denied.returncode == 6 and "403" in denied.stderr

    tail = subprocess.Popen(
        [sys.executable, "-m", "escrow.cli", "audit", "tail", "--json", "--last", "1"]
        + ["--interval", "0.2", "--action", "warrant."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=auditor,
    )
    try:
        first = json.loads(tail.stdout.readline())
        assert first["action"] == "warrant.issue"
        revoked = escrow(["warrant", "revoke", wid, "--reason", "case closed"], judge)
        assert _header(_ok(revoked))[:2] == ["ID", "STATE"]
        new = json.loads(tail.stdout.readline())  # appears without restarting the tail
        assert new["action"] == "warrant.revoke" and new["detail"]["reason"] == "case closed"
    finally:
        time.sleep(0.3)
        tail.send_signal(signal.SIGINT)
        tail.wait(20)
    assert tail.returncode == 0, tail.stderr.read()


def test_trustee_sees_the_case_before_approving_and_crops_stay_private(live, tmp_path):
    inv = live.env("Det. Vance")
    wid = _warrant(live)
    ask = ["request", "create", "--warrant", wid, "--all", "--reason", "robbery 14:02"]
    made = escrow(ask, inv)
    rid = _ok(made).splitlines()[0].split()[-1]
    assert "robbery 14:02" in made.stdout and "fetch secret kept" in made.stderr

    review = _ok(escrow(["request", "review", rid], live.env("Trustee A")))
    for shown in ("K-25", "§ 100h StPO", "robbery 14:02", "Det. Vance", *live.records):
        assert shown in review, shown
    for name in ("Trustee A", "Trustee B"):
        key_file = tmp_path / f"{name}.key"
        live.trustee_keys[name].write(key_file)
        # no --yes: the summary comes first, then the question; "n" approves nothing
        no = subprocess.run(
            [sys.executable, "-m", "escrow.cli", "request", "approve", rid, "--key", key_file],
            input="n\n",
            capture_output=True,
            text=True,
            env=live.env(name),
            timeout=60,
        )
        assert no.returncode == 1 and "not approved" in no.stderr
        assert no.stderr.index("§ 100h StPO") < no.stderr.index("Approve this request?")
        for shown in ("K-25", "robbery 14:02", "Det. Vance", live.records[0]):
            assert shown in no.stderr
        yes = _ok(escrow(["request", "approve", rid, "--key", key_file, "--yes"], live.env(name)))
        assert "approved" in yes and name in yes

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    refused = escrow(["request", "fetch", rid, "--out", busy], inv)  # before the release
    assert refused.returncode == 2 and "not empty" in refused.stderr

    # a fetch whose answer never arrived (the vault died after its commit, the line broke):
    # released and audited, nothing written; the same command gets the same crops again
    secret = (Path(inv["ESCROW_REQUESTS_DIR"]) / f"{rid}.secret").read_text().strip()
    lost = live.release(rid, secret)
    assert lost.status_code == 200 and len(lost.json()["released"]) == 3

    os.umask(0o022)  # the usual umask: files 0644, folders 0755 unless made otherwise
    out = tmp_path / "crops"
    got = _ok(escrow(["request", "fetch", rid, "--out", out], inv))
    assert "3 crop(s) written" in got
    for r in lost.json()["released"]:
        assert (out / f"{r['record_id']}.jpg").read_bytes() == base64.b64decode(r["jpeg"])
    # written, so received: the vault erased the copy it held for a lost answer
    after = live.call("Det. Vance", "GET", f"/requests/{rid}").json()
    assert after["held_until"] is None
    acts = live.audit_actions()
    assert [
        acts.count(a) for a in ("request.release", "request.redeliver", "request.received")
    ] == [
        1,
        1,
        1,
    ]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    files = sorted(out.iterdir())
    assert {p.name for p in files} >= {"release.json", *(f"{r}.jpg" for r in live.records)}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)

    twice = escrow(["request", "fetch", rid, "--out", tmp_path / "again"], inv)
    assert twice.returncode == 6
    assert "already released (410)" in twice.stderr and "no fetch secret" not in twice.stderr
    assert not (tmp_path / "again").exists()


def test_retention_report_says_whose_data_was_erased_and_why(live, tmp_path):
    import csv
    import io

    from vault.scheduler import run_sweep

    live.clock.advance(days=4)  # past the shipped policy's 72 h
    assert len(run_sweep(live.ctx).erased) == 3
    auditor = live.env("Auditor")
    rows = list(
        csv.DictReader(io.StringIO(_ok(escrow(["retention", "report", "--api", "--csv"], auditor))))
    )
    assert {r["record"] for r in rows} == set(live.records)
    for r in rows:
        assert r["camera"] == "cam-1" and r["rule"] == "retention 3d (default)"
        assert r["captured"] < r["expires"] < r["erased"]
    on_db = {**auditor, "ESCROW_DATABASE_URL": str(live.ctx.engine.url)}
    out = _ok(escrow(["retention", "report"], on_db))  # the same, read from the database
    lines = out.splitlines()
    assert lines[0] == "erased records: 3"
    assert _header(lines[1]) == ["RECORD", "CAMERA", "CAPTURED", "EXPIRES", "ERASED", "RULE"] + [
        "KEY",
        "DESTROYED",
    ]
    assert all(rid in out for rid in live.records) and "retention 3d (default)" in out
    whole = json.loads(_ok(escrow(["retention", "report", "--json"], on_db)))
    assert whole["erased_records"] == 3 and whole["erased"][0]["camera"] == "cam-1"
    both = escrow(["retention", "report", "--json", "--csv"], on_db)
    assert both.returncode == 2 and "not both" in both.stderr


def test_python_client_typed_methods_and_context_manager(live):
    from datetime import datetime

    from escrow.client import VaultClient, VaultError

    url = live.env("Judge Ito")["ESCROW_VAULT_URL"]
    with VaultClient(url, live.tokens["Judge Ito"]) as judge:
        with pytest.raises(ValueError, match="time zone"):  # never guessed
            judge.create_warrant(
                "K", "b", ["cam-1"], datetime(2026, 1, 1), live.t0, live.t0, live.t0
            )
        w = judge.create_warrant(
            case_ref="K-py",
            legal_basis="§ 1",
            cameras=["cam-1"],
            window_start=live.t0,
            window_end=live.t0 + timedelta(hours=1),
            not_after=live.t0 + timedelta(days=1),
            not_before=live.t0,
        )
        assert judge.warrant(w["id"])["case_ref"] == "K-py"
        with pytest.raises(VaultError) as refused:
            judge.audit()
        assert refused.value.status == 403
    assert judge.http.is_closed  # the with block closed it

    with VaultClient(url, live.tokens["Det. Vance"]) as inv:
        ids = [r["id"] for r in inv.warrant_records(w["id"])]
        made = inv.create_request(w["id"], ids, "reason")
    rid, secret = made["request"]["id"], made["fetch_secret"]
    for name in ("Trustee A", "Trustee C"):
        assert live.approve(name, rid).status_code == 200
    with VaultClient(url, live.tokens["Det. Vance"]) as inv:
        assert len(inv.release(rid, secret)["released"]) == 3
        assert inv.received(rid)["held_until"] is None
        with pytest.raises(VaultError) as again:
            inv.release(rid, secret)
        assert again.value.status == 410 and "already released" in again.value.detail
    with VaultClient(url, live.tokens["Auditor"]) as aud:
        pages, after = [], 0
        while page := aud.audit(after=after, limit=2, action="request."):
            pages.append(page)
            after = page[-1]["id"]
        assert [e["action"] for p in pages for e in p] == [
            "request.create",
            "request.approve",
            "request.approve",
            "request.release",
            "request.received",
        ]
        assert aud.retention_report()["erased_records"] == 0


def test_audit_filters_on_both_engines(api):
    """GET /audit's filters as SQL on SQLite and PostgreSQL: an action prefix, a role, a
    record named in an entry's detail, a time window; LIKE wildcards in a filter are text."""
    rec, _ = api.seal("cam-1", api.t0 + timedelta(minutes=5))
    assert api.ingest("cam-1", [rec]).status_code == 200
    api.clock.advance(minutes=10)
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]

    def get(**params) -> list[str]:
        r = api.call("Auditor", "GET", "/audit", params=params)
        assert r.status_code == 200, r.text
        return [e["action"] for e in r.json()]

    assert get(action="warrant.") == ["warrant.issue"]
    assert get(action="warrant") == []  # exact unless it ends in '.'
    assert get(actor="judge") == ["warrant.issue"]
    assert get(actor="judge:Judge Ito") == ["warrant.issue"]
    assert get(actor="jud") == []  # a role, not any prefix
    assert get(record=rec["record_id"]) == ["ingest"]
    assert get(record=wid) == ["warrant.issue"]
    later = (api.t0 + timedelta(minutes=5)).isoformat()
    assert get(since=later) == ["warrant.issue"] and get(until=later) == ["ingest"]
    assert get(actor="%") == get(actor="judge:%") == []  # wildcards are text
    assert api.call("Auditor", "GET", "/audit", params={"record": "%"}).status_code == 422
