"""Shared fixtures. Real face data is read in place from the settings' data_dir; without it
the tests that need it skip on a user's machine and fail in CI (CI=true)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from escrow.settings import get_settings

torch.set_num_threads(2)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"shared face data missing: {path}"
        if IN_CI:
            pytest.fail(msg + " (CI=true: data tests may not skip)")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(Path(get_settings().data_dir))


@pytest.fixture(scope="session")
def celeba_dir(data_dir: Path) -> Path:
    return _require(data_dir / "celeba-10k")


@pytest.fixture(scope="session")
def celeba_identities(data_dir: Path) -> Path:
    return _require(data_dir / "celeba-10k-identity.txt")


@pytest.fixture(scope="session")
def scorer():
    from vae.score import QualityScorer

    return QualityScorer(get_settings().vae_weights)


@pytest.fixture(scope="session")
def detector():
    from escrow.detect import FaceDetector

    return FaceDetector()


PG_URL = os.environ.get("ESCROW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A migrated, empty vault database on each engine; migrated back down afterwards."""
    from vault.db import downgrade, upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'vault.db'}"
    else:
        import sqlalchemy

        url = PG_URL
        try:
            with sqlalchemy.create_engine(url).connect():
                pass
        except Exception as exc:  # no server here
            msg = f"PostgreSQL not reachable at {url}: {type(exc).__name__}"
            if IN_CI:
                pytest.fail(msg + " (CI=true: PostgreSQL tests may not skip)")
            pytest.skip(msg)
        downgrade(url, "base")  # a previous run that died half-way
    upgrade(url, "head")
    yield url
    downgrade(url, "base")


# --- the vault API -------------------------------------------------------------------------


class FakeClock:
    """Injectable UTC time for the API and the sweeper."""

    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, **kw):
        from datetime import timedelta

        self.t += timedelta(**kw)


PASSPHRASE = "correct horse battery staple"
TRUSTEES = ("Trustee A", "Trustee B", "Trustee C")


def make_authority(root, t0, cameras=("cam-1", "cam-2"), epochs=3, k=2, suite="x25519", dev=False):
    """A production authority (k of the 3 trustees), epochs of each camera from t0: ->
    (key store, {trustee name: TrusteeKey})."""
    from vault.keys import KeyStore

    ks = KeyStore(root)
    keys = ks.init(t0, [(n, PASSPHRASE) for n in TRUSTEES], k, PASSPHRASE, suite=suite, dev=dev)
    signer = ks.authority_signer(PASSPHRASE)
    for cam in cameras:
        ks.issue_epochs(signer, cam, t0, epochs)
    return ks, dict(zip(TRUSTEES, keys, strict=True))


def trustee_shares(ks, trustees, epoch_id: str) -> list[tuple[int, bytes]]:
    """Each trustee unseals their own share of one (camera, epoch) key, as on their machine.
    KeyStoreError once the epoch is shredded."""
    import base64

    from escrow.sealing import unseal_share
    from escrow.trustee import share_aad

    suite, cert = ks.info()["suite"], ks.certificate(epoch_id)
    sealed = ks.shares(epoch_id)["sealed_shares"]
    return [
        (
            t.index,
            unseal_share(
                t.unlock(PASSPHRASE),
                suite,
                base64.b64decode(sealed[str(t.index)]),
                share_aad(ks.fingerprint, cert, t.index),
            ),
        )
        for t in trustees
    ]


def epoch_key_raw(ks, trustees, epoch_id: str) -> bytes:
    """An epoch's private key rebuilt as the vault does at a release, from these trustees'
    shares, checked against its certificate."""
    import base64

    from escrow.sealing import public_of
    from vault.keys import combine_secret

    raw = combine_secret(trustee_shares(ks, trustees, epoch_id))
    cert = ks.certificate(epoch_id)
    assert public_of(cert.suite, raw) == base64.b64decode(cert.public_key)
    return raw


def epoch_key(ks, trustees, epoch_id: str):
    from escrow.sealing import load_private

    return load_private(ks.info()["suite"], epoch_key_raw(ks, trustees, epoch_id))


class ApiVault:
    """A vault API over `db_url` with a production-mode authority (2 of 3 trustee keys), a
    fake clock, and one token per role (plus spares) made through the token store."""

    ROLES = ("camera", "judge", "investigator", "trustee", "auditor", "admin")

    def __init__(self, db_url, root, keystore=None, trustee_keys=None, t0=None):
        from datetime import UTC, datetime

        from fastapi.testclient import TestClient

        from policies.schema import load_policy
        from vault.api import VaultContext, create_app
        from vault.db import make_engine
        from vault.keys import KeyStore

        self.t0 = t0 or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.clock = FakeClock(self.t0)
        if keystore is None:
            keystore, trustee_keys = make_authority(root / "keys", self.t0)
        self.keystore: KeyStore = keystore
        self.trustee_keys = trustee_keys
        # the authority's signing key: it signs judge, trustee and auditor tokens
        self.authority = keystore.authority_signer(PASSPHRASE)
        self.ctx = VaultContext(make_engine(db_url), self.keystore, load_policy(), self.clock)
        self.app = create_app(self.ctx)
        self.client = TestClient(self.app)
        self.tokens: dict[str, str] = {}
        self.token_ids: dict[str, str] = {}
        for name, role, index in [
            ("cam-1", "camera", None),
            ("cam-2", "camera", None),
            ("Judge Ito", "judge", None),
            ("Det. Vance", "investigator", None),
            ("Det. Okafor", "investigator", None),
            ("Trustee A", "trustee", 1),
            ("Trustee B", "trustee", 2),
            ("Trustee C", "trustee", 3),
            ("Auditor", "auditor", None),
            ("Admin", "admin", None),
        ]:
            tid, tok = self.make_token(role, name, trustee_index=index)
            self.tokens[name], self.token_ids[name] = tok, tid
        self.by_role = {
            "camera": "cam-1",
            "judge": "Judge Ito",
            "investigator": "Det. Vance",
            "trustee": "Trustee A",
            "auditor": "Auditor",
            "admin": "Admin",
        }

    def make_token(self, role: str, name: str, **kw) -> tuple[str, str]:
        """A token as `escrow tokens create` makes it: signed by the authority where the role
        needs it."""
        from vault import tokens

        if role in tokens.PRIVILEGED:
            kw.setdefault("signer", self.authority)
        return tokens.create(self.ctx.factory, role, name, self.t0, **kw)

    def h(self, who: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def call(self, who: str | None, method: str, path: str, **kw):
        headers = self.h(who) if who else {}
        return self.client.request(method, path, headers=headers, **kw)

    def seal(
        self,
        camera: str,
        best_time,
        crop: bytes = b"",
        track: int = 1,
        quality=-100.0,
        record_id: str | None = None,
    ):
        """A sealed record as a camera makes it (JPEG bytes of a small gray image if no crop;
        a fresh record id unless given)."""
        import uuid
        from datetime import timedelta

        import cv2
        import numpy as np

        from escrow import sealing
        from escrow.keyring import CameraKeyring
        from escrow.sealing import to_wire

        if not crop:
            img = (np.random.default_rng(track).random((48, 48)) * 255).astype(np.uint8)
            crop = cv2.imencode(".jpg", img)[1].tobytes()
        ring = CameraKeyring(
            self.keystore.authority_public_raw(), self.keystore.certificates(camera), camera
        )
        key = ring.key_for(best_time, camera)
        header = sealing.RecordHeader(
            record_id or str(uuid.uuid4()),
            camera,
            key.cert.epoch_id,
            best_time - timedelta(seconds=2),
            best_time + timedelta(seconds=2),
            best_time,
        )
        sealed = key.seal(crop, {"camera_id": camera}, header)
        return to_wire(sealed, track, quality, key.cert.key_sha256), crop

    def ingest(self, camera: str, records: list[dict]):
        return self.call(camera, "POST", "/ingest", json={"records": records})

    def warrant(self, cameras, start, end, **kw):
        from datetime import timedelta

        body = {
            "case_ref": kw.pop("case_ref", "CASE-1"),
            "legal_basis": kw.pop("legal_basis", "Art. 100a StPO"),
            "cameras": cameras,
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "not_before": kw.pop("not_before", self.clock()).isoformat(),
            "not_after": kw.pop("not_after", self.clock() + timedelta(days=7)).isoformat(),
            **kw,
        }
        return self.call("Judge Ito", "POST", "/warrants", json=body)

    def request(self, warrant_id, ids, who="Det. Vance"):
        body = {"warrant_id": warrant_id, "record_ids": ids, "reason": "suspect seen at 14:02"}
        return self.call(who, "POST", "/requests", json=body)

    def approval(self, trustee: str, request_id: str, key_of: str | None = None) -> dict:
        """What `escrow request approve` posts: the review fetched with `trustee`'s token,
        the shares unsealed with `key_of`'s key file (default: their own)."""
        from escrow.trustee import approval_body

        review = self.call(trustee, "GET", f"/requests/{request_id}/review")
        assert review.status_code == 200, review.text
        return approval_body(review.json(), self.trustee_keys[key_of or trustee], PASSPHRASE)

    def approve(self, trustee: str, request_id: str, body: dict | None = None):
        body = body or self.approval(trustee, request_id)
        return self.call(trustee, "POST", f"/requests/{request_id}/approvals", json=body)

    def release(self, request_id: str, secret: str, who="Det. Vance"):
        return self.call(
            who, "POST", f"/requests/{request_id}/release", json={"fetch_secret": secret}
        )

    def audit_actions(self) -> list[str]:
        from sqlalchemy import select

        from vault.models import AuditEntry

        with self.ctx.factory() as s:
            return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


@pytest.fixture
def api(db_url, tmp_path):
    v = ApiVault(db_url, tmp_path)
    yield v
    v.client.close()
    v.ctx.engine.dispose()


class LiveServer:
    """The app under uvicorn on a free local port, in a thread: real HTTP for the command
    line and the camera's sender. The socket bound to port 0 is handed to uvicorn as it is
    (never closed and bound again: another process could take the port in between)."""

    def __init__(self, app):
        import socket
        import threading
        import time

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@contextmanager
def refused_port() -> Iterator[int]:
    """A local port that refuses connections while the block runs ("nothing listens there"):
    bound and never listening, so no other process can take it meanwhile, as it could a port
    only found free and let go."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class ServeProcess:
    """`escrow serve --port 0` in a subprocess, as an operator starts it: the server binds a
    free port itself and announces it in its --port-file once it accepts connections, so no
    port is picked, let go and raced for. Its stdout and stderr go to `name`.log."""

    def __init__(self, env: dict, workdir: Path, *args: str, name: str = "serve"):
        import subprocess
        import sys

        self.port_file, self.log = workdir / f"{name}.port", workdir / f"{name}.log"
        self.port_file.unlink(missing_ok=True)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "escrow.cli", "serve", "--port", "0"]
                + ["--port-file", str(self.port_file), *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.port, self.url = 0, ""

    def ready(self, timeout: float = 90) -> ServeProcess:
        """Wait until the server has announced its port (it accepts connections from then
        on); its log in the failure when it exits or takes longer than `timeout`."""
        import time

        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"escrow serve exited {self.proc.returncode}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"escrow serve did not start:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        self.port = int(self.port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (a service manager's stop), then the exit status."""
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def pytest_configure(config):
    # FastAPI's TestClient imports starlette's, which asks for httpx2; httpx works as is.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


def copy_sources(dest: Path) -> Path:
    """A clean copy of what the distribution is built from, at dest/src: building or
    installing from the checkout itself would leave build/ and egg-info behind, and an old
    build/ could carry files the tree no longer has."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "escrow", "vae", "vault", "policies", "migrations"):
        if (root / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.ckpt.pt")
            shutil.copytree(root / name, src / name, ignore=ignore)
        else:
            shutil.copy2(root / name, src / name)
    return src


def holds_a_face(detector, bgr) -> bool:
    """Whether MTCNN finds a face in a sealed crop (a far face enlarged first: MTCNN's
    smallest window is 12 px of a 20 px minimum)."""
    import cv2

    if bgr.shape[1] < 160:
        f = 160 / bgr.shape[1]
        bgr = cv2.resize(bgr, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)
    return bool(detector.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))


def escrow_cli(args, env, timeout: float = 600, stdin: str | None = None, cwd=None):
    """`escrow ARGS` in a subprocess of this interpreter, as a person runs it."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "escrow.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        input=stdin,
        cwd=cwd,
    )


def camera_client(api, camera: str):
    """A camera's VaultClient speaking to the in-process test API (its ASGI client, with
    the camera's token): what the outbox's Sender sends through in tests."""
    from escrow.client import VaultClient

    client = VaultClient("http://vault", api.tokens[camera])
    client.http = api.client
    client.http.headers["Authorization"] = f"Bearer {api.tokens[camera]}"
    return client
