"""ERC areas of VAE scoring variants on the cached faces of an `escrow erc` run.

Re-scores the faces and embeddings that `escrow erc` cached (so it only runs the VAE), for
weights files, L, a floor on the likelihood's sigma, a resolution cap (vae/framing.py) and
complexity corrections, and prints
one line per variant: ERC area at each f, the share of the random -> PERFECT gap closed, and
the 95% bootstrap interval of the difference to the best baseline of the given summary.json.

    .venv/bin/python experiments/erc/variants.py --summary docs/erc/summary.json \
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
from vae.erc import curve as erc
from vae.erc.baselines import baseline_qualities
from vae.erc.contrast import normalise_contrast
from vae.erc.data import vae_crops
from vae.erc.run import cached_faces, weights_framing
from vae.model import gaussian_log_density
from vae.score import LN2, QualityScorer, complexity_bits

FORMS = (
    "typical",
    "mse",
    "kl",
    "iwae",
    "elbo",
    "confidence",
    "png",
    "light",
    "regret",
    "coarse",
    "spread",
    "mu_spread",
    "codecs",
)
POOLS = (2, 4, 8)  # block sizes of the "coarse" form


def _codecs() -> dict:
    """Lossless coders for the "codecs" form (imagecodecs, from the package registry): the
    code length Serra et al. subtract is only as good as the coder; they found the strongest
    generic coder (FLIF) best, and JPEG-XL lossless is FLIF's successor. PNG, the shipped
    coder, is the weights' own line."""
    try:
        import imagecodecs as ic
    except ImportError:
        raise SystemExit(
            "--form codecs needs imagecodecs: .venv/bin/pip install imagecodecs"
        ) from None

    return {
        "jpegls": ic.jpegls_encode,
        "jpeg2k": lambda u: ic.jpeg2k_encode(u, level=0, reversible=True),
        "webp": lambda u: ic.webp_encode(np.repeat(u[..., None], 3, 2), lossless=True, level=100),
        "jpegxl": lambda u: ic.jpegxl_encode(u, lossless=True, effort=9),
    }


def codec_bits(grays: np.ndarray, gamma: float, coder) -> np.ndarray:
    """Code length (bits) of each crop (float in [0, 1]) at `gamma`, quantised to 8 bits."""
    u8 = np.round(np.clip(grays, 0.0, 1.0) ** gamma * 255.0).astype(np.uint8)
    return np.array([len(coder(np.ascontiguousarray(g))) * 8 for g in u8], dtype=np.float64)


def training_crops(scorer: QualityScorer) -> np.ndarray:
    """The weights' own training crops (float in [0, 1]), as `restate_complexity` finds them."""
    from vae.train import TrainConfig, crop_faces, training_split

    cfg = TrainConfig.from_record(scorer.record)
    crops, _ = crop_faces(training_split(cfg)[0], cfg, get_settings().cache_dir)
    return crops.astype(np.float32) / 255.0


@torch.inference_mode()
def log_rp_variant(
    scorer: QualityScorer, grays: np.ndarray, sigma_floor: float
) -> dict[str, np.ndarray]:
    """Eq. (2) with the decoder's sigma clamped from below at `sigma_floor` (0: unchanged),
    and, from the same L decoder passes, other per-crop numbers of the VAE:
    - "log_rp": eq. (2);
    - "typical": eq. (2) without the -sum(log sigma) term, i.e. log RP minus the expected
      log-density the decoder itself predicts for its own samples (up to a constant):
      log (1/L) sum_l exp(-1/2 sum_pixels ((x - mu^l) / sigma^l)^2). The decoder's own
      sigma map is its idea of how complex the face is, so this is the model's own
      input-complexity correction (a typicality test in the sense of Nalisnick et al. 2019);
    - "mse": -mean_l sum_pixels (x - mu^l)^2, the plain autoencoder reconstruction error;
    - "confidence": -mean_l sum_pixels log sigma^l, how sure the decoder is of its own
      reconstruction (eq. (2) is "typical" plus this, up to a constant);
    - "kl": -KL(q(z|x) || N(0, I)), how atypical the code is under the prior;
    - "iwae": the importance-weighted estimate of log p(x) from the same L samples;
    - "coarse{k}" (k = 2, 4, 8): eq. (2) of the k x k block means of x. Under the decoder's
      Gaussian, a block mean is itself Gaussian, N(mean mu, sum sigma^2 / k^4), so this is
      the exact reconstruction probability of a coarser view of the same crop: it asks
      whether the face's structure is explained and ignores pixel-level residuals;
    - "spread": minus the spread of log N(x | mu^l, sigma^l) over the L codes, and
      "mu_spread": minus the summed pixel variance of mu^l over them: how much the
      reconstruction depends on which code of the posterior is drawn (an ambiguous face
      has a posterior whose codes decode to different faces)."""
    x_all = torch.from_numpy(grays.astype(np.float32)[:, None] / 255.0)
    keys = (
        ("log_rp", "typical", "mse", "kl", "iwae", "confidence")
        + tuple(f"coarse{k}" for k in POOLS)
        + ("spread", "mu_spread")
    )
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    log_l = math.log(len(scorer.eps))
    for i in range(0, len(x_all), 256):
        x = x_all[i : i + 256].contiguous(memory_format=torch.channels_last)
        mu_z, logvar_z = scorer.model.encoder(x)
        std_z = torch.exp(0.5 * logvar_z)
        lp, maha, sq, iw, conf, mus = [], [], [], [], [], []
        coarse: dict[int, list[torch.Tensor]] = {k: [] for k in POOLS}
        for e in scorer.eps:
            z = mu_z + std_z * e
            mu_x, sigma_x = scorer.model.decoder(z)
            s = sigma_x.clamp(min=sigma_floor)
            mus.append(mu_x)
            lp.append(gaussian_log_density(x, mu_x, s))
            maha.append((-0.5 * ((x - mu_x) / s) ** 2).flatten(1).sum(1))
            sq.append(-((x - mu_x) ** 2).flatten(1).sum(1))
            conf.append(-torch.log(s).flatten(1).sum(1))
            for k in POOLS:
                s_k = torch.sqrt(torch.nn.functional.avg_pool2d(s**2, k)) / k
                xk, mk = (torch.nn.functional.avg_pool2d(t, k) for t in (x, mu_x))
                coarse[k].append(gaussian_log_density(xk, mk, s_k))
            # log p(z) - log q(z|x) for z = mu + std * e (the 2 pi terms cancel)
            iw.append(lp[-1] - 0.5 * z.pow(2).sum(1) + 0.5 * (e.pow(2) + logvar_z).sum(1))
        out["log_rp"].append(torch.logsumexp(torch.stack(lp, 1), 1) - log_l)
        out["typical"].append(torch.logsumexp(torch.stack(maha, 1), 1) - log_l)
        out["mse"].append(torch.stack(sq, 1).mean(1))
        out["confidence"].append(torch.stack(conf, 1).mean(1))
        out["spread"].append(-torch.stack(lp, 1).std(1))
        out["mu_spread"].append(-torch.stack(mus, 1).var(1).flatten(1).sum(1))
        for k in POOLS:
            out[f"coarse{k}"].append(torch.logsumexp(torch.stack(coarse[k], 1), 1) - log_l)
        kl = 0.5 * (mu_z.pow(2) + logvar_z.exp() - 1.0 - logvar_z).sum(1)
        out["kl"].append(-kl)
        out["iwae"].append(torch.logsumexp(torch.stack(iw, 1), 1) - log_l)
    res = {k: torch.cat(v).double().numpy() for k, v in out.items()}
    res["elbo"] = res["log_rp"] + res["kl"]  # eq. (2) less the code's KL: an ELBO-like score
    return res


def likelihood_regret(
    scorer: QualityScorer, grays: np.ndarray, steps: int, lr: float, seed: int = 0
) -> dict[str, np.ndarray]:
    """Likelihood regret (Xiao, Yan & Amit, NeurIPS 2020): how much better the decoder could
    explain a crop if its posterior were fitted to that crop alone instead of read off the
    amortised encoder. Per crop, q(z|x) = N(mu, diag exp(logvar)) starts at the encoder's
    output and is moved by Adam (`steps` steps, one fresh z per step, as in training) to
    maximise the ELBO, log p(x|z) - KL(q || N(0, I)), with the decoder fixed. Returned, each
    measured with the scorer's L fixed samples: the ELBO before and after, and eq. (2) with
    the fitted posterior ("log_rp_fit"). A crop the encoder explains as well as anything could
    has regret ~0; a face unlike the training faces leaves the encoder further from the best
    code. The regret is a complexity correction learned from the model itself: a simple crop
    gains little, because the encoder already explains it."""
    model = scorer.model
    for p in model.parameters():
        p.requires_grad_(False)
    x_all = torch.from_numpy(grays.astype(np.float32)[:, None] / 255.0)
    g = torch.Generator().manual_seed(seed)
    log_l = math.log(len(scorer.eps))

    def kl(mu: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
        return 0.5 * (mu.pow(2) + lv.exp() - 1.0 - lv).sum(1)

    @torch.no_grad()
    def measured(x: torch.Tensor, mu: torch.Tensor, lv: torch.Tensor):
        std = torch.exp(0.5 * lv)
        lp = torch.stack(
            [gaussian_log_density(x, *model.decoder(mu + std * e)) for e in scorer.eps], 1
        )
        return lp.mean(1) - kl(mu, lv), torch.logsumexp(lp, 1) - log_l

    out: dict[str, list[torch.Tensor]] = {"elbo_enc": [], "elbo_fit": [], "log_rp_fit": []}
    for i in range(0, len(x_all), 256):
        x = x_all[i : i + 256].contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            mu0, lv0 = model.encoder(x)
        mu, lv = mu0.clone().requires_grad_(True), lv0.clone().requires_grad_(True)
        opt = torch.optim.Adam([mu, lv], lr=lr)
        for _ in range(steps):
            e = torch.randn(mu.shape, generator=g)
            mu_x, sigma_x = model.decoder(mu + torch.exp(0.5 * lv) * e)
            loss = -(gaussian_log_density(x, mu_x, sigma_x) - kl(mu, lv)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        e0, _ = measured(x, mu0, lv0)
        e1, lrp1 = measured(x, mu.detach(), lv.detach())
        out["elbo_enc"].append(e0)
        out["elbo_fit"].append(e1)
        out["log_rp_fit"].append(lrp1)
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summary", type=Path, required=True, help="summary.json of escrow erc")
    ap.add_argument("--weights", type=Path, action="append", default=[])
    ap.add_argument("--samples", type=int, action="append", default=[])
    ap.add_argument("--sigma-floor", type=float, action="append", default=[])
    ap.add_argument("--alpha", type=float, action="append", default=[], help="log_rp + a*ln2*bits")
    ap.add_argument("--framing", default=None, help="margin=M or aligned=P (default: weights')")
    ap.add_argument(
        "--form",
        action="append",
        default=[],
        choices=FORMS,
        help="also score by this number of the VAE (log_rp_variant), alone and with the floor; "
        "png and light: the crop's code length or its light alone, no VAE; regret: the "
        "likelihood regret of a posterior fitted per crop (likelihood_regret)",
    )
    ap.add_argument("--regret-steps", type=int, default=100, help="Adam steps per crop")
    ap.add_argument("--regret-lr", type=float, default=0.05)
    ap.add_argument("--max-side", type=int, action="append", default=[], help="0: no cap")
    ap.add_argument("--bootstrap", type=int, default=300, help="0: areas only, no intervals")
    ap.add_argument("--ensemble", action="store_true", help="also the mean z-score of all runs")
    ap.add_argument("--pairwise", action="store_true", help="quality of a pair = min of both")
    ap.add_argument(
        "--background",
        type=Path,
        default=None,
        help="weights of a background VAE (experiments/erc/background.py): also score by the "
        "likelihood ratio log RP - b * log RP_background",
    )
    ap.add_argument("--beta", type=float, action="append", default=[], help="b (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(get_settings().threads or 2)

    summ = json.loads(args.summary.read_text())
    st = get_settings()
    table, emb = cached_faces(summ, st.cache_dir, progress=True)
    pairs = erc.genuine_pairs(table.subjects, emb)
    base = baseline_qualities(table.boxes, table.probs, table.face112, with_brisque=False)

    fs = [float(f) for f in summ["fs"]]
    best = {f: summ["results"][f]["vae_vs_best_baseline"]["best_baseline"] for f in summ["fs"]}

    def pair_quality(q: np.ndarray) -> np.ndarray:
        """The probe's quality, or with --pairwise the lower of probe's and reference's (the
        comparison's quality in ISO/IEC 29794-1's ERC; information only, not issue 8's rule)."""
        qp = q[pairs.probe]
        return np.minimum(qp, q[pairs.reference]) if args.pairwise else qp

    def report(label: str, q: np.ndarray) -> None:
        cells = []
        for f, fl in zip(summ["fs"], fs, strict=True):
            b = best[f]
            qb = base[b] if b in base else np.zeros(len(q))
            quals = {"v": pair_quality(q), "b": pair_quality(qb)}
            _, curves = erc.all_curves(pairs.distance, quals, fl)
            a = {m: erc.erc_area(c) for m, c in curves.items()}
            gap = erc.gap_closed(a["v"], a[erc.RANDOM], a[erc.PERFECT])
            cell = f"f={f}: area {a['v']:.4f} gap {gap:+.2f} d({b}) {a['v'] - a['b']:+.4f}"
            if args.bootstrap:
                boot = erc.bootstrap_areas(pairs, quals, fl, reps=args.bootstrap)
                if b == erc.RANDOM:
                    boot["b"] = boot[erc.RANDOM]
                lo, hi = erc.interval(boot["v"] - boot["b"])
                cell += f" [{lo:+.4f}, {hi:+.4f}]"
            cells.append(cell)
        print(f"{label:70s} | " + " | ".join(cells), flush=True)

    if args.pairwise:
        for name, q in base.items():
            report(f"baseline {name}", q)
    members = []  # the weights' own score of each model, for --ensemble
    bg = QualityScorer(args.background) if args.background else None
    for w, L, side in itertools.product(
        args.weights or [None], args.samples or [10], args.max_side or [None]
    ):
        scorer = QualityScorer(w, samples=L)
        framing = args.framing or weights_framing(scorer.record)
        if side is not None:  # replace the weights' own cap
            framing = ",".join([framing.split(",")[0]] + ([f"max_side={side}"] if side else []))
        gray = normalise_contrast(
            vae_crops(table, framing, st.cache_dir), scorer.record.get("contrast", "none")
        )
        bits = complexity_bits(gray.astype(np.float32) / 255.0, scorer.bits_gamma)
        for floor in args.sigma_floor or [0.0]:
            nums = log_rp_variant(scorer, gray, floor)
            lrp = nums["log_rp"]
            pen = -LN2 * np.maximum(0, scorer.bits_ref - bits)
            own = lrp + scorer.complexity_correction(gray.astype(np.float32) / 255.0)
            members.append(own)
            variants = {f"{scorer.complexity} (weights')": own, "floor": lrp + pen}
            for form in args.form:
                if form == "png":  # the complexity terms alone, no VAE at all
                    variants["png floor alone"], variants["png bits alone"] = pen, bits
                    continue
                if form == "regret":
                    r = likelihood_regret(scorer, gray, args.regret_steps, args.regret_lr)
                    corr = own - lrp  # the weights' own complexity correction
                    regret = r["elbo_fit"] - r["elbo_enc"]
                    print(
                        f"regret: median {np.median(regret):.1f} nats, 5-95% "
                        f"{np.percentile(regret, 5):.1f}..{np.percentile(regret, 95):.1f}",
                        flush=True,
                    )
                    variants["regret alone (less = better)"] = -regret
                    variants["log RP - regret"] = lrp - regret
                    variants["weights' score - regret"] = own - regret
                    variants["log RP fitted"] = r["log_rp_fit"]
                    variants["log RP fitted + correction"] = r["log_rp_fit"] + corr
                    continue
                if form == "coarse":  # eq. (2) of block means, with their own code length
                    x = gray.astype(np.float32) / 255.0
                    corr = own - lrp
                    for k in POOLS:
                        c = nums[f"coarse{k}"]
                        pooled = x.reshape(len(x), 64 // k, k, 64 // k, k).mean(axis=(2, 4))
                        bits_k = complexity_bits(pooled, scorer.bits_gamma)
                        ref_k = np.median(bits_k)  # of the faces scored: a constant shift
                        variants[f"coarse{k} alone"] = c
                        variants[f"coarse{k} + png of the block means"] = c + LN2 * (bits_k - ref_k)
                        variants[f"coarse{k} + weights' correction"] = c + corr
                        variants[f"weights' score + coarse{k}"] = own + c
                        # the detail given the structure: log p(x) - log p(block means)
                        variants[f"weights' score - coarse{k}"] = own - c
                    continue
                if form == "codecs":  # Serra's bounded correction with other coders
                    x = gray.astype(np.float32) / 255.0
                    xt = training_crops(scorer)
                    for name, coder in _codecs().items():
                        b_lfw = codec_bits(x, scorer.bits_gamma, coder)
                        b_tr = codec_bits(xt, scorer.bits_gamma, coder)
                        bmax = np.percentile(b_tr, 99)
                        print(
                            f"{name}: training median {np.median(b_tr):.0f} bits, p99 "
                            f"{bmax:.0f}; LFW median {np.median(b_lfw):.0f}",
                            flush=True,
                        )
                        variants[f"{name} bounded"] = lrp + LN2 * np.minimum(b_lfw, bmax)
                        variants[f"{name} full"] = lrp + LN2 * b_lfw
                        variants[f"{name} bits alone"] = b_lfw
                    continue
                if form == "light":  # the crop's brightness and flatness alone, no VAE at all
                    x = gray.astype(np.float32) / 255.0
                    variants["brightness alone"] = x.mean(axis=(1, 2))
                    variants["low contrast alone"] = -x.std(axis=(1, 2))
                    continue
                variants[form] = nums[form]
                variants[f"{form} + floor"] = nums[form] + pen
            if bg is not None:
                lrp_bg = bg.log_rp(gray.astype(np.float32) / 255.0)
                png = own - lrp  # the weights' own code-length correction (Serra)
                variants["background log RP alone"] = lrp_bg
                for b in args.beta or [1.0]:
                    variants[f"log RP - {b:g} background"] = lrp - b * lrp_bg
                    if b < 1:  # the rest of the correction from the code length
                        variants[f"log RP - {b:g} bg + {1 - b:g} png"] = (
                            lrp - b * lrp_bg + (1 - b) * png
                        )
            for a in args.alpha:
                variants[f"+{a:g}*bits"] = lrp + a * LN2 * bits
            for name, q in variants.items():
                report(f"{w or 'shipped'} {framing} L={L} sigma>={floor:g} {name}", q)
    if args.ensemble and len(members) > 1:
        # Each model's score standardised over the faces, then averaged: no model dominates
        # by its scale (a deep-ensemble likelihood, Lakshminarayanan et al. 2017).
        z = [(m - m.mean()) / m.std() for m in members]
        report(f"ensemble of {len(members)} (mean z-score)", np.mean(z, axis=0))


if __name__ == "__main__":
    main()
