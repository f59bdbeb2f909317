"""Contrast normalisation of the VAE's crops: an ERC experiment (docs/erc.md #54,
experiments/erc/train_variant.py --contrast), not part of the shipped recipe."""

from __future__ import annotations

import cv2
import numpy as np

CONTRAST_FORMS = ("none", "standardise", "equalise")


def normalise_contrast(grays: np.ndarray, form: str = "none") -> np.ndarray:
    """(N, 64, 64) uint8 crops with their global brightness and contrast taken out, so a
    likelihood judges the face's structure rather than how bright or flat it is (a Gaussian
    likelihood favours low-contrast crops: their residuals are small whatever the face).
    - "standardise": each crop shifted and scaled to mean 0.5 and spread 0.2 (clipped);
    - "equalise": each crop's histogram equalised (cv2.equalizeHist).
    Only ERC experiments use it: both forms ranked LFW's probes worse,
    because the light is evidence the likelihood should see, so the shipped model has none."""
    a = np.asarray(grays)
    if form == "none":
        return a
    if form == "equalise":
        return np.stack([cv2.equalizeHist(np.ascontiguousarray(g)) for g in a])
    if form == "standardise":
        x = a.astype(np.float32) / 255.0
        mean = x.mean(axis=(1, 2), keepdims=True)
        spread = np.maximum(x.std(axis=(1, 2), keepdims=True), 0.02)
        return np.round(np.clip(0.5 + 0.2 * (x - mean) / spread, 0, 1) * 255).astype(np.uint8)
    raise ValueError(f"unknown contrast form {form!r}; one of {', '.join(CONTRAST_FORMS)}")
