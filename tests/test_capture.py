"""`escrow capture` on the real street clip: one sealed best crop per person, nothing else.

People counted by hand from the anonymised preview (frames 0, 52 and 104, faces pixelated):
about 11 people show their face to the camera for more than a moment during the 4.2 s clip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import sqlalchemy as sa

from escrow import sealing
from escrow.sealing import load_private, public_of, unb64, unseal_share
from escrow.trustee import TrusteeKey, share_aad
from escrow.truth import iou, load_mot
from tests.conftest import escrow_cli, holds_a_face
from vault import store
from vault.db import make_engine, session_factory
from vault.keys import KeyStore, combine_secret
from vault.models import SealedRecordRow

TRUTH = Path(__file__).parent / "data" / "arcade-1080p.gt.txt"
# Persons whose face is hidden for longer than a track survives unseen (0.5 s) get one
# record per stretch: persons 6 (hidden 0.7 s behind heads) and 7 (turned away 2.5 s).
MEASURED_EXTRA_RECORDS = 2
JFIF = b"\xff\xd8\xff\xe0\x00\x10JFIF"  # how every crop this agent encodes begins


def escrow(args, env, cwd):
    return escrow_cli(args, env, timeout=900, cwd=cwd)


def epoch_key(ks: KeyStore, trustee_files: list[Path], passphrase: str, epoch_id: str):
    """An epoch's private key rebuilt from two trustees' key files, as a release does: no
    master key exists to derive it from."""
    cert, doc = ks.certificate(epoch_id), ks.shares(epoch_id)
    shares = []
    for path in trustee_files[:2]:
        key = TrusteeKey.load(path)
        sealed = unb64(doc["sealed_shares"][str(key.index)])
        aad = share_aad(ks.fingerprint, cert, key.index)
        shares.append((key.index, unseal_share(key.unlock(passphrase), key.suite, sealed, aad)))
    raw = combine_secret(shares)
    assert public_of(cert.suite, raw) == unb64(cert.public_key)
    return load_private(cert.suite, raw)


def stored_ids(url: str) -> list[str]:
    eng = make_engine(url)
    with eng.connect() as c:
        ids = [x[0] for x in c.execute(sa.text("SELECT id FROM sealed_records"))]
    eng.dispose()
    return ids


def capture_events_cmd(root: Path, clip: Path) -> list[str]:
    """`escrow capture` printing a JSON line per stored record, as a camera service runs it."""
    return [
        sys.executable,
        "-m",
        "escrow.cli",
        "capture",
        str(clip),
        "--camera-id",
        "arcade",
        "--keyring",
        str(root / "keyring.json"),
        "--events",
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("camera")
    (root / "tmp").mkdir()
    env = {
        **os.environ,
        "ESCROW_KEYS_DIR": str(root / "keys"),
        "ESCROW_DATABASE_URL": f"sqlite:///{root / 'vault' / 'vault.db'}",
        "TMPDIR": str(root / "tmp"),
    }
    made = escrow(["keys", "init", "--dev", "--camera", "arcade", "--days", "3"], env, root)
    assert made.returncode == 0, made.stderr
    assert "no master key exists" in made.stdout
    ring = escrow(["keys", "export-camera", root / "keyring.json", "--camera", "arcade"], env, root)
    assert ring.returncode == 0, ring.stderr
    return root, env


@pytest.fixture(scope="module")
def run(world, data_dir):
    root, env = world
    clip = data_dir / "video" / "arcade-1080p.mp4"
    r = escrow(
        [
            "capture",
            clip,
            "--camera-id",
            "arcade",
            "--keyring",
            root / "keyring.json",
            "--json",
            "--report",
            root / "report",
            "--preview",
            root / "preview.mp4",
        ],
        env,
        root,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    ks = KeyStore(root / "keys")
    trustees = sorted((root / "keys" / "dev-trustees").glob("trustee-*.key"))
    assert len(trustees) == 3
    keys: dict = {}
    eng = make_engine(env["ESCROW_DATABASE_URL"])
    factory = session_factory(eng)
    with factory() as s:
        rows = s.scalars(sa.select(SealedRecordRow)).all()
    opened = {}
    for row in rows:
        assert row.camera_id == "arcade" and row.epoch_id.startswith("arcade@")
        if row.epoch_id not in keys:
            keys[row.epoch_id] = epoch_key(ks, trustees, "development", row.epoch_id)
        sealed = store.get(factory, row.id, row.camera_id)
        crop, meta = sealing.open(sealed, keys[row.epoch_id])
        opened[row.id] = (crop, meta, row)
    eng.dispose()
    return summary, opened, clip


def test_summary_and_plausible_record_count(run):
    summary, opened, _ = run
    assert set(summary) == {
        "frames",
        "seconds",
        "fps",
        "tracks",
        "records",
        "dropped_short",
        "dropped_not_face",
        "faces_detected",
        "detector_runs",
        "crops_scored",
        "keys_valid_until",
    }
    # the keyring holds 3 days of this camera's epochs: it says until when it can seal
    until = datetime.fromisoformat(summary["keys_valid_until"])
    assert timedelta(days=2) < until - datetime.now(UTC) <= timedelta(days=3)
    assert summary["frames"] == 105 and summary["records"] == len(opened)
    tracks = [meta["track_id"] for _, meta, _ in opened.values()]
    assert len(tracks) == len(set(tracks))  # no two records of one track
    dropped = summary["dropped_short"] + summary["dropped_not_face"]
    assert summary["tracks"] == summary["records"] + dropped
    # every record is a labelled face on its best frame, of 8 different persons at least
    truth = load_mot(TRUTH)
    persons = []
    for _, meta, _ in opened.values():
        faces = truth.get(meta["best_frame"], [])
        person, box = max(faces, key=lambda f: iou(f[1], meta["box"]))
        assert iou(box, meta["box"]) >= 0.3, meta
        persons.append(person)
    assert len(set(persons)) >= 8
    assert len(persons) - len(set(persons)) <= MEASURED_EXTRA_RECORDS


def test_sealed_crops_hold_a_face(run, detector):
    _, opened, _ = run
    found = sum(
        holds_a_face(detector, cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_COLOR))
        for crop, _, _ in opened.values()
    )
    # every record is a labelled face (test_summary_and_plausible_record_count); MTCNN alone,
    # on a crop, may not find the far woman's 20-30 px face again even enlarged
    assert found >= len(opened) - 1


def test_each_record_is_the_best_crop_of_its_track(run, world):
    root, _ = world
    _, opened, _ = run
    for _, meta, row in opened.values():
        points = json.loads((root / "report" / f"track-{meta['track_id']:04d}.json").read_text())
        best = max(points["points"], key=lambda p: p["quality"])
        assert meta["best_frame"] == best["frame"]
        assert (
            abs(meta["quality"] - best["quality"]) < 1e-2
            and abs(row.quality - best["quality"]) < 1e-6
        )
        # the VAE saw the crops that could beat the track's best so far (the gate)
        assert meta["frames"] >= len(points["points"]) >= 1 and meta["frames"] >= 3
    # the report marks exactly the tracks that were sealed
    marked = {
        json.loads(p.read_text())["track_id"]
        for p in (root / "report").glob("track-*.json")
        if json.loads(p.read_text())["sealed"]
    }
    assert marked == {meta["track_id"] for _, meta, _ in opened.values()}
    assert (root / "report" / "quality.png").stat().st_size > 10_000


def test_preview_shows_every_sealed_face_pixelated(run, world, data_dir):
    root, _ = world
    _, opened, clip = run
    prev, orig = cv2.VideoCapture(str(root / "preview.mp4")), cv2.VideoCapture(str(clip))
    frames_p, frames_o = [], []
    while True:
        ok_p, fp = prev.read()
        ok_o, fo = orig.read()
        if not (ok_p and ok_o):
            break
        frames_p.append(fp)
        frames_o.append(fo)
    assert len(frames_p) == 105 and frames_p[0].shape == frames_o[0].shape  # input's size

    def detail(img, region):  # high-pass of the gray image inside a region
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
        return (g - cv2.GaussianBlur(g, (0, 0), 1.5))[region].ravel()

    big = [m for _, m, _ in opened.values() if m["box"][2] - m["box"][0] >= 40]
    assert len(big) >= 3
    for meta in big:  # faces 40+ px wide: enough detail to tell whether it survived
        x1, y1, x2, y2 = (int(v) for v in meta["box"])
        face = (slice(y1 + 3, y2 - 3), slice(x1 + 3, x2 - 3))  # inside the drawn frame
        fo, fp = frames_o[meta["best_frame"]], frames_p[meta["best_frame"]]
        face_corr = np.corrcoef(detail(fo, face), detail(fp, face))[0, 1]
        # the face's detail is gone (the hand-held clip moves everywhere, so the whole
        # scene is under the coarse mosaic too: tests/test_preview.py shows a still scene
        # kept where nothing moves)
        assert face_corr < 0.3


def test_preview_hides_every_labelled_face_on_every_frame(run, world):
    """Every face of the clip's hand-labelled truth (731 on 105 frames: also the profiles and
    far faces the detector never finds, and the red-haired man it misses on 96-102) is
    under a mosaic in the preview: the fine detail inside its box no longer follows the
    original's. A face in clear correlates ~1; measured here at most 0.32 (a 21 px face,
    where the 16 px cells' own edges fall on its edges), median 0.00."""
    root, _ = world
    _, _, clip = run
    truth = load_mot(TRUTH)
    prev, orig = cv2.VideoCapture(str(root / "preview.mp4")), cv2.VideoCapture(str(clip))

    def detail(img, box):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
        return (g - cv2.GaussianBlur(g, (0, 0), 1.5))[max(0, y1) : y2, max(0, x1) : x2].ravel()

    checked, i = 0, 0
    while True:
        ok_p, fp = prev.read()
        ok_o, fo = orig.read()
        if not (ok_p and ok_o):
            break
        for person, box in truth.get(i, []):
            a = detail(fo, box)
            assert np.corrcoef(a, a)[0, 1] > 0.99  # the measure sees a face in clear
            corr = np.corrcoef(a, detail(fp, box))[0, 1]
            bound = 0.3 if box[2] - box[0] >= 30 else 0.5
            assert corr < bound, (i, person, round(float(corr), 2))
            checked += 1
        i += 1
    assert i == 105 and checked == sum(len(v) for v in truth.values())


def test_nothing_plaintext_on_disk(run, world):
    root, _ = world
    _, opened, _ = run
    blobs = [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    blobs += [p.read_bytes() for p in Path.cwd().glob("*") if p.is_file()]
    everything = b"".join(blobs)
    assert JFIF not in everything
    for crop, _, _ in opened.values():
        assert crop.startswith(JFIF)
        for i in range(0, len(crop) - 32, 256):
            assert crop[i : i + 32] not in everything


def test_rerun_on_the_same_input_makes_no_duplicate(run, world):
    root, env = world
    _, opened, clip = run
    r = escrow(
        ["capture", clip, "--camera-id", "arcade", "--keyring", root / "keyring.json", "--json"],
        env,
        root,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    ids = set(stored_ids(env["ESCROW_DATABASE_URL"]))
    assert ids == set(opened)


def test_bad_inputs_fail_clearly_and_lose_nothing(run, world, tmp_path):
    root, env = world
    _, opened, clip = run
    ring = root / "keyring.json"
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(50_000))
    cut = tmp_path / "cut.mp4"  # an MP4 cut in half: its index (moov) is gone
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    avi = tmp_path / "cut.avi"  # an AVI cut in half: the first frames still decode
    w = cv2.VideoWriter(str(tmp_path / "full.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(30):
        w.write(np.full((240, 320, 3), 8 * i, np.uint8))
    w.release()
    full = (tmp_path / "full.avi").read_bytes()
    avi.write_bytes(full[: len(full) // 2])
    faceless = tmp_path / "faceless"
    faceless.mkdir()
    for i in range(5):
        cv2.imwrite(str(faceless / f"{i:03d}.png"), np.full((240, 320, 3), 90, np.uint8))
    cases = [
        (tmp_path / "missing.mp4", 2, "no such file"),
        (junk, 2, "not a readable video"),
        (cut, 2, "not a readable video"),
        (avi, 3, "ended early"),
    ]
    for src, code, msg in cases:
        r = escrow(["capture", src, "--camera-id", "arcade", "--keyring", ring], env, root)
        assert r.returncode == code, (src, r.stderr[-500:])
        assert msg in r.stderr and "Traceback" not in r.stderr
    r = escrow(
        ["capture", faceless, "--camera-id", "arcade", "--keyring", ring, "--json"], env, root
    )
    assert r.returncode == 0 and json.loads(r.stdout)["records"] == 0
    r = escrow(
        ["capture", clip, "--camera-id", "arcade", "--keyring", root / "nope.json"], env, root
    )
    assert r.returncode == 2 and "no camera keyring" in r.stderr
    ids = set(stored_ids(env["ESCROW_DATABASE_URL"]))
    assert ids == set(opened)  # nothing stored before was lost


def test_capture_needs_an_explicit_keyring(world, tmp_path):
    """No default keyring that could belong to another authority: without --keyring or
    --vault-url, capture stops at once with one line (before it opens the source); so does a
    keyring of another camera, or of an authority other than the pinned one."""
    root, env = world
    missing = tmp_path / "missing.mp4"
    ring = root / "keyring.json"
    fp = json.loads(ring.read_text())["authority_fingerprint"]
    cases = [
        ([], "no keyring: pass --keyring FILE"),
        (["--keyring", ring, "--camera-id", "lobby"], "camera arcade's keyring, not lobby's"),
        (["--keyring", ring, "--authority", "00" * 8], f"authority is {fp}, not the pinned"),
    ]
    for args, msg in cases:
        cam = [] if "--camera-id" in args else ["--camera-id", "arcade"]
        r = escrow(["capture", missing, *cam, *args], env, root)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, (args, r.stderr[-500:])
        assert len(lines) == 1 and msg in lines[0] and "no such file" not in r.stderr, args
    pinned = ["--keyring", ring, "--authority", fp[:12].upper()]  # a prefix that matches
    r = escrow(["capture", missing, "--camera-id", "arcade", *pinned], env, root)
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_sigkill_at_random_points_loses_nothing_and_duplicates_nothing(run, world, tmp_path):
    """Kill the camera process at chosen records, restart it on the same input each time:
    every record it had reported stored survives, and the end result is exactly the set of
    records of an undisturbed run."""
    import random
    import signal

    root, env = world
    _, opened, clip = run
    env = {**env, "ESCROW_DATABASE_URL": f"sqlite:///{tmp_path / 'killed.db'}"}
    args = capture_events_cmd(root, clip)
    reported: set[str] = set()
    rnd = random.Random(7)
    for _ in range(3):
        p = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=root, text=True
        )
        # kill the moment the n-th record is reported (n drawn from a fixed seed): an
        # event, not a time, so the kill lands mid-stream on a loaded machine too
        wait_for, seen = rnd.randint(1, 5), 0
        for line in p.stdout:
            if line.startswith("{"):
                reported.add(json.loads(line)["sealed"])
                seen += 1
                if seen >= wait_for:
                    break
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate()
        reported |= {json.loads(ln)["sealed"] for ln in out.splitlines() if ln.startswith("{")}
        stored = set(stored_ids(env["ESCROW_DATABASE_URL"]))
        assert reported <= stored  # nothing reported as sealed was lost
    assert reported  # the kills did land after some records were stored
    r = escrow(args[3:], env, root)
    assert r.returncode == 0
    final = stored_ids(env["ESCROW_DATABASE_URL"])
    assert sorted(final) == sorted(opened)  # same records as the undisturbed run, once each


def test_sigterm_seals_the_live_tracks_before_stopping(run, world, tmp_path):
    """A camera service being stopped (SIGTERM, or Ctrl-C) finishes the frame, seals every
    track still live, and exits cleanly: nobody seen so far is lost."""
    import signal

    root, env = world
    _, opened, clip = run
    env = {**env, "ESCROW_DATABASE_URL": f"sqlite:///{tmp_path / 'stopped.db'}"}
    args = capture_events_cmd(root, clip)
    p = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=root, text=True
    )
    first = p.stdout.readline()  # the first track ended and was stored: we are mid-clip
    p.send_signal(signal.SIGTERM)
    out, errs = p.communicate(timeout=120)
    assert p.returncode == 0 and "Traceback" not in errs and "sealing live tracks" in errs
    reported = {json.loads(ln)["sealed"] for ln in [first, *out.splitlines()] if ln.startswith("{")}
    stored = set(stored_ids(env["ESCROW_DATABASE_URL"]))
    assert stored == reported and len(stored) > 1  # live tracks were sealed on the way out
    assert "frames" in out and "105 frames" not in out  # it did stop early
