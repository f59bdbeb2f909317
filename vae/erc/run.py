"""The ERC evaluation end to end: faces -> embeddings -> pairs -> qualities -> curves,
bootstrap -> plots, CSV, summary.json. `escrow erc` is a thin call into `run_erc`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vae.erc import curve as erc
from vae.erc.baselines import baseline_qualities
from vae.erc.data import FaceTable, detect_faces, load_dataset, vae_crops
from vae.erc.matchers import embeddings, make_matcher
from vae.erc.report import (
    f_label,
    plot_erc,
    skin_tone_table,
    summary_table,
    write_curves_csv,
    write_summary,
)
from vae.erc.skin_tone import PROXY, face_itas, rejection_by_band

OURS = "VAE"
DIAGNOSTIC = ("VAE log RP",)  # shown, but not a baseline the VAE must beat
MIN_PAIRS_FOR_0001 = 10_000  # below this, f = 0.001 leaves a handful of false non-matches


@dataclass
class ErcConfig:
    dataset: Path
    out: Path
    cache_dir: Path
    matcher: str = "dlib"
    limit: int | None = None
    identities: Path | None = None
    weights: Path | None = None
    samples: int = 10
    framing: str | None = None  # None: as the weights were trained (see weights_framing)
    fnmr: list[float] = field(default_factory=list)  # empty: 0.01, 0.05 (+ 0.001 if enough)
    bootstrap: int = 1000
    seed: int = 0
    progress: bool = True


def default_fs(n_pairs: int) -> list[float]:
    """The paper's 0.01 (and 0.001 once there are enough pairs) plus 0.05."""
    return [0.01, 0.05, 0.001] if n_pairs >= MIN_PAIRS_FOR_0001 else [0.01, 0.05]


def weights_framing(record: dict) -> str:
    """How the weights' training crops were framed: a VAE must be scored on faces framed
    the same way. `escrow vae train` cuts squares of (1 + margin) x the box."""
    if record.get("framing"):
        return record["framing"]
    cfg = record.get("train_config", {})
    side = f",max_side={cfg['max_side']}" if cfg.get("max_side") else ""
    return f"margin={cfg.get('margin', 0.2):g}{side}"


def cached_faces(
    summary: dict, cache_dir: Path, progress: bool = False
) -> tuple[FaceTable, np.ndarray]:
    """The faces and float64 matcher embeddings of an earlier run, named by its summary.json:
    what the benchmarks re-score, read back from the run's caches rather than redone."""
    _, samples = load_dataset(Path(summary["dataset"]))
    table = detect_faces(samples, cache_dir, progress=progress)
    emb = embeddings(table, make_matcher(summary["matcher"]), cache_dir)
    return table, emb.astype(np.float64)


def vae_qualities(gray64: np.ndarray, scorer, progress: bool) -> dict[str, np.ndarray]:
    """{"VAE": quality with the weights' complexity correction, "VAE log RP": eq. (2)
    alone} per row."""
    grays = gray64.astype(np.float32) / 255.0
    chunks = range(0, len(grays), 512)
    log_rp = np.concatenate(
        [
            scorer.log_rp(grays[i : i + 512])
            for i in tqdm(chunks, desc="VAE scores", disable=not progress)
        ]
        or [np.zeros(0)]
    )
    return {OURS: log_rp + scorer.complexity_correction(grays), "VAE log RP": log_rp}


def run_erc(cfg: ErcConfig, log: Callable[[str], None] = print) -> dict:
    t0 = time.time()
    layout, samples = load_dataset(cfg.dataset, cfg.identities, cfg.limit)
    if not samples:
        raise ValueError(f"no subject with two or more images under {cfg.dataset}")
    matcher = make_matcher(cfg.matcher)  # fail before the long steps if it cannot run
    table = detect_faces(samples, cfg.cache_dir, progress=cfg.progress, log=log)
    emb = embeddings(table, matcher, cfg.cache_dir, progress=cfg.progress, log=log)
    pairs = erc.genuine_pairs(table.subjects, emb)
    if len(pairs) < 20:
        raise ValueError(f"only {len(pairs)} genuine pairs: too few for an ERC")

    from vae.score import QualityScorer

    scorer = QualityScorer(cfg.weights, samples=cfg.samples)
    framing = cfg.framing or weights_framing(scorer.record)
    gray64 = vae_crops(table, framing, cfg.cache_dir, cfg.progress)
    per_row = vae_qualities(gray64, scorer, cfg.progress)
    bar = (lambda it: tqdm(it, desc="BRISQUE", unit="face")) if cfg.progress else None
    base = baseline_qualities(
        table.boxes, table.probs, table.face112, progress=bar or (lambda i: i)
    )
    per_row.update(base)
    qualities = {m: q[pairs.probe] for m, q in per_row.items()}  # a pair's quality = its probe's
    baselines = [*base, erc.RANDOM]

    fs = cfg.fnmr or default_fs(len(pairs))
    # an f with no false non-match at all (f N < 1) has a flat zero curve for every method
    skipped = [f for f in fs if np.floor(f * len(pairs) + 1e-9) < 1]
    fs = [f for f in fs if f not in skipped]
    if skipped:
        log(f"skipped f = {', '.join(map(f_label, skipped))}: fewer than 1/f pairs")
    if not fs:
        raise ValueError(f"only {len(pairs)} genuine pairs: no false non-match at any f")
    cfg.out.mkdir(parents=True, exist_ok=True)
    methods = [*qualities, erc.RANDOM, erc.PERFECT]
    results: dict[str, dict] = {}
    per_f: dict[float, tuple[float, dict]] = {}
    for f in fs:
        d_t, curves = erc.all_curves(pairs.distance, qualities, f)
        per_f[f] = (d_t, curves)
        areas = {m: erc.erc_area(c) for m, c in curves.items()}
        boot = erc.bootstrap_areas(
            pairs,
            qualities,
            f,
            reps=cfg.bootstrap,
            seed=cfg.seed,
            progress=lambda it, f=f: tqdm(
                it, desc=f"bootstrap f={f:g}", unit="rep", disable=not cfg.progress
            ),
        )
        res_m = {}
        for m in methods:
            res_m[m] = {
                "area": areas[m],
                "area_ci95": list(erc.interval(boot[m])),
                "fnmr_at_0.1": erc.at_r(curves[m], 0.1),
                "fnmr_at_0.2": erc.at_r(curves[m], 0.2),
                "gap_closed": erc.gap_closed(areas[m], areas[erc.RANDOM], areas[erc.PERFECT]),
            }
        best = min(baselines, key=lambda m: areas[m])
        diff = boot[OURS] - boot[best]
        with np.errstate(divide="ignore", invalid="ignore"):  # a resample with random = PERFECT
            gap = (boot[erc.RANDOM] - boot[OURS]) / (boot[erc.RANDOM] - boot[erc.PERFECT])
        results[f_label(f)] = {
            "threshold": d_t,
            "false_non_matches": int((pairs.distance > d_t).sum()),
            "methods": res_m,
            "vae_vs_best_baseline": {
                "best_baseline": best,
                "area_difference": areas[OURS] - areas[best],
                "difference_ci95": list(erc.interval(diff)),
                "below_every_baseline": all(areas[OURS] < areas[b] for b in baselines),
                "ci_excludes_zero": bool(erc.interval(diff)[1] < 0),
                "gap_closed": res_m[OURS]["gap_closed"],
                "gap_closed_ci95": list(erc.interval(gap)),
            },
        }
        title = (
            f"ERC, {cfg.dataset.name} ({layout}), {cfg.matcher} matcher, initial FNMR f = {f:g}\n"
            f"{len(table)} faces, {len(pairs.subjects)} subjects, {len(pairs)} genuine pairs"
        )
        plot_erc(cfg.out / f"erc-f{f_label(f)}.png", curves, areas, f, title)

    write_curves_csv(cfg.out / "erc.csv", per_f)
    angles = face_itas(table, cfg.cache_dir, cfg.progress)[pairs.probe]
    by_tone = rejection_by_band(angles, pairs.distance, qualities, fs)
    summary = {
        "dataset": str(cfg.dataset),
        "layout": layout,
        "matcher": cfg.matcher,
        "weights": str(cfg.weights) if cfg.weights else "vae/weights/vae-celeba.pt",
        "samples_L": cfg.samples,
        "framing": framing,
        "reference": "medoid of each subject's embeddings under the matcher",
        "area": "mean FNMR over rejected fractions r in [0, 0.3] (grid step 0.005)",
        "bootstrap": {"reps": cfg.bootstrap, "resampled": "subjects", "seed": cfg.seed},
        "counts": {
            "images": table.n_images,
            "images_with_face": len(table),
            "images_without_face": len(table.no_face),
            "images_with_several_faces": table.multi_face,
            "subjects": int(len(pairs.subjects)),
            "pairs": int(len(pairs)),
        },
        "methods": methods,
        "fs": [f_label(f) for f in fs],
        "fs_skipped": [f_label(f) for f in skipped],
        "results": results,
        "by_skin_tone": {"proxy": PROXY, "bands": by_tone},
        "seconds": round(time.time() - t0, 1),
    }
    write_summary(cfg.out / "summary.json", summary)
    log(summary_table(summary))
    log(skin_tone_table(summary))
    return summary
