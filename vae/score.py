"""Batched, seeded scoring of face crops.

Two numbers per crop:
- `log_rp`: the paper's log reconstruction probability, eq. (2), exactly.
- `quality`: log_rp with a correction for input complexity. Likelihood models give *simple*
  images high density (Nalisnick et al., ICLR 2019): measured on held-out CelebA faces,
  log_rp alone ranks a sigma=3 blurred face above its sharp original for 93% of faces and a
  4x down-and-up-sampled one for 100% (vae/MODEL_CARD.md). Following Serra et al. (ICLR
  2020, "Input complexity and out-of-distribution detection"), a crop's complexity is its
  lossless PNG code length bits_png(x), and bits_ref is that of the median training face.
  Three forms, chosen at training time and stored with the weights:
      "floor":   quality(x) = log_rp(x) - ln 2 * max(0, bits_ref - bits_png(x))
      "full":    quality(x) = log_rp(x) + ln 2 * (bits_png(x) - bits_ref)
      "bounded": quality(x) = log_rp(x) + ln 2 * (min(bits_png(x), bits_max) - bits_ref)
  The floor only lowers crops simpler than a typical face (noise is left to the likelihood);
  the full form is Serra's likelihood ratio against a generic compressor. "bounded" is the
  full form with the code length counted only up to bits_max, the 99th percentile of the
  training faces': bits beyond what any face costs are noise or texture, not facial detail,
  and must not earn credit, so the likelihood alone judges them. On LFW it predicts
  recognition errors better than the floor, and noisy faces still score below their
  originals (vae/MODEL_CARD.md).
  bits_png may be measured on x**gamma (`complexity_gamma` in the record, 1 when absent): a
  dark crop uses fewer gray levels and so compresses better whatever its detail, which made
  the correction reject dark-looking faces beyond what recognition justifies.
  `light_neutral_gamma` picks gamma on the training crops, where the code length
  stops following the crop's brightness.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from vae.data import ChannelOrder, to_batch, to_gray64
from vae.framing import CAPTURE_MARGIN, Framing
from vae.model import VAE, VAEConfig, fused_for_inference, log_mean_exp

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "vae-celeba.pt"
WEIGHTS_FORMAT = "keyframe-escrow-vae/1"


LN2 = float(np.log(2.0))
# nats: the one-sample estimate of a face's score fell at most 461 below the full score on
# the street clip's 529 faces (benchmarks/capture.py measures it again)
GATE_SLACK = 500.0
# The score below which a track's best crop is taken for a non-face and never sealed: every
# labelled person's best crop on the street clip scores >= 4035 (tests/data/arcade-1080p.gt),
# and most non-face crops far below (median 56 over tests/test_quality_evidence's 60; the
# floor is low on purpose: a real face in poor light must not lose its record)
NON_FACE_BELOW = 3000.0
COMPLEXITY_FORMS = ("floor", "full", "bounded")


def png_bits(grays: np.ndarray) -> np.ndarray:
    """Lossless PNG code length (bits) of each 64x64 crop, quantised to 8 bits as stored."""
    u8 = np.round(np.clip(np.asarray(grays), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.array(
        [len(cv2.imencode(".png", g, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1]) * 8 for g in u8],
        dtype=np.float64,
    )


def complexity_bits(grays: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """The code length the correction counts: PNG bits of x, or of x**gamma."""
    if gamma == 1.0:
        return png_bits(grays)
    return png_bits(np.clip(np.asarray(grays, dtype=np.float32), 0.0, 1.0) ** gamma)


def complexity_stats(grays: np.ndarray, gamma: float = 1.0) -> dict[str, float]:
    """The training crops' code lengths, as the weights' record keeps them: the median
    (what a typical face costs) and the 99th percentile (the most a face costs), measured
    at `gamma`."""
    bits = complexity_bits(grays, gamma)
    return {
        "complexity_ref_bits": float(np.median(bits)),
        "complexity_max_bits": float(np.percentile(bits, 99)),
        "complexity_gamma": float(gamma),
    }


def parse_gamma(value: float | str) -> float | str:
    """A gamma for the code length: a number in [0.2, 5], or "auto" (`light_neutral_gamma`)."""
    if value == "auto":
        return "auto"
    try:
        gamma = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"gamma must be a number or 'auto', not {value!r}") from None
    if not 0.2 <= gamma <= 5.0:
        raise ValueError(f"gamma must lie in [0.2, 5], not {gamma:g}")
    return gamma


GAMMA_GRID = tuple(round(1.0 - 0.05 * i, 2) for i in range(11))  # 1.0, 0.95, ..., 0.5


def light_neutral_gamma(grays: np.ndarray, grid: Sequence[float] = GAMMA_GRID) -> float:
    """The gamma of `grid` at which the code length of the crops (the model's training faces)
    is least rank-correlated with their mean brightness. Why: the correction is meant to
    credit facial detail, and among faces of one kind, detail does not depend on the light;
    a code length that rises with brightness is counting gray levels, not detail. Chosen on
    the training faces, never on faces under evaluation."""
    from scipy.stats import spearmanr

    x = np.clip(np.asarray(grays, dtype=np.float32), 0.0, 1.0)
    light = x.mean(axis=(1, 2))
    corr = {g: abs(spearmanr(complexity_bits(x, g), light)[0]) for g in grid}
    return min(grid, key=lambda g: (corr[g], -g))  # ties: the gamma nearest 1


class WeightsError(ValueError):
    pass


def read_weights(path: str | Path) -> dict:
    """The raw dict of a weights file written by `escrow vae train`, checked for its format."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"VAE weights not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"not a VAE weights file: {path} ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"not a keyframe-escrow VAE weights file: {path}")
    return payload


def load_vae(path: str | Path | None = None) -> tuple[VAE, dict]:
    """Load a weights file written by `escrow vae train` (default: the shipped weights)."""
    import json

    payload = read_weights(path or DEFAULT_WEIGHTS)
    model = VAE(VAEConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, json.loads(payload.get("record") or "{}")


class QualityScorer:
    """Scores face crops; higher = more like the high-quality faces the VAE was trained on.

    The L latent noise vectors are drawn once from a fixed seed and shared by every crop, so a
    crop's score is a pure function of its pixels: reproducible across runs and batch layouts.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        samples: int = 10,
        seed: int = 0,
        batch_size: int = 64,
    ):
        if samples < 1:
            raise ValueError("samples (L) must be at least 1")
        base, self.record = load_vae(weights)
        self.bits_ref = self.record.get("complexity_ref_bits")
        if self.bits_ref is None:
            raise WeightsError(
                "weights lack the complexity reference (complexity_ref_bits); retrain them "
                "with `escrow vae train`"
            )
        cfg = self.record.get("train_config", {})
        self.complexity = cfg.get("complexity", "floor")
        if self.complexity not in COMPLEXITY_FORMS:
            raise WeightsError(f"unknown complexity correction {self.complexity!r}")
        self.bits_max = self.record.get("complexity_max_bits")
        self.bits_gamma = float(self.record.get("complexity_gamma", 1.0))
        if self.complexity == "bounded" and self.bits_max is None:
            raise WeightsError(
                "weights lack the complexity bound (complexity_max_bits) their 'bounded' "
                "score needs; retrain them with `escrow vae train`"
            )
        self.framing = Framing.from_record(self.record)
        shipped = Path(weights or DEFAULT_WEIGHTS).resolve() == Path(DEFAULT_WEIGHTS).resolve()
        self.non_face_below = NON_FACE_BELOW if shipped else None  # measured on these only
        self.model = fused_for_inference(base)
        self.batch_size = batch_size
        g = torch.Generator().manual_seed(seed)
        self.eps = torch.randn(samples, base.cfg.latent_dim, generator=g)

    def log_rp(self, grays: Sequence[np.ndarray] | np.ndarray | torch.Tensor) -> np.ndarray:
        """Eq. (2) of preprocessed crops: (N, 64, 64) in [0, 1] or a (N, 1, 64, 64) tensor."""
        x = grays if isinstance(grays, torch.Tensor) else to_batch(grays)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float64)
        out = []
        for i in range(0, len(x), self.batch_size):
            xb = x[i : i + self.batch_size].contiguous(memory_format=torch.channels_last)
            out.append(self.model.log_reconstruction_probability(xb, self.eps))
        return torch.cat(out).double().numpy()

    def complexity_correction(self, grays: Sequence[np.ndarray] | np.ndarray | torch.Tensor):
        """Nats added to log_rp for each crop's complexity (the floor form: <= 0)."""
        g = grays[:, 0].numpy() if isinstance(grays, torch.Tensor) else np.asarray(grays)
        bits = complexity_bits(g, self.bits_gamma)
        if self.complexity == "bounded":
            bits = np.minimum(bits, self.bits_max)
        excess = bits - self.bits_ref
        return LN2 * (np.minimum(0.0, excess) if self.complexity == "floor" else excess)

    def score_gray(self, grays: Sequence[np.ndarray] | np.ndarray | torch.Tensor) -> np.ndarray:
        """Quality of preprocessed crops (log_rp + the complexity correction); higher = better."""
        if len(grays) == 0:
            return np.zeros(0, dtype=np.float64)
        return self.log_rp(grays) + self.complexity_correction(grays)

    def prepare(
        self, crop: np.ndarray, order: ChannelOrder = "rgb", crop_margin: float = CAPTURE_MARGIN
    ) -> np.ndarray:
        """A square face crop cut at `crop_margin` -> the 64x64 gray input in this model's
        framing (its inner square, resolution-capped)."""
        return to_gray64(self.framing.from_crop(crop, crop_margin), order)

    def score_above(
        self,
        crops: Sequence[np.ndarray],
        floors: Sequence[float] | np.ndarray,
        order: ChannelOrder = "rgb",
        crop_margin: float = CAPTURE_MARGIN,
        slack: float = GATE_SLACK,
    ) -> np.ndarray:
        """`score`, computed only for the crops that can reach their `floor` (the best score
        so far of the crop's track); NaN for the others.

        Eq. (2) averages over L latent samples. The first sample's term alone is an estimate
        of the score that costs one decoder pass instead of L (plus the shared encoder); a
        crop whose estimate is more than `slack` below its floor is not worth the other L-1.
        The crops that pass get exactly `score`'s value: their first term is reused. `slack`
        is measured (benchmarks/capture.py prints it): the largest gap between the one-sample
        estimate and the full score over the street clip's 529 faces was 461 nats.
        """
        out = np.full(len(crops), np.nan)
        if len(crops) == 0:
            return out
        grays = np.stack([self.prepare(c, order, crop_margin) for c in crops])
        x = to_batch(grays).contiguous(memory_format=torch.channels_last)
        correction = self.complexity_correction(grays)
        mu_z, std_z = self.model.encode(x)
        first = self.model.sample_log_likelihoods(x, mu_z, std_z, self.eps[:1])
        estimate = first[:, 0].double().numpy() + correction
        keep = np.flatnonzero(estimate >= np.asarray(floors, dtype=np.float64) - slack)
        if len(keep) == 0:
            return out
        k = torch.as_tensor(keep)
        rest = self.model.sample_log_likelihoods(x[k], mu_z[k], std_z[k], self.eps[1:])
        log_rp = log_mean_exp(torch.cat([first[k], rest], 1)).double().numpy()
        out[keep] = log_rp + correction[keep]
        return out

    def score(
        self,
        crops: Sequence[np.ndarray],
        order: ChannelOrder = "rgb",
        crop_margin: float = CAPTURE_MARGIN,
    ) -> np.ndarray:
        """Quality of raw square face crops cut at `crop_margin` around the MTCNN box (any
        size; RGB/BGR/gray) -> (N,) float64."""
        return self.score_gray([self.prepare(c, order, crop_margin) for c in crops])
