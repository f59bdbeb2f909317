"""The one preprocessing shared by training, scoring and evaluation.

Any face crop (RGB, BGR or gray; any size; uint8 or float) -> grayscale 64x64 float32 in
[0, 1]. Keeping this in one place is what makes a score comparable with the training data:
a model trained on INTER_AREA-shrunk BT.601 luminance must be scored on exactly that.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from vae.model import IMAGE_SIZE

ChannelOrder = Literal["rgb", "bgr"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


def to_gray64(crop: np.ndarray, order: ChannelOrder = "rgb") -> np.ndarray:
    """Crop -> (64, 64) float32 in [0, 1]. `order` names the channel order of 3/4-channel input."""
    a = np.asarray(crop)
    if a.ndim not in (2, 3) or a.shape[0] < 2 or a.shape[1] < 2:
        raise ValueError(f"expected an image array (H, W[, C]) of at least 2x2, got {a.shape}")
    if a.dtype != np.uint8:
        a = np.asarray(a, dtype=np.float32)
        if a.max(initial=0.0) <= 1.0:  # float images in [0, 1]
            a = a * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3:
        if a.shape[2] == 1:
            a = a[:, :, 0]
        elif a.shape[2] in (3, 4):
            code = {
                ("rgb", 3): cv2.COLOR_RGB2GRAY,
                ("bgr", 3): cv2.COLOR_BGR2GRAY,
                ("rgb", 4): cv2.COLOR_RGBA2GRAY,
                ("bgr", 4): cv2.COLOR_BGRA2GRAY,
            }[(order, a.shape[2])]
            a = cv2.cvtColor(np.ascontiguousarray(a), code)
        else:
            raise ValueError(f"unsupported number of channels: {a.shape[2]}")
    h, w = a.shape
    # INTER_AREA averages when shrinking (no aliasing); bilinear when enlarging a small crop.
    interp = cv2.INTER_AREA if h >= IMAGE_SIZE and w >= IMAGE_SIZE else cv2.INTER_LINEAR
    g = cv2.resize(a, (IMAGE_SIZE, IMAGE_SIZE), interpolation=interp)
    return g.astype(np.float32) / 255.0


def to_batch(grays: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """(N, 64, 64) floats in [0, 1] (or uint8) -> (N, 1, 64, 64) float tensor."""
    a = np.asarray(grays)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).unsqueeze(1)


def list_images(root: Path) -> list[Path]:
    """Every image file under `root`, recursively, in a stable (sorted) order."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8; ValueError with a plain message when it is not one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise ValueError(f"is a directory, not an image: {path}")
    buf = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ValueError(f"not a readable image: {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def uint8_gray64(grays: Iterable[np.ndarray]) -> np.ndarray:
    """Stack preprocessed crops compactly (uint8) for caching; to_batch() undoes it."""
    return np.stack([np.round(g * 255.0).astype(np.uint8) for g in grays])


def save_npz_atomically(path: Path, **arrays: np.ndarray) -> None:
    """Write a cache file whole or not at all. The temporary file has a name of its own, so
    two processes filling the same cache at once (trainings run side by side) each finish
    with a complete file instead of one moving the other's half-written one away."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
