"""How far could *supervised* image statistics go on the ERC? (docs/erc.md #69)

The VAE is unsupervised: it never sees an identity or a matcher score. This asks what a
quality method could reach if it were *fitted to the matcher's errors on LFW itself*, using
only what one image shows: the VAE's score and code, the baselines, the crop's light, and the
geometry of dlib's 5 landmarks inside the MTCNN box (where the matcher aligns its chip; a
landmark placed off the face misaligns that chip). A ridge regression predicts each probe's
distance to its reference from those numbers, cross-validated over five folds of *subjects*
(no person is in the fold that fits and the fold that is predicted), and the prediction is
ranked as a quality. It uses LFW's labels, so it is not a quality method and is never
shipped; it is an estimate of the ceiling for identity-blind image statistics under this
protocol, to read beside #44's probe-only oracle.

    .venv/bin/python experiments/erc/feature_ceiling.py --summary /tmp/erc/base/summary.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from escrow.settings import get_settings
from vae.erc import curve as erc
from vae.erc.baselines import baseline_qualities
from vae.erc.data import FaceTable, read_rgb, vae_crops
from vae.erc.run import cached_faces, weights_framing
from vae.score import QualityScorer, png_bits

FOLDS = 5


def dlib_landmarks(table: FaceTable, cache_dir: Path) -> np.ndarray:
    """dlib's 5 landmarks (N, 5, 2) found inside each chosen MTCNN box, as the matcher finds
    them before it cuts its chip. Cached."""
    cache = Path(cache_dir) / "erc" / f"landmarks5-{table.key}.npy"
    if cache.exists():
        return np.load(cache)
    from vae.erc.matchers import DlibMatcher

    m = DlibMatcher()
    out = np.zeros((len(table), 5, 2), np.float32)
    for i, path in enumerate(table.paths):
        s = m.landmarks(read_rgb(Path(path)), table.boxes[i])
        out[i] = [(s.part(k).x, s.part(k).y) for k in range(5)]
    np.save(cache, out)
    return out


def landmark_features(landmarks: np.ndarray, boxes: np.ndarray) -> dict[str, np.ndarray]:
    """The landmarks in box coordinates (0..1), how far that layout is from the usual one
    (Mahalanobis distance from the median layout), and rough yaw and roll from it."""
    side = (boxes[:, 2] - boxes[:, 0])[:, None, None]
    rel = ((landmarks - boxes[:, None, :2]) / side).reshape(len(boxes), -1)
    d = rel - np.median(rel, axis=0)
    mahalanobis = np.sqrt(np.einsum("ij,jk,ik->i", d, np.linalg.inv(np.cov(rel.T)), d))
    eye_r, eye_l, nose = landmarks[:, 0:2].mean(1), landmarks[:, 2:4].mean(1), landmarks[:, 4]
    axis = eye_l - eye_r
    iod = np.linalg.norm(axis, axis=1) + 1e-6
    off = nose - (eye_r + eye_l) / 2
    feats = {f"landmark{k}": rel[:, k] for k in range(rel.shape[1])}
    feats["landmark layout atypicality"] = mahalanobis
    feats["yaw (nose offset / eye distance)"] = np.abs((off * axis).sum(1)) / iod**2
    feats["roll (degrees)"] = np.abs(np.degrees(np.arctan2(axis[:, 1], axis[:, 0])))
    feats["eye distance / box"] = iod / side[:, 0, 0]
    return feats


def standardised(cols: dict[str, np.ndarray]) -> np.ndarray:
    x = np.stack([np.asarray(v, dtype=np.float64) for v in cols.values()], 1)
    return (x - x.mean(0)) / (x.std(0) + 1e-9)


def ridge_cv(x: np.ndarray, y: np.ndarray, folds: np.ndarray, lam: float) -> np.ndarray:
    """Out-of-fold ridge predictions of y (one row per pair), with an intercept."""
    x = np.concatenate([x, np.ones((len(x), 1))], 1)
    pred = np.zeros(len(y))
    for k in np.unique(folds):
        fit, held = folds != k, folds == k
        a = x[fit]
        beta = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y[fit])
        pred[held] = x[held] @ beta
    return pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summary", type=Path, required=True, help="summary.json of escrow erc")
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--bootstrap", type=int, default=300, help="0: areas only")
    ap.add_argument("--seed", type=int, default=0, help="of the subjects' fold assignment")
    args = ap.parse_args()
    st = get_settings()
    torch.set_num_threads(st.threads or 2)
    summ = json.loads(args.summary.read_text())
    table, emb = cached_faces(summ, st.cache_dir)
    pairs = erc.genuine_pairs(table.subjects, emb)

    scorer = QualityScorer(args.weights)
    gray = vae_crops(table, weights_framing(scorer.record), st.cache_dir, progress=False)
    x = gray.astype(np.float32) / 255.0
    log_rp = scorer.log_rp(x)
    with torch.inference_mode():
        code = torch.cat(
            [scorer.model.encoder(scorer_batch)[0] for scorer_batch in _batches(x)]
        ).numpy()
    image = {
        "VAE": log_rp + scorer.complexity_correction(x),
        "VAE log RP": log_rp,
        "PNG bits": png_bits(x),
        **baseline_qualities(table.boxes, table.probs, table.face112, with_brisque=False),
        "brightness": x.mean((1, 2)),
        "contrast": x.std((1, 2)),
        "faces in the image": table.n_faces.astype(np.float64),
        **landmark_features(dlib_landmarks(table, st.cache_dir), table.boxes),
    }
    no_vae = {k: v for k, v in image.items() if not k.startswith("VAE")}
    code_cols = standardised({f"z{i}": c for i, c in enumerate(code.T)})
    sets = {
        "landmark layout atypicality alone (no fit)": None,
        "image statistics without the VAE": standardised(no_vae),
        "image statistics with the VAE": standardised(image),
        "the VAE's code (128-d) alone": code_cols,
        "code + image statistics with the VAE": np.concatenate([code_cols, standardised(image)], 1),
    }
    rng = np.random.default_rng(args.seed)
    subjects = np.unique(pairs.subject)
    fold_of = dict(zip(subjects, rng.integers(0, FOLDS, len(subjects)), strict=True))
    folds = np.array([fold_of[s] for s in pairs.subject])
    print(f"{len(pairs.probe)} pairs of {len(subjects)} subjects, {FOLDS} folds by subject")

    def report(label: str, q: np.ndarray) -> None:
        cells = []
        for f in (float(v) for v in summ["fs"]):
            _, curves = erc.all_curves(pairs.distance, {"q": q}, f)
            a = {m: erc.erc_area(c) for m, c in curves.items()}
            gap = erc.gap_closed(a["q"], a[erc.RANDOM], a[erc.PERFECT])
            cell = f"f={f:g}: area {a['q']:.4f} gap {gap:.2f}"
            if args.bootstrap:
                boot = erc.bootstrap_areas(pairs, {"q": q}, f, reps=args.bootstrap)
                share = (boot[erc.RANDOM] - boot["q"]) / (boot[erc.RANDOM] - boot[erc.PERFECT])
                lo, hi = erc.interval(share)
                cell += f" [{lo:.2f}, {hi:.2f}]"
            cells.append(cell)
        print(f"{label:58s} | " + " | ".join(cells), flush=True)

    report("VAE (shipped score, unsupervised)", image["VAE"][pairs.probe])
    for label, feats in sets.items():
        if feats is None:
            report(label, -image["landmark layout atypicality"][pairs.probe])
            continue
        for lam in (10.0, 100.0):
            pred = ridge_cv(feats[pairs.probe], pairs.distance, folds, lam)
            report(f"fitted on LFW: {label}, ridge {lam:g}", -pred)


def _batches(x: np.ndarray, size: int = 256):
    for i in range(0, len(x), size):
        yield torch.from_numpy(x[i : i + size, None]).contiguous(memory_format=torch.channels_last)


if __name__ == "__main__":
    main()
