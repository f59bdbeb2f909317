"""Batched, seeded scoring: the log reconstruction probability of face crops (eq. 2)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vae.data import ChannelOrder, to_batch, to_gray64
from vae.model import VAE, VAEConfig, fused_for_inference

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "vae-celeba.pt"
WEIGHTS_FORMAT = "keyframe-escrow-vae/1"


class WeightsError(ValueError):
    pass


def load_vae(path: str | Path | None = None) -> tuple[VAE, dict]:
    """Load a weights file written by `escrow vae train` (default: the shipped weights)."""
    import json

    path = Path(path) if path else DEFAULT_WEIGHTS
    if not path.is_file():
        raise WeightsError(f"VAE weights not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"not a VAE weights file: {path} ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"not a keyframe-escrow VAE weights file: {path}")
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
        self.model = fused_for_inference(base)
        self.batch_size = batch_size
        g = torch.Generator().manual_seed(seed)
        self.eps = torch.randn(samples, base.cfg.latent_dim, generator=g)

    def score_gray(self, grays: Sequence[np.ndarray] | np.ndarray | torch.Tensor) -> np.ndarray:
        """Scores of preprocessed crops: (N, 64, 64) in [0, 1] or a (N, 1, 64, 64) tensor."""
        x = grays if isinstance(grays, torch.Tensor) else to_batch(grays)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float64)
        out = []
        for i in range(0, len(x), self.batch_size):
            xb = x[i : i + self.batch_size].contiguous(memory_format=torch.channels_last)
            out.append(self.model.log_reconstruction_probability(xb, self.eps))
        return torch.cat(out).double().numpy()

    def score(self, crops: Sequence[np.ndarray], order: ChannelOrder = "rgb") -> np.ndarray:
        """Scores of raw face crops (any size; RGB/BGR/gray) -> (N,) float64."""
        return self.score_gray([to_gray64(c, order) for c in crops])
