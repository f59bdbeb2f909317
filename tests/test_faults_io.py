"""The vault's storage failing under it: a full disk and a read-only file system (a small
tmpfs the test mounts; root only, skipped otherwise outside CI), and PostgreSQL dropping the
connection in the middle of a request. Each time: a 503 with Retry-After and one line, or one
line and an exit code from the command line, nothing half-written, the trail intact, and the
service back once the cause is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, text

from tests.conftest import IN_CI, ApiVault, make_authority
from vault import audit
from vault.models import AuditEntry, SealedRecordRow


def _mount(path, *opts: str) -> None:
    r = subprocess.run(["mount", *opts, str(path)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        msg = f"cannot mount a test file system ({r.stderr.strip()})"
        if IN_CI and os.geteuid() == 0:
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs of its own at tmp_path/disk, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount(disk, "-t", "tmpfs", "-o", "size=3m", "tmpfs")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _vault_on(disk, tmp_path):
    from datetime import UTC, datetime

    from vault.db import upgrade

    url = f"sqlite:///{disk / 'vault.db'}"
    upgrade(url)
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ks, keys = make_authority(tmp_path / "keys", t0)  # the key store lives elsewhere
    return ApiVault(url, tmp_path, keystore=ks, trustee_keys=keys, t0=t0)


def _batch(api, n, size=40_000, start=0):
    """n records whose crops are `size` random bytes (sealed: as large, incompressible)."""
    return [
        api.seal(
            "cam-1",
            api.t0 + timedelta(minutes=start + i, seconds=1),
            crop=os.urandom(size),
            track=start + i,
        )[0]
        for i in range(n)
    ]


def _state(api) -> tuple[int, int]:
    with api.ctx.factory() as s:
        return s.scalar(select(func.count(SealedRecordRow.id))), s.scalar(
            select(func.count(AuditEntry.id))
        )


def _is_503(r) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers.get("Retry-After", "").isdigit()
    assert "\n" not in r.json()["detail"] and "Traceback" not in r.text


def test_a_full_disk_is_503_nothing_half_written_and_back_when_freed(small_disk, tmp_path):
    api = _vault_on(small_disk, tmp_path)
    try:
        first = _batch(api, 2)
        assert api.ingest("cam-1", first).status_code == 200
        before = _state(api)
        filler = small_disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:  # fill the file system to its last block
            for chunk in (65536, 512):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)
        batch = _batch(api, 20, start=10)
        r = api.ingest("cam-1", batch)
        _is_503(r)
        assert _state(api) == before, "a batch was half-written on a full disk"
        assert api.call("Auditor", "GET", "/audit").status_code in (200, 503)
        filler.unlink()  # the cause is gone
        assert api.ingest("cam-1", batch).status_code == 200
        assert _state(api) == (before[0] + 20, before[1] + 1)
        assert audit.verify(api.ctx.factory).ok
    finally:
        api.client.close()
        api.ctx.engine.dispose()


def test_a_read_only_database_is_503_and_one_line_from_the_command(small_disk, tmp_path):
    api = _vault_on(small_disk, tmp_path)
    try:
        assert api.ingest("cam-1", _batch(api, 1, size=2000)).status_code == 200
        before = _state(api)
        api.ctx.engine.dispose()
        _mount(small_disk, "-o", "remount,ro")
        batch = _batch(api, 3, size=2000, start=5)
        _is_503(api.ingest("cam-1", batch))
        env = {
            **os.environ,
            "ESCROW_DATABASE_URL": str(api.ctx.engine.url),
            "ESCROW_KEYS_DIR": str(api.keystore.root),
        }
        cli = subprocess.run(
            [sys.executable, "-m", "escrow.cli", "sweep", "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert cli.returncode != 0 and "Traceback" not in cli.stderr, cli.stderr
        assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr
        api.ctx.engine.dispose()
        _mount(small_disk, "-o", "remount,rw")  # the cause is gone
        assert _state(api) == before
        assert api.ingest("cam-1", batch).status_code == 200
        assert _state(api) == (before[0] + 3, before[1] + 1)
        assert audit.verify(api.ctx.factory).ok
    finally:
        api.client.close()
        api.ctx.engine.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_dropping_the_connection_mid_request_is_503_then_back(api):
    """The server ends the request's own connection (pg_terminate_backend, as a restart or a
    failover does) just before its records are inserted."""
    engine = api.ctx.engine
    batch = _batch(api, 3, size=2000)
    before = _state(api)
    fired = []

    def drop(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO SEALED_RECORDS") and not fired:
            fired.append(1)
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})

    event.listen(engine, "before_cursor_execute", drop)
    try:
        r = api.ingest("cam-1", batch)
    finally:
        event.remove(engine, "before_cursor_execute", drop)
    assert fired
    _is_503(r)
    assert _state(api) == before
    assert api.ingest("cam-1", batch).status_code == 200  # the pool reconnects
    assert _state(api) == (before[0] + 3, before[1] + 1)
    assert audit.verify(api.ctx.factory).ok


def test_an_unreachable_database_is_503_for_every_caller(tmp_path):
    """Nothing listens where the database should be: every call that needs it is 503 with
    Retry-After (no token can even be checked), /health still answers."""
    import socket

    from policies.schema import load_policy
    from vault.api import VaultContext, create_app
    from vault.db import make_engine

    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        from datetime import UTC, datetime

        from fastapi.testclient import TestClient

        ks, _ = make_authority(tmp_path / "keys", datetime.now(UTC))
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere?connect_timeout=2"
        ctx = VaultContext(make_engine(url), ks, load_policy())
        with TestClient(create_app(ctx)) as c:
            assert c.get("/health").status_code == 200
            for method, path in (("GET", "/warrants"), ("POST", "/ingest"), ("GET", "/audit")):
                r = c.request(method, path, headers={"Authorization": "Bearer kfe_x"}, json={})
                if r.status_code == 422:  # the body is checked before the token
                    r = c.request(
                        method,
                        path,
                        headers={"Authorization": "Bearer kfe_x"},
                        json={"records": _fake_records()},
                    )
                _is_503(r)
        ctx.engine.dispose()


def _fake_records() -> list[dict]:
    import base64
    import uuid

    return [
        {
            "record_id": str(uuid.uuid4()),
            "camera_id": "cam-1",
            "epoch_id": "cam-1@20261204T0000Z",
            "epoch_key_sha256": "0" * 64,
            "first_seen": "2026-12-04T00:10:00+00:00",
            "last_seen": "2026-12-04T00:10:02+00:00",
            "best_time": "2026-12-04T00:10:01+00:00",
            "suite": "x25519",
            "track_id": 1,
            "quality": 0.0,
            "sealed_key": base64.b64encode(bytes(80)).decode(),
            "nonce": base64.b64encode(bytes(12)).decode(),
            "ciphertext": base64.b64encode(bytes(64)).decode(),
        }
    ]
