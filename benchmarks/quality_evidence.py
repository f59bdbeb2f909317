"""Measure, for the model card, how often a degraded held-out CelebA face scores below its
original: under the quality score and under the paper's raw log reconstruction probability.

    .venv/bin/python benchmarks/quality_evidence.py [--n 1000] [--weights FILE]
"""

from __future__ import annotations

import argparse
import json

import torch

from escrow.detect import FaceDetector
from escrow.settings import get_settings
from vae.erc.evidence import degradation_table, heldout_celeba_faces
from vae.score import QualityScorer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="held-out images to use")
    ap.add_argument("--weights", default=None)
    a = ap.parse_args()
    torch.set_num_threads(2)
    data = get_settings().data_dir
    scorer = QualityScorer(a.weights or get_settings().vae_weights)
    grays, names = heldout_celeba_faces(
        data / "celeba-10k",
        data / "celeba-10k-identity.txt",
        scorer.record,
        a.n,
        FaceDetector(),
    )
    table = degradation_table(scorer, grays)
    print(f"{len(grays)} held-out faces ({names[0]} .. {names[-1]}), people unseen in training")
    print(f"{'degradation':<14s} {'quality below':>14s} {'log RP below':>13s}")
    for k, v in table.items():
        print(f"{k:<14s} {v['quality_below']:>14.3f} {v['log_rp_below']:>13.3f}")
    print(json.dumps(table))


if __name__ == "__main__":
    main()
