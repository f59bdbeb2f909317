"""`escrow serve`: uvicorn with the API (docs at /docs) and the retention sweeper inside,
whose first run at start catches up on what fell due while no server ran."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
from conftest import ServeProcess, make_authority
from sqlalchemy import func, select

from escrow.keyring import CameraKeyring
from vault import audit, store
from vault.db import make_engine, session_factory, upgrade
from vault.models import SealedRecordRow


def _count(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(SealedRecordRow))


def test_serve_runs_the_api_and_catches_up_on_sweeps(tmp_path):
    now = datetime.now(UTC)
    ks, _ = make_authority(tmp_path / "keys", now - timedelta(days=5), ("cam",), epochs=8)
    url = f"sqlite:///{tmp_path / 'vault.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    ring = CameraKeyring(ks.authority_public_raw(), ks.certificates("cam"), "cam")
    with factory.begin() as s:
        store.register_epochs(s, ks.certificates())
    from escrow.sealing import RecordHeader

    for i, age in enumerate(days * 24 for days in (4, 4, 1)):  # two past 72 h, one not
        t = now - timedelta(hours=age)
        key = ring.key_for(t, "cam")
        rid = f"00000000-0000-4000-8000-00000000000{i}"
        sealed = key.seal(b"\x00jpeg", {}, RecordHeader(rid, "cam", key.cert.epoch_id, t, t, t))
        store.put(factory, [(sealed, i, 0.0)], t, t + timedelta(hours=72))
    assert _count(factory) == 3

    env = {**os.environ, "ESCROW_KEYS_DIR": str(ks.root), "ESCROW_DATABASE_URL": url}
    server = ServeProcess(env, tmp_path)  # --port 0: the port it bound is in its port file
    try:
        server.ready()
        base = server.url
        assert httpx.get(f"{base}/health").status_code == 200  # accepting once announced
        assert httpx.get(f"{base}/docs").status_code == 200
        assert httpx.get(f"{base}/warrants").status_code == 401
        deadline = time.monotonic() + 60
        while _count(factory) != 1:  # the sweep at start erases the two expired records
            assert time.monotonic() < deadline, "the sweeper did not run at start"
            time.sleep(0.2)
    finally:
        rc = server.stop()
    errs = server.output()
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert rc in (0, -signal.SIGTERM), errs[-2000:]
    assert f"listening on {base}\n" in errs and server.port != 0
    assert "Application shutdown complete" in errs
    assert "sweeper on" in errs and "retention sweep: {'skipped': False, 'erased': 2" in errs
    with factory() as s:
        left = s.scalars(select(SealedRecordRow.id)).all()
    assert left == ["00000000-0000-4000-8000-000000000002"]
    assert audit.verify(factory).ok
    engine.dispose()


def test_serve_refuses_to_start_without_an_authority(tmp_path):
    env = {
        **os.environ,
        "ESCROW_KEYS_DIR": str(tmp_path / "none"),
        "ESCROW_DATABASE_URL": f"sqlite:///{tmp_path / 'v.db'}",
    }
    r = subprocess.run(
        [sys.executable, "-m", "escrow.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "escrow keys init" in r.stderr and "Traceback" not in r.stderr


def test_serve_on_an_explicit_port_binds_that_port_or_says_why_not(tmp_path):
    """An explicit --port is bound as given: a second server asking for the port the first
    one took fails at start with uvicorn's one line and exit 3, never a traceback; a port
    file in a missing folder is refused before anything starts."""
    ks, _ = make_authority(tmp_path / "keys", datetime.now(UTC), ("cam",), epochs=1)
    url = f"sqlite:///{tmp_path / 'vault.db'}"
    upgrade(url)
    env = {**os.environ, "ESCROW_KEYS_DIR": str(ks.root), "ESCROW_DATABASE_URL": url}
    first = ServeProcess(env, tmp_path, "--no-sweep")
    try:
        first.ready()
        taken = subprocess.run(
            [sys.executable, "-m", "escrow.cli", "serve", "--port", str(first.port), "--no-sweep"]
            + ["--port-file", str(tmp_path / "second.port")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert httpx.get(f"{first.url}/health").status_code == 200  # the first still serves
    finally:
        first.stop()
    assert taken.returncode == 3, taken.stderr[-2000:]
    assert "address already in use" in taken.stderr and "Traceback" not in taken.stderr
    assert "listening on" not in taken.stderr and not (tmp_path / "second.port").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "escrow.cli", "serve", "--port", "0"]
        + ["--port-file", str(tmp_path / "missing" / "port")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--port-file: no folder" in bad.stderr
    assert "Traceback" not in bad.stderr
