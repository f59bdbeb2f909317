"""Capture throughput on the street clip at 1080p and 540p, beside the plain per-frame
facenet-pytorch MTCNN loop measured in the same run, and peak memory.

    .venv/bin/python benchmarks/capture.py
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

import cv2
import torch

from escrow.agent import CaptureAgent, CaptureConfig
from escrow.detect import FrameDetector
from escrow.settings import get_settings
from escrow.sources import Source
from vae.faces import FaceDetector
from vae.score import QualityScorer
from vault.db import make_engine, session_factory, upgrade
from vault.keys import CameraKeyring, KeyStore


def downscaled(src: Path, dst: Path, width: int) -> Path:
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    out = None
    while True:
        ok, f = cap.read()
        if not ok:
            break
        h = round(f.shape[0] * width / f.shape[1])
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
    torch.set_num_threads(2)
    clip = get_settings().data_dir / "video" / "arcade-1080p.mp4"
    tmp = Path(tempfile.mkdtemp())
    ks = KeyStore(tmp / "keys")
    from datetime import UTC, datetime

    ks.init(datetime.now(UTC), epochs_ahead=2, dev=True)
    (tmp / "ring.json").write_text(json.dumps(ks.camera_keyring()))
    ring = CameraKeyring.load(tmp / "ring.json")
    scorer = QualityScorer()
    clips = {"1080p": clip, "540p": downscaled(clip, tmp / "arcade-540p.mp4", 960)}
    print(f"{'input':<6} {'agent fps':>10} {'records':>8} {'plain MTCNN fps':>16}")
    for name, video in clips.items():
        url = f"sqlite:///{tmp / (name + '.db')}"
        upgrade(url)
        agent = CaptureAgent(
            CaptureConfig("bench"),
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
