"""ERC areas of VAE scoring variants on the cached faces of an `escrow erc` run.

Re-scores the faces and embeddings that `escrow erc` cached (so it only runs the VAE), for
weights files, L, a floor on the likelihood's sigma, a resolution cap (vae/framing.py) and
complexity corrections, and prints
one line per variant: ERC area at each f, the share of the random -> PERFECT gap closed, and
the 95% bootstrap interval of the difference to the best baseline of the given summary.json.

    .venv/bin/python benchmarks/erc_variants.py --summary docs/erc/summary.json \
        [--weights A.pt --weights B.pt] [--sigma-floor 0.02 ...] [--samples 1 --samples 10]
        [--max-side 0 --max-side 34 ...]   (0: no cap; default: as the weights say)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import torch

from escrow.settings import get_settings
from vae import erc
from vae.baselines import baseline_qualities
from vae.erc_data import detect_faces, load_dataset, vae_crops
from vae.erc_run import weights_framing
from vae.matchers import embeddings, make_matcher
from vae.model import gaussian_log_density
from vae.score import LN2, QualityScorer, png_bits


@torch.inference_mode()
def log_rp_variant(scorer: QualityScorer, grays: np.ndarray, sigma_floor: float) -> np.ndarray:
    """Eq. (2) with the decoder's sigma clamped from below at `sigma_floor` (0: unchanged)."""
    x_all = torch.from_numpy(grays.astype(np.float32)[:, None] / 255.0)
    out = []
    for i in range(0, len(x_all), 256):
        x = x_all[i : i + 256].contiguous(memory_format=torch.channels_last)
        mu_z, logvar_z = scorer.model.encoder(x)
        std_z = torch.exp(0.5 * logvar_z)
        lp = []
        for e in scorer.eps:
            mu_x, sigma_x = scorer.model.decoder(mu_z + std_z * e)
            lp.append(gaussian_log_density(x, mu_x, sigma_x.clamp(min=sigma_floor)))
        out.append(torch.logsumexp(torch.stack(lp, 1), 1) - math.log(len(scorer.eps)))
    return torch.cat(out).double().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summary", type=Path, required=True, help="summary.json of escrow erc")
    ap.add_argument("--weights", type=Path, action="append", default=[])
    ap.add_argument("--samples", type=int, action="append", default=[])
    ap.add_argument("--sigma-floor", type=float, action="append", default=[])
    ap.add_argument("--alpha", type=float, action="append", default=[], help="log_rp + a*ln2*bits")
    ap.add_argument("--framing", default=None, help="margin=M or aligned=P (default: weights')")
    ap.add_argument("--max-side", type=int, action="append", default=[], help="0: no cap")
    ap.add_argument("--bootstrap", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(get_settings().threads or 2)

    summ = json.loads(args.summary.read_text())
    st = get_settings()
    _, samples = load_dataset(Path(summ["dataset"]))
    table = detect_faces(samples, st.cache_dir)
    emb = embeddings(table, make_matcher(summ["matcher"]), st.cache_dir)
    pairs = erc.genuine_pairs(table.subjects, emb)
    base = baseline_qualities(table.boxes, table.probs, table.face112, with_brisque=False)

    fs = [float(f) for f in summ["fs"]]
    best = {f: summ["results"][f]["vae_vs_best_baseline"]["best_baseline"] for f in summ["fs"]}
    for w, L, side in itertools.product(
        args.weights or [None], args.samples or [10], args.max_side or [None]
    ):
        scorer = QualityScorer(w, samples=L)
        framing = args.framing or weights_framing(scorer.record)
        if side is not None:  # replace the weights' own cap
            framing = ",".join([framing.split(",")[0]] + ([f"max_side={side}"] if side else []))
        gray = vae_crops(table, framing, st.cache_dir)
        bits = png_bits(gray.astype(np.float32) / 255.0)
        for floor in args.sigma_floor or [0.0]:
            lrp = log_rp_variant(scorer, gray, floor)
            variants = {
                f"{scorer.complexity} (weights')": lrp
                + scorer.complexity_correction(gray.astype(np.float32) / 255.0),
                "floor": lrp - LN2 * np.maximum(0, scorer.bits_ref - bits),
            }
            for a in args.alpha:
                variants[f"+{a:g}*bits"] = lrp + a * LN2 * bits
            for name, q in variants.items():
                cells = []
                for f, fl in zip(summ["fs"], fs, strict=True):
                    b = best[f]
                    qb = base[b] if b in base else np.zeros(len(q))
                    quals = {"v": q[pairs.probe], "b": qb[pairs.probe]}
                    _, curves = erc.all_curves(pairs.distance, quals, fl)
                    a = {m: erc.erc_area(c) for m, c in curves.items()}
                    boot = erc.bootstrap_areas(pairs, quals, fl, reps=args.bootstrap)
                    if b == erc.RANDOM:
                        boot["b"], a["b"] = boot[erc.RANDOM], a[erc.RANDOM]
                    lo, hi = erc.interval(boot["v"] - boot["b"])
                    gap = erc.gap_closed(a["v"], a[erc.RANDOM], a[erc.PERFECT])
                    cells.append(
                        f"f={f}: area {a['v']:.4f} gap {gap:+.2f} "
                        f"d({b}) {a['v'] - a['b']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
                    )
                label = f"{w or 'shipped'} {framing} L={L} sigma>={floor:g} {name}"
                print(f"{label:70s} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
