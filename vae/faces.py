"""MTCNN face detection (facenet-pytorch) and the one way this project cuts a face crop.

Training, `escrow quality`, the ERC evaluation and the capture agent all cut crops here, so
the quality model always sees faces framed the same way: a square around the MTCNN box,
enlarged by a margin, cut from the full-resolution image (edges replicated when the square
leaves the image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

FACENET_FIX = (
    "facenet-pytorch is not importable. It pins obsolete torch/numpy releases, so it is "
    "installed without its dependencies: `.venv/bin/pip install --no-deps "
    "facenet-pytorch==2.6.0 requests tqdm` (scripts/setup.sh does this)."
)


class FacenetMissing(RuntimeError):
    pass


def require_facenet() -> None:
    """Fail early, with the fix, when facenet-pytorch cannot be imported."""
    try:
        import facenet_pytorch  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising anything else
        raise FacenetMissing(f"{FACENET_FIX} ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in full-image pixels
    prob: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


class FaceDetector:
    """MTCNN with PeekingDuck's defaults (thresholds 0.6/0.7/0.7, final score 0.7)."""

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        score_threshold: float = 0.7,
    ):
        require_facenet()
        from facenet_pytorch import MTCNN

        self.score_threshold = score_threshold
        self.mtcnn = MTCNN(
            min_face_size=min_face_size,
            thresholds=list(thresholds),
            keep_all=True,
            post_process=False,
            device="cpu",
        )

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 image (one image at a time: on a CPU, facenet-pytorch's
        batched path measured slower here, 18 ms vs 10 ms per 89x109 CelebA image)."""
        boxes, probs = self.mtcnn.detect(rgb)
        if boxes is None:
            return []
        return [
            Face(tuple(float(v) for v in b), float(p))
            for b, p in zip(boxes, probs, strict=True)
            if p is not None and p >= self.score_threshold
        ]


def largest_face(faces: Sequence[Face]) -> Face | None:
    return max(faces, key=lambda f: f.width * f.height, default=None)


def central_face(faces: Sequence[Face], shape: tuple[int, ...]) -> Face | None:
    """The face nearest the image centre (LFW's labelled person is the central face)."""
    cy, cx = shape[0] / 2, shape[1] / 2
    return min(faces, key=lambda f: (f.centre[0] - cx) ** 2 + (f.centre[1] - cy) ** 2, default=None)


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
