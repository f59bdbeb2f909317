"""Faces in a video frame: MTCNN on a downscaled copy, crops cut from the full frame."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vae.faces import Face, FaceDetector, cut_crop


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
