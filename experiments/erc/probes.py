"""Where the VAE's ERC falls short at f = 0.05: three probes on the cached LFW faces (docs/erc.md).

    .venv/bin/python experiments/erc/probes.py --summary docs/erc/summary.json

1. Breakdown of the false non-matches at f = 0.05: subjects with only the two images of the
   pair; probes that match another, non-reference image of their subject within d_t (the
   pair, not the probe, fails); probes that match none. With the VAE's rank of each group.
2. Pose through the likelihood (#25): the reconstruction probability of the crop's mirror
   image given the crop's own code, alone, as a difference to log RP, summed, and jointly.
3. Reference rule (#26): the most ICAO-like image of each subject (dlib's 68 landmarks: head
   pose from a generic 3D face by solvePnP, eyes open, mouth closed) instead of the medoid.
   A check of the protocol, applied to every method alike.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from escrow.settings import get_settings
from vae.data import read_rgb
from vae.erc import curve as erc
from vae.erc.baselines import baseline_qualities
from vae.erc.data import FaceTable, vae_crops
from vae.erc.matchers import face_recognition_models_dir
from vae.erc.run import cached_faces, weights_framing
from vae.model import gaussian_log_density
from vae.score import QualityScorer

# A generic 3D face (nose tip, chin, eye outer corners, mouth corners), the usual head-pose
# model for solvePnP; units are arbitrary.
FACE_3D = np.array(
    [(0, 0, 0), (0, -330, -65), (-225, 170, -135), (225, 170, -135), (-150, -150, -125),
     (150, -150, -125)],
    dtype=np.float64,
)  # fmt: skip
LANDMARKS_6 = [30, 8, 36, 45, 48, 54]


def areas(d: np.ndarray, quals: dict[str, np.ndarray], f: float) -> dict[str, float]:
    _, curves = erc.all_curves(d, quals, f)
    return {m: erc.erc_area(c) for m, c in curves.items()}


def gap(a: dict[str, float], m: str) -> float:
    return erc.gap_closed(a[m], a[erc.RANDOM], a[erc.PERFECT])


@torch.inference_mode()
def mirror_scores(scorer: QualityScorer, gray: np.ndarray) -> dict[str, np.ndarray]:
    x_all = torch.from_numpy(gray.astype(np.float32)[:, None] / 255.0)
    out: dict[str, list] = {"log_rp": [], "mirror": [], "joint": []}
    n_l = math.log(len(scorer.eps))
    for i in range(0, len(x_all), 256):
        x = x_all[i : i + 256].contiguous()
        mu_z, logvar_z = scorer.model.encoder(x.contiguous(memory_format=torch.channels_last))
        std_z = torch.exp(0.5 * logvar_z)
        own, mir = [], []
        for e in scorer.eps:
            mu_x, sigma_x = scorer.model.decoder(mu_z + std_z * e)
            own.append(gaussian_log_density(x, mu_x, sigma_x))
            mir.append(gaussian_log_density(x.flip(-1), mu_x, sigma_x))
        a, b = torch.stack(own, 1), torch.stack(mir, 1)
        out["log_rp"].append(torch.logsumexp(a, 1) - n_l)
        out["mirror"].append(torch.logsumexp(b, 1) - n_l)
        out["joint"].append(torch.logsumexp(a + b, 1) - n_l)
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}


def icao_likeness(table: FaceTable) -> np.ndarray:
    """Count of ICAO-style checks passed (pose 5/5/8 degrees, eyes open, mouth closed), ties
    broken by the smaller pose deviation."""
    import dlib

    sp = dlib.shape_predictor(
        str(face_recognition_models_dir() / "shape_predictor_68_face_landmarks.dat")
    )
    rows = []
    for path, box in zip(table.paths, table.boxes, strict=True):
        rgb = read_rgb(path)
        h, w = rgb.shape[:2]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        pts = np.array([(p.x, p.y) for p in sp(rgb, dlib.rectangle(x1, y1, x2, y2)).parts()], float)
        cam = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], dtype=np.float64)
        _, rvec, _ = cv2.solvePnP(FACE_3D, pts[LANDMARKS_6], cam, np.zeros(4))
        pitch, yaw, _ = cv2.RQDecomp3x3(cv2.Rodrigues(rvec)[0])[0]
        pitch = (pitch + 360) % 360 - 180 if abs(pitch) > 90 else pitch
        roll = math.degrees(math.atan2(pts[45, 1] - pts[36, 1], pts[45, 0] - pts[36, 0]))

        def ear(e: np.ndarray) -> float:
            return (np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])) / (
                2 * np.linalg.norm(e[0] - e[3])
            )

        eyes = (ear(pts[36:42]) + ear(pts[42:48])) / 2
        mouth = np.linalg.norm(pts[62] - pts[66]) / np.linalg.norm(pts[60] - pts[64])
        rows.append((pitch, yaw, roll, eyes, mouth))
    pitch, yaw, roll, eyes, mouth = np.array(rows).T
    print("yaw 5/50/95th percentiles:", np.percentile(yaw, [5, 50, 95]).round(1))
    pitch = pitch - np.median(pitch)  # the generic model's own offset
    checks = [abs(yaw) <= 5, abs(pitch) <= 5, abs(roll) <= 8, eyes >= 0.2, mouth <= 0.1]
    passed = np.sum(checks, axis=0)  # a count: numpy adds booleans as OR
    deviation = (yaw / 5) ** 2 + (pitch / 5) ** 2 + (roll / 8) ** 2
    return passed - deviation / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summary", type=Path, required=True, help="summary.json of escrow erc")
    ap.add_argument("--weights", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(get_settings().threads or 2)
    summ = json.loads(args.summary.read_text())
    st = get_settings()
    table, emb = cached_faces(summ, st.cache_dir)
    scorer = QualityScorer(args.weights)
    gray = vae_crops(table, weights_framing(scorer.record), st.cache_dir)
    m = mirror_scores(scorer, gray)
    corr = scorer.complexity_correction(gray.astype(np.float32) / 255.0)
    q = m["log_rp"] + corr
    pairs = erc.genuine_pairs(table.subjects, emb)

    print("1. false non-matches at f = 0.05")
    d_t = erc.threshold_at(pairs.distance, 0.05)
    rank = np.argsort(np.argsort(q[pairs.probe])) / len(pairs.probe)
    groups: dict[str, list[float]] = {"only two images": [], "matches another": [], "none": []}
    for i in np.where(pairs.distance > d_t)[0]:
        probe, ref = pairs.probe[i], pairs.reference[i]
        rows = np.where(table.subjects == table.subjects[probe])[0]
        others = [r for r in rows if r not in (probe, ref)]
        if not others:
            groups["only two images"].append(rank[i])
        elif (np.linalg.norm(emb[others] - emb[probe], axis=1) <= d_t).any():
            groups["matches another"].append(rank[i])
        else:
            groups["none"].append(rank[i])
    for name, r in groups.items():
        print(
            f"  {name}: {len(r)}, VAE rank median {np.median(r):.2f}, "
            f"upper half {np.mean(np.array(r) > 0.5):.2f}"
        )

    print("2. mirror-image likelihoods (gap closed at f = 0.01 / 0.05)")
    variants = {
        "shipped": q,
        "mirror alone": m["mirror"],
        "mirror - log RP": m["mirror"] - m["log_rp"],
        "log RP + mirror + correction": m["log_rp"] + m["mirror"] + corr,
        "joint RP + correction": m["joint"] + corr,
    }
    for name, v in variants.items():
        g = [gap(areas(pairs.distance, {"v": v[pairs.probe]}, f), "v") for f in (0.01, 0.05)]
        print(f"  {name:26s} {g[0]:+.2f} / {g[1]:+.2f}")

    print("3. reference = most ICAO-like image instead of the medoid")
    like = icao_likeness(table)
    refs = {}
    for s in np.unique(table.subjects):
        rows = np.where(table.subjects == s)[0]
        refs[s] = int(rows[np.argmax(like[rows])])
    base = baseline_qualities(table.boxes, table.probs, table.face112, with_brisque=False)
    for rule, pr in (
        ("medoid", pairs),
        ("ICAO-like", erc.genuine_pairs(table.subjects, emb, refs)),
    ):
        quals = {"VAE": q[pr.probe], **{k: v[pr.probe] for k, v in base.items()}}
        for f in (0.01, 0.05):
            a = areas(pr.distance, quals, f)
            cells = " ".join(f"{k} {a[k]:.4f} ({gap(a, k):+.2f})" for k in quals)
            print(f"  {rule:9s} f = {f}: {cells}")


if __name__ == "__main__":
    main()
