"""Error-versus-reject curves (ERC), the protocol of Baert et al. 2021, section 5.

Plain arithmetic on a table of genuine pairs, no face code here:

    one reference image per subject; genuine pair = (reference, probe) for every other image
    d_i      euclidean distance between the embeddings of pair i (i = 1..N)
    d_t      threshold fixed at an initial FNMR f:  #{i : d_i > d_t} = floor(f N)
    q_i      a quality method's score of pair i's probe (higher = better)
    FNMR(r)  reject the floor(r N) probes of lowest q, then
             FNMR(r) = #{kept i : d_i > d_t} / #kept
    area     mean FNMR(r) over the grid r in [0, 0.3]  (lower = better quality method)

Two reference lines: PERFECT (q = -d: rejects the false non-matches first, so FNMR reaches 0
once r >= f) and random (q drawn at random, averaged over seeds: flat at f on average).
The bootstrap resamples *subjects* with replacement (their pairs come along, so the
dependence between pairs of one person is kept) and recomputes d_t on every resample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

R_GRID = np.round(np.arange(0.0, 0.5 + 1e-9, 0.005), 4)  # rejected fractions, 0 .. 0.5
AREA_MAX_R = 0.3
RANDOM_SEEDS = 50


@dataclass
class Pairs:
    """Genuine pairs: probe row, reference row, subject index and distance, aligned."""

    probe: np.ndarray  # (N,) int, row of the probe image
    reference: np.ndarray  # (N,) int, row of the subject's reference image
    subject: np.ndarray  # (N,) int, index into `subjects`
    distance: np.ndarray  # (N,) float64
    subjects: np.ndarray  # (S,) subject names (only subjects with at least one pair)

    def __len__(self) -> int:
        return len(self.distance)


def medoid_references(subjects: np.ndarray, emb: np.ndarray) -> dict[str, int]:
    """Each subject's reference: its medoid under the matcher (the image whose summed
    distance to the subject's other images is smallest; the first in file order on ties,
    e.g. for two images). Uses no quality method, so no method under test picks it."""
    refs: dict[str, int] = {}
    for s in dict.fromkeys(subjects.tolist()):  # first-appearance order
        rows = np.flatnonzero(subjects == s)
        e = emb[rows].astype(np.float64)
        dist = np.sqrt(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1))
        refs[s] = int(rows[int(np.argmin(dist.sum(1)))])
    return refs


def genuine_pairs(
    subjects: np.ndarray, emb: np.ndarray, references: dict[str, int] | None = None
) -> Pairs:
    """The reference of each subject (default: the medoid; or the row given per subject, to
    try another rule) with each of that subject's other images."""
    refs = medoid_references(subjects, emb) if references is None else references
    names = [s for s in refs if (subjects == s).sum() >= 2]
    index = {s: i for i, s in enumerate(names)}
    probe, ref, subj = [], [], []
    for row, s in enumerate(subjects.tolist()):
        if s in index and row != refs[s]:
            probe.append(row)
            ref.append(refs[s])
            subj.append(index[s])
    probe_a, ref_a = np.array(probe, dtype=np.int64), np.array(ref, dtype=np.int64)
    d = np.linalg.norm(emb[probe_a].astype(np.float64) - emb[ref_a].astype(np.float64), axis=1)
    return Pairs(probe_a, ref_a, np.array(subj, dtype=np.int64), d, np.array(names, dtype=str))


def threshold_at(d: np.ndarray, f: float) -> float:
    """d_t such that exactly floor(f N) distances lie above it (without ties): the
    ceil((1 - f) N)-th smallest distance."""
    s = np.sort(np.asarray(d, dtype=np.float64))
    k = int(np.ceil((1.0 - f) * len(s) - 1e-9))
    return float(s[max(k, 1) - 1])


def best_first(q: np.ndarray, tie_seed: int = 0) -> np.ndarray:
    """Row indices from the highest quality to the lowest; ties broken by a fixed random
    order, not by the (subject-sorted) row order. Rejecting the fraction r drops the last
    floor(r N) of them."""
    perm = np.random.default_rng(tie_seed).permutation(len(q))
    return perm[np.argsort(-np.asarray(q)[perm], kind="stable")]


def fnmr_curve(
    d: np.ndarray,
    q: np.ndarray,
    d_t: float,
    r_grid: np.ndarray = R_GRID,
    tie_seed: int = 0,
) -> np.ndarray:
    """FNMR after rejecting the fraction r of lowest-quality probes, for each r in r_grid.

    Ties in q are broken by a fixed random order, not by the (subject-sorted) row order.
    """
    n = len(d)
    order = best_first(q, tie_seed)
    fnm = np.cumsum(np.asarray(d)[order] > d_t)  # false non-matches among the best k
    kept = np.maximum(1, n - np.floor(np.asarray(r_grid) * n + 1e-9).astype(np.int64))
    return fnm[kept - 1] / kept


def random_curve(
    d: np.ndarray, d_t: float, r_grid: np.ndarray = R_GRID, seeds: int = RANDOM_SEEDS
) -> np.ndarray:
    """The random-rejection baseline, averaged over `seeds` random quality draws."""
    curves = [
        fnmr_curve(d, np.random.default_rng(1000 + s).random(len(d)), d_t, r_grid, tie_seed=s)
        for s in range(seeds)
    ]
    return np.mean(curves, axis=0)


def perfect_curve(d: np.ndarray, d_t: float, r_grid: np.ndarray = R_GRID) -> np.ndarray:
    """The oracle: quality = -distance, the worst pairs are rejected first."""
    return fnmr_curve(d, -np.asarray(d, dtype=np.float64), d_t, r_grid)


def erc_area(curve: np.ndarray, r_grid: np.ndarray = R_GRID, r_max: float = AREA_MAX_R) -> float:
    """Mean FNMR over the grid points r in [0, r_max]."""
    return float(np.mean(curve[np.asarray(r_grid) <= r_max + 1e-9]))


def at_r(curve: np.ndarray, r: float, r_grid: np.ndarray = R_GRID) -> float:
    return float(curve[int(np.argmin(np.abs(np.asarray(r_grid) - r)))])


RANDOM, PERFECT = "random", "PERFECT"


def all_curves(
    d: np.ndarray,
    qualities: Mapping[str, np.ndarray],
    f: float,
    r_grid: np.ndarray = R_GRID,
    seeds: int = RANDOM_SEEDS,
) -> tuple[float, dict[str, np.ndarray]]:
    """(d_t, {method: curve}) for every quality method plus random and PERFECT."""
    d_t = threshold_at(d, f)
    curves = {name: fnmr_curve(d, q, d_t, r_grid) for name, q in qualities.items()}
    curves[RANDOM] = random_curve(d, d_t, r_grid, seeds)
    curves[PERFECT] = perfect_curve(d, d_t, r_grid)
    return d_t, curves


def gap_closed(area: float, area_random: float, area_perfect: float) -> float:
    """How much of the way from random to PERFECT a method goes (1 = oracle, 0 = random)."""
    span = area_random - area_perfect
    return float((area_random - area) / span) if span > 0 else float("nan")


def bootstrap_areas(
    pairs: Pairs,
    qualities: Mapping[str, np.ndarray],
    f: float,
    reps: int = 1000,
    seed: int = 0,
    seeds: int = 10,
    progress: Callable[[Iterable[int]], Iterable[int]] = lambda it: it,
) -> dict[str, np.ndarray]:
    """(reps,) ERC areas per method (and random, PERFECT) over resamples of subjects.

    `qualities` holds per-pair quality arrays aligned with `pairs`. Each resample draws
    subjects with replacement, takes all their pairs, recomputes d_t at f and every curve.
    """
    rng = np.random.default_rng(seed)
    by_subject = [np.flatnonzero(pairs.subject == s) for s in range(len(pairs.subjects))]
    out: dict[str, list[float]] = {m: [] for m in (*qualities, RANDOM, PERFECT)}
    for _ in progress(range(reps)):
        pick = rng.integers(0, len(by_subject), len(by_subject))
        idx = np.concatenate([by_subject[s] for s in pick])
        d = pairs.distance[idx]
        _, curves = all_curves(d, {m: q[idx] for m, q in qualities.items()}, f, seeds=seeds)
        for m, c in curves.items():
            out[m].append(erc_area(c))
    return {m: np.array(v) for m, v in out.items()}


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples (undefined ones, NaN, left out)."""
    a = (1.0 - level) / 2.0
    if np.isnan(samples).all():
        return float("nan"), float("nan")
    lo, hi = np.nanquantile(samples, [a, 1.0 - a])
    return float(lo), float(hi)
