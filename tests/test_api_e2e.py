"""The whole story over real HTTP with real crops from the arcade clip:

capture while the vault is down (records wait, sealed, in the camera's outbox) -> the vault
comes up -> `escrow send` delivers every record and empties the outbox -> a judge's warrant
-> an investigator's request -> two trustees approve with their own key files -> `escrow
request fetch` writes crops equal to what the camera sealed. Once per database engine; the
capture itself runs once. And a camera given another authority's keyring: the vault refuses
its records, which stay in the outbox."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime, timedelta

import cv2
import pytest
import sqlalchemy as sa

from escrow import sealing
from tests.conftest import (
    PASSPHRASE,
    ApiVault,
    LiveServer,
    epoch_key,
    escrow_cli,
    holds_a_face,
    make_authority,
    refused_port,
)
from vault import audit, store, tokens
from vault.db import make_engine, session_factory


def escrow(args, env, timeout=600, stdin=None):
    return escrow_cli(args, env, timeout, stdin)


def rows(url: str) -> dict[str, str]:
    eng = make_engine(url)
    with eng.connect() as c:
        got = dict(c.execute(sa.text("SELECT id, ciphertext_sha256 FROM sealed_records")).all())
    eng.dispose()
    return got


@pytest.fixture(scope="module")
def camera(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("camera")
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ks, keys = make_authority(root / "keys", t0, cameras=("arcade",), epochs=3)
    (root / "keyring.json").write_text(json.dumps(ks.camera_keyring("arcade")))
    env = {
        **os.environ,
        "ESCROW_DATABASE_URL": f"sqlite:///{root / 'outbox.db'}",
        "ESCROW_KEYS_DIR": str(root / "no-keys-on-a-camera"),
        "ESCROW_TOKEN": "kfe_the-vault-is-not-up-yet",
    }
    with refused_port() as port:  # nothing listens there while the camera captures
        down = f"http://127.0.0.1:{port}"
        r = escrow(
            [
                "capture",
                data_dir / "video" / "arcade-1080p.mp4",
                "--camera-id",
                "arcade",
                "--keyring",
                root / "keyring.json",
                "--vault-url",
                down,
                "--send-timeout",
                "2",
                "--json",
            ],
            env,
        )
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    waiting = rows(env["ESCROW_DATABASE_URL"])
    assert summary["outbox"]["sent"] == 0 and "unreachable" in summary["outbox"]["last_error"]
    assert summary["outbox"]["waiting"] == summary["records"] == len(waiting) >= 5
    return root, ks, keys, t0, env, waiting


def test_capture_send_warrant_approve_fetch(camera, db_url, tmp_path, detector):
    root, ks, keys, t0, cam_env, waiting = camera
    api = ApiVault(db_url, tmp_path, keystore=ks, trustee_keys=keys, t0=t0)
    _, cam_token = tokens.create(api.ctx.factory, "camera", "arcade", t0)
    shutil.copy(root / "outbox.db", tmp_path / "outbox.db")
    outbox_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    server = LiveServer(api.app)
    try:
        env = {**cam_env, "ESCROW_DATABASE_URL": outbox_url, "ESCROW_VAULT_URL": server.url}
        sent = escrow(["send", "--token", cam_token], env)
        assert sent.returncode == 0, sent.stderr
        assert f"{len(waiting)} sent, 0 waiting" in sent.stdout
        assert rows(outbox_url) == {}  # acknowledged records leave the outbox
        assert rows(db_url) == waiting  # the vault holds exactly the bytes that were sealed
        again = escrow(["send", "--token", cam_token], env)  # nothing left, nothing doubled
        assert again.returncode == 0 and rows(db_url) == waiting

        client = {
            **os.environ,
            "ESCROW_VAULT_URL": server.url,
            "ESCROW_REQUESTS_DIR": str(tmp_path / "requests"),
        }
        judge = {**client, "ESCROW_TOKEN": api.tokens["Judge Ito"]}
        made = escrow(
            [
                "warrant",
                "create",
                "--case",
                "K-2026-114",
                "--basis",
                "§ 100h StPO, order of the AG Köln",
                "--camera",
                "arcade",
                "--from",
                (t0 - timedelta(hours=1)).isoformat(),
                "--to",
                (t0 + timedelta(days=1)).isoformat(),
                "--valid-from",
                t0.isoformat(),
                "--valid-until",
                (t0 + timedelta(days=3)).isoformat(),
                "--json",
            ],
            judge,
        )
        assert made.returncode == 0, made.stderr
        wid = json.loads(made.stdout)["id"]

        inv = {**client, "ESCROW_TOKEN": api.tokens["Det. Vance"]}
        listed = escrow(["warrant", "records", wid, "--json"], inv)
        assert {r["id"] for r in json.loads(listed.stdout)} == set(waiting)
        asked = escrow(
            ["request", "create", "--warrant", wid, "--all", "--reason", "r", "--json"], inv
        )
        assert asked.returncode == 0, asked.stderr
        rid = json.loads(asked.stdout)["id"]
        assert (tmp_path / "requests" / f"{rid}.secret").stat().st_mode & 0o077 == 0

        early = escrow(["request", "fetch", rid, "--out", tmp_path / "crops"], inv)
        assert early.returncode == 6 and "0 of 2" in early.stderr
        for name in ("Trustee A", "Trustee B"):  # each on their own machine, with their file
            key_file = tmp_path / f"{name}.key"
            keys[name].write(key_file)
            tr = {
                **client,
                "ESCROW_TOKEN": api.tokens[name],
                "ESCROW_TRUSTEE_PASSPHRASE": PASSPHRASE,
            }
            ok = escrow(["request", "approve", rid, "--key", key_file, "--yes"], tr)
            assert ok.returncode == 0, ok.stderr
            assert "§ 100h StPO" in ok.stderr and "K-2026-114" in ok.stderr  # shown first
        got = escrow(["request", "fetch", rid, "--out", tmp_path / "crops"], inv)
        assert got.returncode == 0, got.stderr
        twice = escrow(["request", "fetch", rid, "--out", tmp_path / "again"], inv)
        assert twice.returncode != 0
    finally:
        server.stop()

    # The released crops are what the camera sealed: open the vault's records independently.
    trustees = [keys["Trustee B"], keys["Trustee C"]]
    factory = session_factory(api.ctx.engine)
    crops = sorted((tmp_path / "crops").glob("*.jpg"))
    assert len(crops) == len(waiting)
    faces = 0
    for path in crops:
        sealed = store.get(factory, path.stem)
        crop, _ = sealing.open(sealed, epoch_key(ks, trustees, sealed.header.epoch_id))
        assert path.read_bytes() == crop
        faces += holds_a_face(detector, cv2.imread(str(path)))
    # every record is a labelled face (tests/test_capture.py); MTCNN alone, on a crop, may
    # not find the far woman's 20-30 px face again even enlarged
    assert faces >= len(crops) - 1, f"{faces} of {len(crops)} released crops hold a face"
    release = json.loads((tmp_path / "crops" / "release.json").read_text())
    assert {r["ciphertext_sha256"] for r in release["released"]} == set(waiting.values())
    verdict = audit.verify(api.ctx.factory)
    assert verdict.ok
    actions = api.audit_actions()
    assert actions.count("request.approve") == 2 and actions.count("request.release") == 1
    api.ctx.engine.dispose()


@pytest.fixture(scope="module")
def sample_clip(tmp_path_factory):
    """16 frames of the built-in sample: two people, each a track of at least 12 frames."""
    from escrow.sample import write_sample_video

    path = tmp_path_factory.mktemp("sample") / "astronaut-walk.mp4"
    write_sample_video(path, frames=16)
    return path


def test_a_keyring_of_another_authority_is_refused_at_ingest(db_url, tmp_path, sample_clip):
    """A camera installed with another authority's keyring whose epochs carry the same, valid
    looking names as the vault's (cam-1@<day>): it seals to keys no trustee of this vault
    holds. The vault compares the key each record names (epoch_key_sha256) with its own
    certificate and answers 422; the records stay in the outbox, reported, never dropped,
    and its keyring is not refreshed from a vault of another authority."""
    from sqlalchemy import select

    from escrow.sealing import to_wire
    from vault.models import KeyEpoch, SealedRecordRow

    api = ApiVault(db_url, tmp_path)
    other, other_keys = make_authority(tmp_path / "other-keys", api.t0, cameras=("cam-1",))
    assert other.fingerprint != api.keystore.fingerprint
    assert [c.epoch_id for c in other.certificates("cam-1")] == [
        c.epoch_id for c in api.keystore.certificates("cam-1")
    ]
    (tmp_path / "other.json").write_text(json.dumps(other.camera_keyring("cam-1")))
    outbox_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    env = {
        **os.environ,
        "ESCROW_DATABASE_URL": outbox_url,
        "ESCROW_KEYS_DIR": str(tmp_path / "no-keys-on-a-camera"),
        "ESCROW_TOKEN": api.tokens["cam-1"],
    }
    server = LiveServer(api.app)
    try:
        r = escrow(
            [
                "capture",
                sample_clip,
                "--camera-id",
                "cam-1",
                "--keyring",
                tmp_path / "other.json",
                "--vault-url",
                server.url,
                "--detect-width",
                "640",
                "--send-timeout",
                "5",
                "--json",
            ],
            env,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"sealing to authority {other.fingerprint}" in r.stderr
        assert "keyring refresh refused" in r.stderr  # the vault's keyring is not adopted
        summary = json.loads(r.stdout)
        out = summary["outbox"]
        waiting = rows(outbox_url)
        assert summary["records"] == len(waiting) == out["waiting"] == len(out["refused"]) >= 1
        assert out["sent"] == 0 and set(out["refused"]) == set(waiting)
        assert all("sealed to another key" in why for why in out["refused"].values())

        # what the camera posts, as it posts it: a 422 with the reason
        eng = make_engine(outbox_url)
        with session_factory(eng)() as s:
            row = s.scalars(select(SealedRecordRow)).first()
            epoch = s.get(KeyEpoch, row.epoch_id)
            assert epoch.id.startswith("cam-1@")
            wire = to_wire(
                store.sealed_from_row(row),
                row.track_id,
                row.quality,
                hashlib.sha256(epoch.public_key).hexdigest(),
            )
        eng.dispose()
        assert wire["epoch_key_sha256"] == other.certificate(row.epoch_id).key_sha256
        refused = api.ingest("cam-1", [wire])
        assert refused.status_code == 422 and "sealed to another key" in refused.json()["detail"]

        # sending again changes nothing: refused, kept, reported
        sent = escrow(["send", "--vault-url", server.url], env)
        assert sent.returncode == 6 and "kept in the outbox" in sent.stderr
        assert sent.stderr.count("sealed to another key") == len(waiting)
        assert "Traceback" not in sent.stderr
        assert rows(outbox_url) == waiting
        assert rows(db_url) == {}  # the vault stored none of them
        assert "ingest" not in api.audit_actions()
    finally:
        server.stop()
        api.client.close()
        api.ctx.engine.dispose()
    # the records are whole, sealed to the other authority: its trustees could open them
    eng = make_engine(outbox_url)
    sealed = store.get(session_factory(eng), row.id, "cam-1")
    eng.dispose()
    crop, meta = sealing.open(sealed, epoch_key(other, list(other_keys.values()), row.epoch_id))
    assert crop.startswith(b"\xff\xd8") and meta["camera_id"] == "cam-1"


def test_cli_client_errors_are_one_line(tmp_path):
    with refused_port() as port:  # nothing listens there
        env = {**os.environ, "ESCROW_VAULT_URL": f"http://127.0.0.1:{port}"}
        env.pop("ESCROW_TOKEN", None)
        r = escrow(["warrant", "list"], env)
        assert r.returncode == 2 and "no API token" in r.stderr and "Traceback" not in r.stderr
        r = escrow(["warrant", "list", "--token", "kfe_x"], env)
        assert r.returncode == 5 and "unreachable" in r.stderr and "Traceback" not in r.stderr
        r = escrow(
            [
                "warrant",
                "create",
                "--case",
                "c",
                "--basis",
                "b",
                "--camera",
                "a",
                "--from",
                "2026-01-01T00:00",
                "--to",
                "2026-01-02T00:00Z",
                "--valid-until",
                "2026-02-01T00:00Z",
                "--token",
                "kfe_x",
            ],
            env,
        )
        assert r.returncode == 2 and "time zone" in r.stderr
