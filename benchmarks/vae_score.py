"""Scoring throughput of the quality VAE on the CPU (batch 64, 2 threads), and peak memory.

Compares, in the same run, the shipped scorer (one batched decoder pass for all L samples,
batch-norm folded, channels-last) with the straightforward implementation of the same
equation (eval-mode model, the decoder called once per latent sample). Both compute eq. (2)
with the same weights and noise; the script checks their scores agree before timing.
"quality" is the full score `escrow quality` prints (log RP plus the PNG complexity correction).

    .venv/bin/python benchmarks/vae_score.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np
import torch

from vae.model import gaussian_log_density
from vae.score import QualityScorer


@torch.inference_mode()
def naive_scores(model, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Eq. (2) written plainly: encode, then decode each of the L samples in turn."""
    mu_z, logvar_z = model.encoder(x)
    per_sample = []
    for e in eps:
        mu_x, sigma_x = model.decoder(mu_z + torch.exp(0.5 * logvar_z) * e)
        per_sample.append(gaussian_log_density(x, mu_x, sigma_x))
    return torch.logsumexp(torch.stack(per_sample, 1), 1) - math.log(len(eps))


def rate(fn, batch: int, seconds: float) -> float:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += batch
    return n / (time.perf_counter() - t0)


def rates(fns: dict, batch: int, seconds: float, rounds: int = 3) -> dict[str, float]:
    """Median crops/s of each function over interleaved rounds (a shared 2-core machine
    drifts; interleaving keeps the comparison fair)."""
    got: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            got[k].append(rate(fn, batch, seconds / rounds))
    return {k: float(np.median(v)) for k, v in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=9.0, help="per method and L")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scorer = QualityScorer(batch_size=a.batch)
    from vae.score import load_vae

    plain, _ = load_vae()
    crops = np.random.default_rng(0).random((a.batch, 64, 64)).astype(np.float32)
    x = torch.from_numpy(crops)[:, None]
    fast = scorer.log_rp(crops)
    slow = naive_scores(plain, x, scorer.eps).numpy()
    assert np.allclose(fast, slow, rtol=1e-4, atol=0.05), "implementations disagree"
    print(
        f"threads={a.threads} batch={a.batch} (max |score difference| "
        f"{np.abs(fast - slow).max():.4f} nats)"
    )
    print(
        f"{'L':>3} {'quality crops/s':>16} {'log RP crops/s':>15} {'naive crops/s':>14} "
        f"{'speed-up':>9}"
    )
    for L in (10, 1):
        s = QualityScorer(samples=L, batch_size=a.batch)
        got = rates(
            {
                "q": lambda s=s: s.score_gray(crops),
                "r": lambda s=s: s.log_rp(crops),
                "n": lambda s=s: naive_scores(plain, x, s.eps),
            },
            a.batch,
            a.seconds,
        )
        q, r, n = got["q"], got["r"], got["n"]
        print(f"{L:>3} {q:>16.0f} {r:>15.0f} {n:>14.0f} {q / n:>8.1f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"peak RSS {peak / 1024:.0f} MiB (model + torch: {(peak - rss0) / 1024:.0f} MiB above "
        "the interpreter)"
    )


if __name__ == "__main__":
    main()
