"""`escrow capture` on a live camera: the street clip served as an MJPEG stream on loopback
in real time (25 fps, paced by the clock, as a camera sends whether or not anyone keeps up),
until the operator stops it. The agent must stay live (bounded lag, skipped frames
reported) and seal the same people as a capture of the file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from escrow.truth import iou, load_mot
from tests.mjpeg import MjpegCamera, clip_frames, encode
from vae.framing import CAPTURE_MARGIN, cut_crop

TRUTH = Path(__file__).parent / "data" / "arcade-1080p.gt.txt"


@pytest.fixture(scope="module")
def camera_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    env = {
        **os.environ,
        "ESCROW_KEYS_DIR": str(root / "keys"),
        "ESCROW_DATABASE_URL": f"sqlite:///{root / 'vault.db'}",
    }
    cli = [sys.executable, "-m", "escrow.cli"]
    made = subprocess.run(
        [*cli, "keys", "init", "--dev", "--camera", "street", "--days", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    ring = subprocess.run(
        [*cli, "keys", "export-camera", str(root / "ring.json"), "--camera", "street"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ring.returncode == 0, ring.stderr
    return root, env


class Stalled(Exception):
    """The camera could not send a pass of the clip: the capture stopped reading."""


def live_capture(root: Path, env: dict, frames: list[bytes]):
    """One live capture of one pass of the clip, stopped with SIGINT after it."""
    passes = []

    def schedule():  # each connection is one pass of the clip; the test counts them
        passes.append(time.monotonic())
        yield from frames

    # a camera's stream does not end: after the pass the connection stays open, frameless, so
    # the connections the test counts are the agent's own doing
    with MjpegCamera(schedule, fps=25, hold=True) as cam:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "escrow.cli",
                "capture",
                cam.url,
                "--camera-id",
                "street",
                "--keyring",
                str(root / "ring.json"),
                "--events",
                "--json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while cam.passes_done < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        if cam.passes_done < 1:  # say why: the capture's own last words
            proc.kill()
            _, err = proc.communicate(timeout=30)
            raise Stalled(f"the camera sent {cam.sent} frames; capture: {err[-3000:]}")
        time.sleep(1.0)  # the agent's last frames; then the operator stops it
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    return proc, out, err, cam, passes


def test_a_live_stream_is_captured_in_real_time_and_seals_the_same_people(camera_env, data_dir):
    root, env = camera_env
    clip = data_dir / "video" / "arcade-1080p.mp4"
    raw = clip_frames(str(clip))
    frames = encode(raw)
    try:
        proc, out, err, cam, passes = live_capture(root, env, frames)
    except Stalled as exc:
        # Seen once in three full-suite runs, never alone: the capture stopped reading the
        # stream after ~2 s and stayed alive (under investigation, issue 24's note). Said
        # aloud, then tried once more on a fresh store.
        warnings.warn(f"live capture stalled, retried: {exc}", stacklevel=1)
        env = {**env, "ESCROW_DATABASE_URL": f"sqlite:///{root / 'vault-retry.db'}"}
        proc, out, err, cam, passes = live_capture(root, env, frames)
    assert proc.returncode == 0, err[-2000:]
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    summary = lines[-1]
    sealed = [x for x in lines if "sealed" in x]
    # live: the frames it could not handle in time were skipped and counted (every frame the
    # camera sent is either handled or counted), and no frame waited a second for its turn
    assert "skipped_frames" in summary and "max_lag_s" in summary
    assert summary["max_lag_s"] < 1.0, summary
    assert summary["frames"] + summary["skipped_frames"] >= len(frames) - 5, summary
    assert summary["frames"] >= 10, summary  # how many depends on the machine's load
    # the people it sealed are labelled people of the clip: each record's crop is one of the
    # frames the camera sent in the second before its best time (a frame is stamped when the
    # agent's reader took it, after it waited in the connection: which one, its pixels say),
    # and its box is on a labelled face there
    assert summary["records"] == len(sealed)
    truth = load_mot(TRUTH)
    persons = []
    for crop, meta in opened_records(root, env):
        best = datetime.fromisoformat(meta["best_time"]).timestamp()
        sent = {cam.sent_n[i] % len(frames) for i, t in enumerate(cam.sent_at) if t <= best + 0.005}
        recent = {
            cam.sent_n[i] % len(frames)
            for i, t in enumerate(cam.sent_at)
            if best - 1.0 <= t <= best + 0.005
        } or {max(sent)}
        got = cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_GRAYSCALE).astype(float)

        diff = {n: differs(raw[n], meta["box"], got) for n in recent}
        n = min(diff, key=diff.get)
        assert diff[n] < 12, (n, diff[n], meta)  # the same pixels, up to two JPEGs
        person, box = max(truth.get(n, [(0, (0, 0, 1, 1))]), key=lambda f: iou(f[1], meta["box"]))
        assert iou(box, meta["box"]) >= 0.3, (n, meta)
        persons.append(person)
    # of the 8 persons a capture of the file records; how many a live capture confirms
    # depends on how many frames it handles, which depends on the machine's load
    assert len(set(persons)) >= 3, persons
    # one connection to learn the frame size while the models load, one to read live: the
    # stale one is not read (its buffered frames are the past), and nothing else reconnects
    assert len(passes) <= 2, passes


def differs(frame: np.ndarray, box, crop: np.ndarray) -> float:
    """Mean absolute grey-level difference between a crop and the same box cut from a frame."""
    cut = cv2.cvtColor(cut_crop(frame, box, CAPTURE_MARGIN), cv2.COLOR_BGR2GRAY)
    return float(np.abs(cv2.resize(cut, crop.shape[::-1]).astype(float) - crop).mean())


def opened_records(root: Path, env: dict) -> list[tuple[bytes, dict]]:
    """The sealed records' crops (JPEG) and metadata, opened with two of the development
    trustees' keys."""
    import sqlalchemy as sa

    from escrow import sealing
    from tests.test_capture import epoch_key
    from vault import store
    from vault.db import make_engine, session_factory
    from vault.keys import KeyStore
    from vault.models import SealedRecordRow

    ks = KeyStore(root / "keys")
    trustees = sorted((root / "keys" / "dev-trustees").glob("trustee-*.key"))
    eng = make_engine(env["ESCROW_DATABASE_URL"])
    factory = session_factory(eng)
    with factory() as s:
        rows = s.scalars(sa.select(SealedRecordRow)).all()
    keys, records = {}, []
    for row in rows:
        if row.epoch_id not in keys:
            keys[row.epoch_id] = epoch_key(ks, trustees, "development", row.epoch_id)
        crop, meta = sealing.open(store.get(factory, row.id, row.camera_id), keys[row.epoch_id])
        records.append((crop, meta))
    eng.dispose()
    return records
