"""Capture throughput on the street clip at 1080p and 540p, beside the plain per-frame
facenet-pytorch MTCNN loop measured in the same run, and peak memory. The camera seals to
its own signed epoch keys (a development authority made here, 2 of 3 trustee keys; the
keyring file is what `escrow keys export-camera` writes).

    .venv/bin/python benchmarks/capture.py [--frames N]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import torch

from escrow.agent import CaptureAgent, CaptureConfig
from escrow.detect import FaceDetector, FrameDetector
from escrow.keyring import CameraKeyring
from escrow.settings import get_settings
from escrow.sources import Source
from vae.score import QualityScorer
from vault.db import make_engine, session_factory, upgrade
from vault.keys import KeyStore

CAMERA = "bench"
PASSPHRASE = "bench passphrase"


def downscaled(src: Path, dst: Path, width: int | None, frames: int = 0) -> Path:
    """The clip at `width` px wide (None: as is), its first `frames` frames (0: all)."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    out, n = None, 0
    while not frames or n < frames:
        ok, f = cap.read()
        if not ok:
            break
        n += 1
        width = width or f.shape[1]
        h = round(f.shape[0] * width / f.shape[1])
        if width != f.shape[1]:
            f = cv2.resize(f, (width, h), interpolation=cv2.INTER_AREA)
        if out is None:
            out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, h))
        out.write(f)
    out.release()
    return dst


def plain_mtcnn_fps(video: Path) -> float:
    """The peer: facenet-pytorch MTCNN on every full frame, nothing else."""
    det = FaceDetector(min_face_size=40)
    cap = cv2.VideoCapture(str(video))
    n, t = 0, time.perf_counter()
    while True:
        ok, f = cap.read()
        if not ok:
            break
        det.detect(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        n += 1
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=0, help="first N frames only (0: all)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    clip = get_settings().data_dir / "video" / "arcade-1080p.mp4"
    tmp = Path(tempfile.mkdtemp())
    now = datetime.now(UTC)
    ks = KeyStore(tmp / "keys")
    ks.init(now, [(f"trustee-{i}", PASSPHRASE) for i in (1, 2, 3)], 2, PASSPHRASE, dev=True)
    ks.issue_epochs(ks.authority_signer(PASSPHRASE), CAMERA, now, 2)
    (tmp / "ring.json").write_text(json.dumps(ks.camera_keyring(CAMERA)))
    ring = CameraKeyring.load(tmp / "ring.json")
    scorer = QualityScorer()
    if args.frames:
        clip = downscaled(clip, tmp / "arcade-1080p.mp4", None, args.frames)
    clips = {"1080p": clip, "540p": downscaled(clip, tmp / "arcade-540p.mp4", 960)}
    print(f"{'input':<6} {'agent fps':>10} {'records':>8} {'plain MTCNN fps':>16}")
    for name, video in clips.items():
        url = f"sqlite:///{tmp / (name + '.db')}"
        upgrade(url)
        agent = CaptureAgent(
            CaptureConfig(CAMERA),
            FrameDetector(detect_width=960),
            scorer,
            ring,
            session_factory(make_engine(url)),
        )
        t = time.perf_counter()
        summary = agent.run(Source(str(video)))
        fps = summary.frames / (time.perf_counter() - t)
        print(f"{name:<6} {fps:>10.1f} {summary.records:>8} {plain_mtcnn_fps(video):>16.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak RSS {peak:.0f} MiB (agent: detection on frames downscaled to 960 px wide, "
        "VAE scoring of every face, sealing and storing)"
    )


if __name__ == "__main__":
    main()
