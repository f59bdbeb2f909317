"""A camera installs the capture side without the server: `pip install '.[camera]'` into a
fresh virtual environment (no FastAPI, Alembic, PostgreSQL driver, scheduler, Shamir or dlib),
then a capture with it that seals, keeps its outbox to the three record tables, and delivers
to a vault running from the full install. Built once for the module. PyTorch (7 GB of a CUDA
build, as the machine's pip takes it) is linked in from this environment before the install,
as a camera image with PyTorch in it would have it: pip finds it satisfied and resolves and
installs everything else the camera extra asks for (copying it took 90 s of the suite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import ApiVault, LiveServer, copy_sources, make_authority

PREINSTALLED = ("torch", "triton", "nvidia", "cuda")
SERVER_ONLY = ["fastapi", "uvicorn", "alembic", "psycopg", "apscheduler", "Crypto", "dlib"]


@pytest.fixture(scope="module")
def camera_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("camera-venv")
    src = copy_sources(tmp)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    here = Path(sysconfig.get_paths()["purelib"])
    there = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for entry in here.iterdir():  # torch, torchvision, triton and the CUDA wheels torch needs
        if entry.name.lower().startswith(PREINSTALLED):
            (there / entry.name).symlink_to(entry)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for args in (
        [f"{src}[camera]"],
        ["--no-deps", "facenet-pytorch==2.6.0", "trackers==2.6.1"],
    ):
        r = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
    return venv


def run_in(venv: Path, args: list[str], env: dict, cwd: Path, timeout: float = 600):
    return subprocess.run(
        [str(venv / "bin" / a) if i == 0 else a for i, a in enumerate(args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


def test_camera_install_has_no_server_dependencies(camera_venv, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = (
        "import importlib.util, json, sys;"
        f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {SERVER_ONLY}}}))"
    )
    r = run_in(camera_venv, ["python", "-c", probe], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == dict.fromkeys(SERVER_ONLY, False)
    # the camera's own modules import, from the installed package (not this checkout)
    mods = "escrow.capture, escrow.outbox, escrow.keyring, escrow.sealing, escrow.cli, vae.score"
    r = run_in(
        camera_venv, ["python", "-c", f"import {mods}; print(escrow.__file__)"], env, tmp_path
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert str(camera_venv) in r.stdout
    r = run_in(camera_venv, ["escrow", "--help"], env, tmp_path)
    assert r.returncode == 0 and "capture" in r.stdout, r.stderr


def test_camera_install_captures_and_delivers(camera_venv, tmp_path):
    from escrow.sample import write_sample_video
    from vault import tokens

    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ks, keys = make_authority(tmp_path / "keys", t0, cameras=("demo-cam",), epochs=3)
    (tmp_path / "keyring.json").write_text(json.dumps(ks.camera_keyring("demo-cam")))
    video = tmp_path / "walk.mp4"
    write_sample_video(str(video))
    db_url = f"sqlite:///{tmp_path / 'vault.db'}"
    from vault.db import upgrade

    upgrade(db_url)
    api = ApiVault(db_url, tmp_path, keystore=ks, trustee_keys=keys, t0=t0)
    _, cam_token = tokens.create(api.ctx.factory, "camera", "demo-cam", t0)
    server = LiveServer(api.app)
    outbox = tmp_path / "camera" / "outbox.db"
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "ESCROW_DATABASE_URL": f"sqlite:///{outbox}",
        "ESCROW_KEYS_DIR": str(tmp_path / "no-keys-on-a-camera"),
        "ESCROW_TOKEN": cam_token,
    }
    try:
        args = ["escrow", "capture", str(video), "--camera-id", "demo-cam"]
        args += ["--keyring", str(tmp_path / "keyring.json"), "--vault-url", server.url]
        r = run_in(camera_venv, [*args, "--events", "--json"], env, tmp_path)
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    *events, summary = [json.loads(line) for line in r.stdout.splitlines()]
    sealed = {e["sealed"] for e in events}
    assert summary["records"] == len(sealed) >= 1
    assert summary["outbox"] == {
        "sent": summary["records"],
        "already_held": 0,
        "waiting": 0,
        "refused": {},
        "last_error": "",
    }
    with api.ctx.engine.connect() as c:
        stored = {row[0] for row in c.execute(sa.text("SELECT id FROM sealed_records"))}
    assert stored == sealed  # every record the camera sealed, and nothing else
    eng = sa.create_engine(f"sqlite:///{outbox}")
    tables = set(sa.inspect(eng).get_table_names())
    eng.dispose()
    assert tables == {"cameras", "key_epochs", "sealed_records"}  # no vault tables on a camera
    # a camera-only install cannot write straight into a vault database: one line, exit 2
    env_local = {**env, "ESCROW_DATABASE_URL": f"sqlite:///{tmp_path / 'local.db'}"}
    args = ["escrow", "capture", str(video), "--camera-id", "demo-cam"]
    r = run_in(
        camera_venv, [*args, "--keyring", str(tmp_path / "keyring.json")], env_local, tmp_path
    )
    assert r.returncode == 2 and "needs the vault's install" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    api.client.close()
    api.ctx.engine.dispose()
