"""Capture on a camera's CPU, with its peers measured in the same run.

1. The 1080p street clip (105 frames, 25 fps), the whole pipeline from decoding to sealed
   record: the real-time agent (detection where and when needed) beside the every-frame
   pipeline (MTCNN on the whole of every frame, every face scored), plain per-frame
   facenet-pytorch MTCNN at full and half size, and deface (CenterFace + blur, its defaults,
   onnxruntime). Then both pipelines against each other (tracks found, each person's best
   quality) and against the clip's hand-labelled faces (tests/data/arcade-1080p.gt.txt).
2. A live camera: the clip served as an MJPEG stream paced at 25 fps (another process),
   looped with stretches of an empty scene between passes, captured for --live-seconds:
   lag (arrival to handled) p50/p99, frames skipped, CPU of the busy and the empty stretches,
   the process's memory over time.

    .venv/bin/python benchmarks/capture.py [--repeat 3] [--live-seconds 60] [--empty-seconds 5]

The camera seals to its own signed epoch keys (a development authority made here, 2 of 3
trustee keys; the keyring file is what `escrow keys export-camera` writes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.mjpeg: the loopback camera the live test uses too

from escrow.agent import (  # noqa: E402
    CaptureAgent,
    CaptureConfig,
    FaceEvidence,
    Schedule,
    ScoreGate,
)
from escrow.detect import FaceDetector, FrameDetector  # noqa: E402
from escrow.keyring import CameraKeyring  # noqa: E402
from escrow.settings import get_settings  # noqa: E402
from escrow.sources import Source  # noqa: E402
from escrow.truth import load_mot, score_capture  # noqa: E402
from vae.score import QualityScorer  # noqa: E402
from vault.db import make_engine, session_factory, upgrade  # noqa: E402
from vault.keys import KeyStore  # noqa: E402

CAMERA = "bench"
PASSPHRASE = "bench passphrase"
TRUTH = ROOT / "tests" / "data" / "arcade-1080p.gt.txt"


def keyring(tmp: Path) -> CameraKeyring:
    now = datetime.now(UTC)
    ks = KeyStore(tmp / "keys")
    ks.init(now, [(f"trustee-{i}", PASSPHRASE) for i in (1, 2, 3)], 2, PASSPHRASE, dev=True)
    ks.issue_epochs(ks.authority_signer(PASSPHRASE), CAMERA, now, 2)
    (tmp / "ring.json").write_text(json.dumps(ks.camera_keyring(CAMERA)))
    return CameraKeyring.load(tmp / "ring.json")


def warm_detector(clip: Path) -> FrameDetector:
    """The agent's detector with its MTCNN loaded (what a camera does once, at start)."""
    det = FrameDetector(detect_width=960)
    ok, frame = cv2.VideoCapture(str(clip)).read()
    det(frame)
    return det


DETECTOR: FrameDetector | None = None
SCHEDULE: dict = {}  # the agent's Schedule fields other than the defaults (--schedule)


def capture(source, ring, scorer, tmp: Path, every_frame: bool, on_frame=None) -> dict:
    """One agent run as `escrow capture` composes it -> summary, assignments, records."""
    url = f"sqlite:///{tmp / f'{time.monotonic_ns()}.db'}"
    upgrade(url)
    cfg = CaptureConfig(
        CAMERA,
        schedule=Schedule.reference() if every_frame else Schedule(**SCHEDULE),
        gate=ScoreGate(enabled=not every_frame),
        evidence=FaceEvidence(min_quality=scorer.non_face_below),
    )
    assignments, records = [], []

    def seen(frame, faces, summary):
        assignments.extend((frame.index, tid, d.box, q) for d, tid, q in faces)
        if on_frame:
            on_frame(frame, faces, summary)

    def sealed(_rid, meta):
        records.append((meta["track_id"], meta["best_frame"], meta["box"], meta["quality"]))

    agent = CaptureAgent(
        cfg,
        DETECTOR,
        scorer,
        ring,
        session_factory(make_engine(url)),
        on_frame=seen,
        on_sealed=sealed,
    )
    if agent.scoring is not None:  # a camera starts its scoring process once, at boot
        agent.scoring.wait_ready()
    t = time.perf_counter()
    summary = agent.run(source)
    wall = time.perf_counter() - t
    return {
        "fps": summary.frames / wall,
        "summary": summary.public(),
        "assignments": assignments,
        "records": records,
    }


def plain_mtcnn_fps(video: Path, width: int | None) -> float:
    """The peer: facenet-pytorch MTCNN on every frame (at `width`), nothing else."""
    det = FaceDetector(min_face_size=40 if width is None else 40 * width // 1920)
    cap = cv2.VideoCapture(str(video))
    n, t = 0, time.perf_counter()
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if width:
            f = cv2.resize(f, (width, width * f.shape[0] // f.shape[1]), cv2.INTER_AREA)
        det.detect(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        n += 1
    return n / (time.perf_counter() - t)


def deface_fps(video: Path) -> float | None:
    """The peer: deface's pipeline (CenterFace at threshold 0.2, each face blurred in an
    ellipse at mask scale 1.3: its command's defaults) on every frame, decode included."""
    try:
        from deface.centerface import CenterFace
        from deface.deface import anonymize_frame
    except ImportError:
        return None
    cap = cv2.VideoCapture(str(video))
    cf, n, t = None, 0, time.perf_counter()
    while True:
        ok, f = cap.read()
        if not ok:
            break
        cf = cf or CenterFace(in_shape=(f.shape[1], f.shape[0]), backend="auto")
        dets, _ = cf(f, threshold=0.2)
        anonymize_frame(dets, f, 1.3, "blur", True, False, None, 20)
        n += 1
    return n / (time.perf_counter() - t)


def persons_best(run: dict, truth) -> dict[int, float]:
    """Each labelled person's best sealed quality in a run (records matched on their frame)."""
    from escrow.truth import iou

    best: dict[int, float] = {}
    for _tid, frame, box, q in run["records"]:
        faces = truth.get(frame, [])
        if faces:
            person, pbox = max(faces, key=lambda f: iou(f[1], box))
            if iou(pbox, box) >= 0.3:
                best[person] = max(best.get(person, -np.inf), q)
    return best


def truth_row(run: dict, truth) -> dict:
    s = score_capture(
        [(i, t, b) for i, t, b, _ in run["assignments"]],
        [(t, i, b) for t, i, b, _ in run["records"]],
        truth,
    )
    keys = ("eligible", "records", "precision", "recall", "exactly_one", "duplicates")
    return {k: s[k] for k in keys} | {
        "id_switches": s["id_switches"],
        "fragmentations": s["fragmentations"],
    }


def serve_clip(frames_path: str, empty_seconds: float, conn) -> None:
    """The live camera, in a process of its own: the clip, then an empty scene, looped."""
    from tests.mjpeg import MjpegCamera, clip_frames, encode

    frames = clip_frames(frames_path)
    empty = cv2.GaussianBlur(frames[0], (0, 0), 40)  # the scene with no one in it: no face
    clip, still = encode(frames), encode([empty])[0]

    def schedule():
        while True:
            yield from clip
            for _ in range(round(25 * empty_seconds)):
                yield still

    with MjpegCamera(schedule, fps=25) as cam:
        conn.send(cam.url)
        conn.recv()  # until the benchmark is done


def reading_cost(url: str, seconds: float) -> float:
    """CPU (cores) of only reading the stream, a frame taken every fifth of a second: the
    floor under an empty scene's cost (every frame of the stream is decoded, taken or not)."""
    src = Source(url, log=lambda m: None)
    t0, c0 = time.monotonic(), time.process_time()
    for _ in src:
        if time.monotonic() - t0 >= seconds:
            break
        time.sleep(0.2)
    return (time.process_time() - c0) / (time.monotonic() - t0)


def rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes used so far: the agent counts with its
    scoring process, which time.process_time() does not see."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def live(clip: Path, ring, scorer, tmp: Path, seconds: float, empty_seconds: float) -> dict:
    here, there = multiprocessing.Pipe()
    camera = multiprocessing.Process(
        target=serve_clip, args=(str(clip), empty_seconds, there), daemon=True
    )
    camera.start()
    url = here.recv()
    lags: list[float] = []
    cpu: dict[str, list[float]] = {"busy": [], "empty": []}
    memory: list[tuple[float, dict[str, float]]] = []
    period = 105 / 25 + empty_seconds
    pids: list[int] = [os.getpid()]  # the agent and its scoring process
    state = {"t0": None, "cpu": cpu_seconds(pids), "wall": time.monotonic(), "agent": None}

    def on_frame(frame, faces, summary):
        now = datetime.now(UTC)
        lags.append((now - frame.time).total_seconds())
        wall = time.monotonic()
        if state["t0"] is None:
            state["t0"] = wall
        if wall - state["wall"] >= 1.0:  # one CPU sample a second, by what the camera shows
            phase = (wall - state["t0"]) % period
            now_cpu = cpu_seconds(pids)
            used = (now_cpu - state["cpu"]) / (wall - state["wall"])
            cpu["busy" if phase < 105 / 25 else "empty"].append(used)
            state["cpu"], state["wall"] = now_cpu, wall
            rss = dict(zip(("agent", "scorer"), map(rss_mib, pids), strict=True))
            memory.append((round(wall - state["t0"], 1), rss | {"both": sum(rss.values())}))
        if wall - state["t0"] >= seconds:
            state["agent"].request_stop()

    floor = reading_cost(url, 5.0)
    src = Source(url, log=lambda m: None)
    url_db = f"sqlite:///{tmp / 'live.db'}"
    upgrade(url_db)
    agent = CaptureAgent(
        CaptureConfig(  # as `escrow capture URL` configures it
            CAMERA,
            evidence=FaceEvidence(min_quality=scorer.non_face_below),
            keep_histories=False,
        ),
        DETECTOR,
        scorer,
        ring,
        session_factory(make_engine(url_db)),
        on_frame=on_frame,
    )
    state["agent"] = agent
    agent.scoring.wait_ready()
    pids.append(agent.scoring.pid)
    state["cpu"] = cpu_seconds(pids)
    summary = agent.run(src)
    here.send("done")
    camera.terminate()
    lag = np.array(lags)
    return {
        "summary": summary.public(),
        "lag_p50_s": round(float(np.percentile(lag, 50)), 3),
        "lag_p99_s": round(float(np.percentile(lag, 99)), 3),
        "cpu_busy_cores": round(statistics.median(cpu["busy"]), 2) if cpu["busy"] else None,
        "cpu_empty_cores": round(statistics.median(cpu["empty"]), 3) if cpu["empty"] else None,
        "cpu_reading_only_cores": round(floor, 3),
        "rss_mib": memory,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of the agent (median fps); 0: live part only"
    )
    ap.add_argument("--live-seconds", type=float, default=60.0, help="0: no live part")
    ap.add_argument("--empty-seconds", type=float, default=5.0, help="empty scene per loop")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument(
        "--schedule",
        default="{}",
        help="the agent's Schedule fields to change, as JSON, e.g. '{\"scan_interval\": 12}'",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    SCHEDULE.update(json.loads(args.schedule))
    clip = get_settings().data_dir / "video" / "arcade-1080p.mp4"
    tmp = Path(tempfile.mkdtemp())
    ring, scorer = keyring(tmp), QualityScorer()
    truth = load_mot(TRUTH)
    global DETECTOR
    DETECTOR = warm_detector(clip)

    if args.repeat > 0:
        file_part(args, clip, ring, scorer, tmp, truth)
    if args.live_seconds > 0:
        live_part(args, clip, ring, scorer, tmp)


def file_part(args, clip: Path, ring, scorer, tmp: Path, truth) -> None:
    runs = [capture(Source(str(clip)), ring, scorer, tmp, False) for _ in range(args.repeat)]
    agent = sorted(runs, key=lambda r: r["fps"])[len(runs) // 2]
    ref = capture(Source(str(clip)), ring, scorer, tmp, True)
    rows = [
        ("agent (real time)", statistics.median(r["fps"] for r in runs)),
        ("every-frame pipeline", ref["fps"]),
        ("MTCNN per frame, 1080p", plain_mtcnn_fps(clip, None)),
        ("MTCNN per frame, 540p", plain_mtcnn_fps(clip, 960)),
        ("deface (CenterFace, blur)", deface_fps(clip)),
    ]
    print(f"1080p street clip, {args.threads} torch thread(s), 2 cores")
    print(f"{'pipeline':<28} {'frames/s':>9}")
    for name, fps in rows:
        print(f"{name:<28} {'n/a' if fps is None else f'{fps:9.1f}':>9}")
    print("agent runs (fps):", [round(r["fps"], 1) for r in runs])
    print("agent:", json.dumps(agent["summary"]))

    ref_tracks = {t for t, *_ in ref["records"]}
    found = 0
    for t in ref_tracks:  # a sealed track of the every-frame pipeline the agent also holds
        boxes = {i: b for i, tt, b, _ in ref["assignments"] if tt == t}
        mine = {t2 for i, t2, b2, _ in agent["assignments"] if i in boxes}
        from escrow.truth import iou

        found += any(
            iou(boxes[i], b2) >= 0.3 and t2 in {r[0] for r in agent["records"]}
            for i, t2, b2, _ in agent["assignments"]
            if i in boxes and t2 in mine
        )
    print(f"sealed tracks of the every-frame pipeline found: {found}/{len(ref_tracks)}")
    ours, theirs = persons_best(agent, truth), persons_best(ref, truth)
    ratios = {p: round(ours.get(p, float("nan")) / q, 3) for p, q in sorted(theirs.items())}
    print("each person's sealed quality / every-frame best:", ratios)
    print("against the labelled faces:")
    print("  agent      ", json.dumps(truth_row(agent, truth)))
    print("  every-frame", json.dumps(truth_row(ref, truth)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS so far {peak:.0f} MiB")


def live_part(args, clip: Path, ring, scorer, tmp: Path) -> None:
    from soak import memory_summary  # the soak's rule for "flat"

    r = live(clip, ring, scorer, tmp, args.live_seconds, args.empty_seconds)
    print(
        f"live MJPEG at 25 fps for {args.live_seconds:.0f} s (clip, then "
        f"{args.empty_seconds:.0f} s empty, looped):"
    )
    print("  ", json.dumps({k: v for k, v in r.items() if k != "rss_mib"}))
    print("   RSS MiB           first     max    last  growth  flat")
    for name, m in memory_summary(r["rss_mib"]).items():
        print(
            f"   {name:<12} {m['first_mib']:8.0f} {m['max_mib']:7.0f} {m['last_mib']:7.0f} "
            f"{m['growth_mib']:+7.1f}  {'yes' if m['flat'] else 'NO'} ({m['samples']} samples)"
        )
    minutes = {int(t // 60): d["both"] for t, d in r["rss_mib"]}
    print("   both, at each minute's last sample:", [round(v) for v in minutes.values()])


if __name__ == "__main__":
    main()
