"""Face detection on the camera: MTCNN (facenet-pytorch) on an image, and on a video frame as
a downscaled copy with the crops cut from the full frame (vae.framing.cut_crop, the one way
this project cuts a face crop, so the quality model sees faces framed as it was trained)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from vae.framing import cut_crop

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


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # full-resolution pixels
    prob: float
    crop: np.ndarray  # BGR, cut from the full-resolution frame (memory only)


class FrameDetector:
    """PeekingDuck's MTCNN defaults: min face 40 px (of the full frame, scaled with it),
    thresholds 0.6/0.7/0.7, final score 0.7."""

    def __init__(
        self,
        detect_width: int = 960,
        min_face_size: int = 40,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        score_threshold: float = 0.7,
        margin: float = 0.2,
    ):
        self.detect_width, self.min_face_size, self.margin = detect_width, min_face_size, margin
        self.thresholds, self.score_threshold = thresholds, score_threshold
        self._detectors: dict[int, FaceDetector] = {}

    def _detector(self, scale: float) -> FaceDetector:
        size = max(12, int(round(self.min_face_size * scale)))
        if size not in self._detectors:
            self._detectors[size] = FaceDetector(size, self.thresholds, self.score_threshold)
        return self._detectors[size]

    def __call__(self, bgr: np.ndarray) -> list[Detection]:
        h, w = bgr.shape[:2]
        scale = min(1.0, self.detect_width / w)
        small = (
            bgr
            if scale == 1.0
            else cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        )
        faces: list[Face] = self._detector(scale).detect(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        out = []
        for f in faces:
            box = tuple(v / scale for v in f.box)
            out.append(Detection(box, f.prob, cut_crop(bgr, box, self.margin)))
        return out
