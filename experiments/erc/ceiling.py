"""How much of the random -> PERFECT distance could a probe-only ranking close? (docs/erc.md #44)

PERFECT ranks each probe by its distance to its own reference, so it knows the reference.
A probe-only quality cannot. This estimates the ceiling of the probe's own share with an
identity-aware oracle that is not a quality method (it uses the labels and the matcher): each
probe ranked by its mean matcher distance to its subject's *other* images, the reference left
out (probes of subjects with only the pair get the median). What it closes is roughly what a
perfect judge of "how recognisable is this probe" could close under this protocol; the rest
of the distance is the reference's doing.

    .venv/bin/python experiments/erc/ceiling.py --summary /tmp/erc-full/summary.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from escrow.settings import get_settings
from vae.erc import curve as erc
from vae.erc.data import vae_crops
from vae.erc.run import cached_faces, weights_framing
from vae.score import QualityScorer


def own_identity_oracle(subjects: np.ndarray, emb: np.ndarray, pairs: erc.Pairs) -> np.ndarray:
    """-(mean distance from each probe to its subject's images other than itself and the
    reference); the median where there are none."""
    q = np.full(len(pairs.probe), np.nan)
    for i, (p, r) in enumerate(zip(pairs.probe, pairs.reference, strict=True)):
        others = [j for j in np.flatnonzero(subjects == subjects[p]) if j not in (p, r)]
        if others:
            q[i] = -np.linalg.norm(emb[others] - emb[p], axis=1).mean()
    return np.where(np.isnan(q), np.nanmedian(q), q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summary", type=Path, required=True, help="summary.json of escrow erc")
    ap.add_argument("--weights", type=Path, default=None)
    args = ap.parse_args()
    summ = json.loads(args.summary.read_text())
    st = get_settings()
    table, emb = cached_faces(summ, st.cache_dir)
    pairs = erc.genuine_pairs(table.subjects, emb)
    scorer = QualityScorer(args.weights)
    gray = vae_crops(table, weights_framing(scorer.record), st.cache_dir, progress=False)
    vae_q = scorer.score_gray(gray.astype(np.float32) / 255.0)[pairs.probe]
    oracle = own_identity_oracle(table.subjects, emb, pairs)
    n_single = int((np.bincount(pairs.subject) == 1).sum())
    print(f"{len(pairs.probe)} pairs; {n_single} subjects have only the pair (oracle = median)")
    rank = {m: np.argsort(np.argsort(q)) for m, q in (("VAE", vae_q), ("oracle", oracle))}
    for f in (0.01, 0.05):
        quals = {
            "VAE": vae_q,
            "own-identity oracle": oracle,
            "oracle + VAE (ranks)": sum(rank.values()),
        }
        _, curves = erc.all_curves(pairs.distance, quals, f)
        a = {m: erc.erc_area(c) for m, c in curves.items()}
        for m in quals:
            g = erc.gap_closed(a[m], a[erc.RANDOM], a[erc.PERFECT])
            print(f"f = {f}: {m:22s} area {a[m]:.4f}  gap closed {g:.2f}")


if __name__ == "__main__":
    main()
