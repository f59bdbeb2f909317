"""How a face is framed for the quality VAE, and the one way this project cuts a face crop
(`cut_crop`: training, `escrow quality`, the ERC and the capture agent all cut here, so the
model always sees faces framed the same way): which square around the MTCNN box, and at what
resolution, before the shared 64x64 gray preprocessing (vae/data.py).

A likelihood model can only be scored on faces framed the way it was trained, so the framing
travels with the weights (their training record) and every caller asks the scorer for it.
Two settings, both measured on LFW with a real matcher (the ERC, vae/MODEL_CARD.md):

- `margin`: the square has side (1 + margin) x the box. The capture agent stores crops of
  1.2 x the box (CAPTURE_MARGIN: some context for the investigator); the VAE may look at a
  tighter, inner square of that crop. A tight crop keeps hair, hats and background out of the
  likelihood, so its reconstruction errors are about the face itself.
- `max_side`: the largest native side (pixels of the source image) the crop keeps before the
  64x64 resize; larger crops are first shrunk to it. The training faces (CelebA-10k, 89x109
  images) are small, so a model trained on them has never seen the fine detail of a large
  face: without the cap, a sharp 150 px face is scored on detail the model cannot judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


def square_box(box: Sequence[float], margin: float = 0.2) -> tuple[int, int, int, int]:
    """Square around the box centre, side = max(w, h) * (1 + margin), in integer pixels."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1.0 + margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(2, int(round(side)))
    return left, top, left + s, top + s


def cut_crop(image: np.ndarray, box: Sequence[float], margin: float = 0.2) -> np.ndarray:
    """Cut the square face crop from the full-resolution image (edges replicated)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = square_box(box, margin)
    pad = max(0, -x1, -y1, x2 - w, y2 - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x1, y1, x2, y2 = x1 + pad, y1 + pad, x2 + pad, y2 + pad
    return np.ascontiguousarray(image[y1:y2, x1:x2])


CAPTURE_MARGIN = 0.2  # what the capture agent and `escrow quality` cut and seal


@dataclass(frozen=True)
class Framing:
    margin: float = CAPTURE_MARGIN
    max_side: int | None = None

    @classmethod
    def from_record(cls, record: dict) -> Framing:
        """The framing a weights file was trained with (old files: 1.2 x the box, no cap)."""
        cfg = record.get("train_config", {})
        side = cfg.get("max_side")
        return cls(float(cfg.get("margin", CAPTURE_MARGIN)), int(side) if side else None)

    def cap(self, crop: np.ndarray) -> np.ndarray:
        """Shrink (area-averaging) a crop whose side exceeds max_side; smaller ones stay."""
        h, w = crop.shape[:2]
        if self.max_side is None or max(h, w) <= self.max_side:
            return crop
        s = self.max_side
        return cv2.resize(crop, (s, max(1, round(h * s / w))), interpolation=cv2.INTER_AREA)

    def from_image(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """The VAE's view of the face at `box` in a full image."""
        return self.cap(cut_crop(image, box, self.margin))

    def from_crop(self, crop: np.ndarray, crop_margin: float = CAPTURE_MARGIN) -> np.ndarray:
        """The VAE's view of a square crop already cut at `crop_margin` around the box:
        its central square of (1 + margin) / (1 + crop_margin) of the side."""
        if self.margin > crop_margin + 1e-9:
            raise ValueError(
                f"the crop (margin {crop_margin:g}) is tighter than the VAE's framing "
                f"(margin {self.margin:g})"
            )
        h, w = crop.shape[:2]
        frac = (1.0 + self.margin) / (1.0 + crop_margin)
        sh, sw = max(2, round(h * frac)), max(2, round(w * frac))
        top, left = (h - sh) // 2, (w - sw) // 2
        return self.cap(np.ascontiguousarray(crop[top : top + sh, left : left + sw]))

    def describe(self) -> str:
        cap = f", at most {self.max_side} px" if self.max_side else ""
        return f"square of {1 + self.margin:g} x the box{cap}"
