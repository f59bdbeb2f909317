"""`escrow quality` and friends, run as a user runs them: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ESCROW = [sys.executable, "-m", "escrow.cli"]


def run(args, env=None, cwd=None):
    return subprocess.run(
        [*ESCROW, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory, celeba_dir):
    import cv2

    d = tmp_path_factory.mktemp("quality")
    faces = [celeba_dir / "009901.jpg", celeba_dir / "009902.jpg"]
    flat = d / "flat.png"
    cv2.imwrite(str(flat), np.full((120, 120, 3), 128, np.uint8))
    junk = d / "notes.jpg"
    junk.write_text("this is not a picture")
    return {"faces": faces, "flat": flat, "junk": junk, "missing": d / "missing.jpg"}


def test_quality_prints_path_tab_score_per_face(files, scorer):
    r = run(["quality", *files["faces"]])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, files["faces"], strict=True):
        p, s = line.split("\t")
        assert p == str(path) and np.isfinite(float(s))


def test_quality_bad_inputs_report_each_and_exit_nonzero_at_end(files):
    args = [files["faces"][0], files["missing"], files["junk"], files["flat"], files["faces"][1]]
    r = run(["quality", *args])
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 3, r.stderr
    assert "no such file" in err[0] and "missing.jpg" in err[0]
    assert "not a readable image" in err[1]
    assert "no face" in err[2] and "flat.png" in err[2]
    # the good files before and after the bad ones were still scored
    assert [ln.split("\t")[0] for ln in r.stdout.strip().splitlines()] == [
        str(files["faces"][0]),
        str(files["faces"][1]),
    ]


def test_quality_json(files):
    r = run(["quality", "--json", files["faces"][0], files["missing"]])
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert [set(o) >= {"path", "score", "box"} for o in out] == [True, True]
    good, bad = out
    assert isinstance(good["score"], float) and len(good["box"]) == 4
    x1, y1, x2, y2 = good["box"]
    assert 0 <= x1 < x2 <= 89 and 0 <= y1 < y2 <= 109  # CelebA-10k images are 89x109
    assert bad["score"] is None and "no such file" in bad["error"]


def test_quality_score_matches_library_and_is_reproducible(files, scorer, detector):
    from escrow.detect import largest_face
    from vae.data import read_rgb
    from vae.framing import cut_crop

    rgb = read_rgb(files["faces"][0])
    want = scorer.score([cut_crop(rgb, largest_face(detector.detect(rgb)).box)])[0]
    a = run(["quality", files["faces"][0]]).stdout.split("\t")[1]
    b = run(["quality", files["faces"][0]]).stdout.split("\t")[1]
    assert a == b
    assert abs(float(a) - want) < 0.01


def test_missing_facenet_is_reported_with_the_fix(tmp_path, files):
    fake = tmp_path / "facenet_pytorch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('simulated broken install')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = run(["quality", files["faces"][0]], env=env)
    assert r.returncode == 3
    assert "Traceback" not in r.stderr
    assert "pip install --no-deps facenet-pytorch==2.6.0" in r.stderr


def test_bad_weights_file_is_a_clear_error(tmp_path, files):
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"garbage")
    r = run(["quality", "--weights", bad, files["faces"][0]])
    assert r.returncode == 2 and "not a VAE weights file" in r.stderr
    assert "Traceback" not in r.stderr


def test_demo_seals_one_record_per_sample_person_and_ranks_quality(tmp_path):
    env = {
        **os.environ,
        "ESCROW_KEYS_DIR": str(tmp_path / "keys"),
        "ESCROW_DATABASE_URL": f"sqlite:///{tmp_path / 'vault.db'}",
    }
    r = run(["demo"], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "-> 2 sealed records" in r.stdout  # the sample has two people
    lines = r.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["crop"])
    rows = [ln for ln in lines[head + 1 :] if ln.startswith("  ")]
    names = [ln[:30].strip() for ln in rows]
    quality = [float(ln.split()[-2]) for ln in rows]
    assert len(rows) == 8 and quality == sorted(quality, reverse=True)
    assert names[0] == "astronaut face (original)"
    # a second run reuses the authority and the vault
    again = run(["demo"], env=env, cwd=tmp_path)
    assert again.returncode == 0 and "created an escrow authority" not in again.stdout


@pytest.mark.parametrize(
    ("url", "args", "code", "msg"),
    [
        ("postgresql+psycopg://nobody@127.0.0.1:1/x", ["tokens", "list"], 5, "database error"),
        ("notaurl", ["db", "upgrade"], 2, "bad database URL"),
        (None, ["db", "downgrade", "--revision", "zzz"], 2, "Can't locate revision"),
    ],
)
def test_database_problems_are_one_line_errors(tmp_path, url, args, code, msg):
    env = {**os.environ, "ESCROW_DATABASE_URL": url or f"sqlite:///{tmp_path / 'v.db'}"}
    r = run(args, env=env)
    assert r.returncode == code and msg in r.stderr and "Traceback" not in r.stderr


def with_creation_time(src, dst, when) -> None:
    """A copy of a video whose container says when it was recorded (as cameras write it)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        out.metadata["creation_time"] = when.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def test_capture_of_a_recording_seals_at_its_own_time(tmp_path):
    """`--start`: yesterday's footage gets yesterday's epoch and retention; a time without a
    zone, or a start for a live source, is one line and exit 2."""
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from escrow.canonical import as_utc
    from escrow.sample import write_sample_video
    from policies.schema import load_policy
    from tests.conftest import make_authority

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ks, _ = make_authority(tmp_path / "keys", now - timedelta(days=2), ("demo-cam",), epochs=4)
    first, second = ks.certificates("demo-cam")[:2]  # both over: the vault would not send them
    assert second.window()[1] <= now
    ring = tmp_path / "keyring.json"
    ring.write_text(json.dumps(ks.camera_keyring("demo-cam")))
    video = tmp_path / "walk.mp4"
    write_sample_video(str(video))
    url = f"sqlite:///{tmp_path / 'vault.db'}"
    env = {**os.environ, "ESCROW_DATABASE_URL": url, "ESCROW_KEYS_DIR": str(tmp_path / "none")}
    start = second.window()[0] + timedelta(hours=3)
    args = ["capture", video, "--camera-id", "demo-cam", "--keyring", ring]
    r = run([*args, "--start", start.isoformat(), "--json"], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["records"] >= 1
    eng = sa.create_engine(url)
    with eng.connect() as c:
        rows = c.execute(sa.text("SELECT epoch_id, best_time, expires FROM sealed_records")).all()
    eng.dispose()
    retention = load_policy().retention.for_camera("demo-cam")
    assert rows
    for epoch_id, best, expires in rows:
        best = as_utc(datetime.fromisoformat(str(best)))
        assert epoch_id == second.epoch_id
        assert start <= best < start + timedelta(minutes=5)
        assert as_utc(datetime.fromisoformat(str(expires))) == best + retention

    # `--start file`: the time the recording itself carries (its creation_time tag)
    tagged = tmp_path / "tagged.mp4"
    with_creation_time(video, tagged, start + timedelta(minutes=30))
    r = run(
        ["capture", tagged, "--camera-id", "demo-cam", "--keyring", ring, "--start", "file"],
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    eng = sa.create_engine(url)
    with eng.connect() as c:
        bests = [
            as_utc(datetime.fromisoformat(str(b)))
            for (b,) in c.execute(sa.text("SELECT best_time FROM sealed_records")).all()
        ]
    eng.dispose()
    assert sum(b >= start + timedelta(minutes=30) for b in bests) >= 1

    for bad, why in [
        (["--start", start.replace(tzinfo=None).isoformat()], "give a time zone"),
        (["--start", "yesterday"], "not an ISO 8601 time"),
        (["--start", "file"], "carries no recording time"),
    ]:
        r = run([*args, *bad], env=env, cwd=tmp_path)
        assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run(
        [
            "capture",
            "0",
            "--camera-id",
            "demo-cam",
            "--keyring",
            ring,
            "--start",
            start.isoformat(),
        ],
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "recorded files" in r.stderr, r.stderr
