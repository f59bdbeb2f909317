"""How the capture agent's re-finding frames a face, against a full scan of the same frame.

Between scans the agent re-finds each tracked face with R-Net and O-Net on the box the tracker
predicts (`FrameDetector.refine`). If that box is framed differently from the one a full scan
gives, the crops it cuts score differently and the best crop of a track can be lost (issue 24:
person 1 sealed at 0.938 of the every-frame pipeline's best). For each frame of the street
clip and each face a full scan finds there, the face is re-found from the box of the same
face in the previous two scans (extrapolated, as a constant-velocity tracker predicts),
grown by a factor before R-Net (with --chain: re-found frame after frame from the last
scan, as the agent does between its scans every 8th frame), and compared: IoU with the
scan's box, offset of each edge, and the VAE's quality of the two crops.

    .venv/bin/python experiments/capture/refine_framing.py [--grow 1.0 1.15 1.3]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from escrow.detect import FrameDetector
from escrow.settings import get_settings
from escrow.truth import iou
from tests.mjpeg import clip_frames
from vae.score import QualityScorer


def grown(box, s: float):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    w, h = (box[2] - box[0]) * s / 2, (box[3] - box[1]) * s / 2
    return (cx - w, cy - h, cx + w, cy + h)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grow", type=float, nargs="+", default=[1.0, 1.15, 1.3])
    ap.add_argument("--chain", action="store_true", help="re-find from re-found boxes")
    args = ap.parse_args()
    torch.set_num_threads(1)
    frames = clip_frames(str(get_settings().data_dir / "video" / "arcade-1080p.mp4"))
    det, scorer = FrameDetector(), QualityScorer()
    scans = [det(f) for f in frames]
    pairs = []  # (frame, scan detection, predicted box)
    for i in range(2, len(frames)):
        for d in scans[i]:
            a = max(scans[i - 1], key=lambda p: iou(p.box, d.box), default=None)
            if a is None or iou(a.box, d.box) < 0.3:
                continue
            b = max(scans[i - 2], key=lambda p: iou(p.box, a.box), default=None)
            if b is None or iou(b.box, a.box) < 0.3:
                continue
            pred = tuple(2 * x - y for x, y in zip(a.box, b.box, strict=True))
            pairs.append((i, d, pred))
    q_scan = scorer.score([d.crop for _, d, _ in pairs], order="bgr")
    print(f"{len(pairs)} faces re-found from a prediction, against the scan of their frame")
    print(
        f"{'grow':>5} {'found':>6} {'IoU':>6} {'dx1':>6} {'dy1':>6} {'dx2':>6} {'dy2':>6} "
        f"{'q/scan median':>13} {'q/scan p10':>10}"
    )
    for s in args.grow:
        found, ious, edges, ratios = 0, [], [], []
        refound = []
        for i, d, pred in pairs:
            if args.chain:  # as the agent: predicted from its own last re-found boxes
                start = i - i % 8
                a = max(scans[start], key=lambda p: iou(p.box, d.box), default=None)
                boxes = [a.box] if a is not None and iou(a.box, d.box) > 0.1 else []
                for j in range(start + 1, i):
                    if len(boxes) >= 2:
                        p = tuple(2 * x - y for x, y in zip(boxes[-1], boxes[-2], strict=True))
                    elif boxes:
                        p = boxes[-1]
                    else:
                        break
                    (rj,) = det.refine(frames[j], [grown(p, s)])
                    if rj is None:
                        break
                    boxes.append(rj.box)
                if i % 8 == 0 or len(boxes) < 2 or len(boxes) < i - start:
                    refound.append(None if i % 8 else d)
                    continue
                pred = tuple(2 * x - y for x, y in zip(boxes[-1], boxes[-2], strict=True))
            (r,) = det.refine(frames[i], [grown(pred, s)])
            refound.append(r)
        crops = [r.crop for r in refound if r is not None]
        qs = iter(scorer.score(crops, order="bgr")) if crops else iter(())
        for (_i, d, _p), r, qd in zip(pairs, refound, q_scan, strict=True):
            if r is None:
                continue
            found += 1
            ious.append(iou(r.box, d.box))
            edges.append([a - b for a, b in zip(r.box, d.box, strict=True)])
            ratios.append(next(qs) / qd)
        e = np.mean(edges, axis=0)
        print(
            f"{s:5.2f} {found / len(pairs):6.1%} {np.mean(ious):6.3f} "
            + " ".join(f"{v:6.1f}" for v in e)
            + f" {np.median(ratios):13.3f} {np.percentile(ratios, 10):10.3f}"
        )


if __name__ == "__main__":
    main()
