"""Face detection on the camera: MTCNN (facenet-pytorch) on an image, and on a video frame as
a downscaled copy with the crops cut from the full frame (vae.framing.cut_crop, the one way
this project cuts a face crop, so the quality model sees faces framed as it was trained)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from escrow.boxes import Box, iou
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
        import torch
        from facenet_pytorch import MTCNN

        self.score_threshold, self.thresholds = score_threshold, tuple(thresholds)
        self.mtcnn = MTCNN(
            min_face_size=min_face_size,
            thresholds=list(thresholds),
            keep_all=True,
            post_process=False,
            device="cpu",
        )
        # Channels-last weights: the same boxes and scores (checked to 1e-4 px), 1.7x faster
        # on this CPU, where torch's NCHW max-pooling is the slow part of P-, R- and O-Net.
        for net in (self.mtcnn.pnet, self.mtcnn.rnet, self.mtcnn.onet):
            net.to(memory_format=torch.channels_last)

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

    def refine(self, rgb: np.ndarray, boxes: Sequence[Box]) -> list[Face | None]:
        """MTCNN's last stage (O-Net) alone, on boxes where faces are expected: each box is
        squared, cut and resampled to 48x48 as the full cascade does before O-Net; O-Net
        says whether a face is there and regresses its box. -> the face, or None.

        Re-finding a face whose position the tracker predicts needs no proposal stages:
        this costs about a millisecond a face, against tens for a cascade over a region.
        """
        import torch

        if not boxes:
            return []
        h, w = rgb.shape[:2]
        squares, cuts = [], []
        for x1, y1, x2, y2 in boxes:
            bw, bh = x2 - x1, y2 - y1
            side = max(bw, bh)
            sx1, sy1 = x1 + bw / 2 - side / 2, y1 + bh / 2 - side / 2
            squares.append((sx1, sy1, sx1 + side, sy1 + side))
            cx1, cy1 = max(0, int(sx1)), max(0, int(sy1))
            cx2, cy2 = min(w, int(sx1 + side)), min(h, int(sy1 + side))
            if cx2 - cx1 < 4 or cy2 - cy1 < 4:
                cuts.append(np.zeros((48, 48, 3), np.uint8))
                continue
            cuts.append(cv2.resize(rgb[cy1:cy2, cx1:cx2], (48, 48), interpolation=cv2.INTER_AREA))
        x = torch.from_numpy(np.stack(cuts)).permute(0, 3, 1, 2).float()
        x = ((x - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            reg, _, prob = self.mtcnn.onet(x)
        out: list[Face | None] = []
        floor = max(self.thresholds[2], self.score_threshold)
        for (sx1, sy1, sx2, sy2), r, p in zip(
            squares, reg.tolist(), prob[:, 1].tolist(), strict=True
        ):
            if p < floor:
                out.append(None)
                continue
            bw, bh = sx2 - sx1 + 1, sy2 - sy1 + 1  # as facenet-pytorch's bbreg
            out.append(
                Face((sx1 + r[0] * bw, sy1 + r[1] * bh, sx2 + r[2] * bw, sy2 + r[3] * bh), p)
            )
        return out


def largest_face(faces: Sequence[Face]) -> Face | None:
    return max(faces, key=lambda f: f.width * f.height, default=None)


def central_face(faces: Sequence[Face], shape: tuple[int, ...]) -> Face | None:
    """The face nearest the image centre (LFW's labelled person is the central face)."""
    cy, cx = shape[0] / 2, shape[1] / 2
    return min(faces, key=lambda f: (f.centre[0] - cx) ** 2 + (f.centre[1] - cy) ** 2, default=None)


class Detection:
    """A face found in a frame: its box in full-resolution pixels and the detector's score.
    The crop (BGR, memory only) is cut from the full-resolution frame when first asked for:
    a face the quality gate does not score is never cut."""

    __slots__ = ("box", "prob", "_frame", "_margin", "_crop")

    def __init__(
        self,
        box: Box,
        prob: float,
        frame: np.ndarray | None = None,
        margin: float = 0.2,
        crop: np.ndarray | None = None,
    ):
        self.box, self.prob = tuple(float(v) for v in box), float(prob)
        self._frame, self._margin, self._crop = frame, margin, crop

    @property
    def crop(self) -> np.ndarray:
        if self._crop is None:
            self._crop = cut_crop(self._frame, self.box, self._margin)
            self._frame = None  # the frame is not kept alive by a detection once cut
        return self._crop

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


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

    def scale(self, bgr: np.ndarray) -> float:
        return min(1.0, self.detect_width / bgr.shape[1])

    def __call__(self, bgr: np.ndarray) -> list[Detection]:
        """Every face of the whole frame (the every-frame pipeline's detector)."""
        h, w = bgr.shape[:2]
        return self.in_regions(bgr, [(0.0, 0.0, float(w), float(h))])

    def in_regions(
        self, bgr: np.ndarray, regions: Sequence[Box], scales: Sequence[float] | None = None
    ) -> list[Detection]:
        """Faces inside the given regions of the frame, found by ONE detector pass over a
        canvas that packs the regions side by side, each at its own scale (default: the
        detector's scale for the whole frame).

        MTCNN's cost grows with the pixels it scans and a pass has a fixed overhead, so the
        moving parts of a frame and the padded boxes around live tracks (each shrunk so its
        face is just large enough to find again) are scanned together, and nothing else is.
        A face whose box reaches outside its tile is clipped to it; a face seen in two
        overlapping regions is kept once, with the detector's higher score.
        """
        h, w = bgr.shape[:2]
        base = self.scale(bgr)
        tiles = []
        for n, r in enumerate(regions):
            sc = base if scales is None else scales[n]
            x1, y1 = max(0, int(r[0])), max(0, int(r[1]))
            x2, y2 = min(w, int(np.ceil(r[2]))), min(h, int(np.ceil(r[3])))
            tw, th = round((x2 - x1) * sc), round((y2 - y1) * sc)
            if tw >= 12 and th >= 12:  # MTCNN's smallest window
                tiles.append(((x1, y1, x2, y2), tw, th, sc))
        if not tiles:
            return []
        placed, canvas = _pack([(tw, th) for _, tw, th, _ in tiles], TILE_GAP)
        for ((x1, y1, x2, y2), tw, th, sc), (cx, cy) in zip(tiles, placed, strict=True):
            part = bgr[y1:y2, x1:x2]
            if sc != 1.0:
                part = cv2.resize(part, (tw, th), interpolation=cv2.INTER_AREA)
            canvas[cy : cy + th, cx : cx + tw] = part
        # faces of min_face_size (full-resolution px) are searched at the smallest tile scale
        smallest = min(sc for *_, sc in tiles)
        faces: list[Face] = self._detector(smallest).detect(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB))
        out: list[Detection] = []
        for f in sorted(faces, key=lambda f: -f.prob):
            mx, my = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
            for ((x1, y1, _x2, _y2), tw, th, sc), (cx, cy) in zip(tiles, placed, strict=True):
                if cx <= mx < cx + tw and cy <= my < cy + th:
                    box = (
                        x1 + (max(f.box[0], cx) - cx) / sc,
                        y1 + (max(f.box[1], cy) - cy) / sc,
                        x1 + (min(f.box[2], cx + tw) - cx) / sc,
                        y1 + (min(f.box[3], cy + th) - cy) / sc,
                    )
                    if all(iou(box, d.box) < 0.4 for d in out):
                        out.append(Detection(box, f.prob, bgr, self.margin))
                    break
        return out

    def refine(self, bgr: np.ndarray, boxes: Sequence[Box]) -> list[Detection | None]:
        """The faces at the given boxes (where the tracker predicts them), re-found by
        MTCNN's last stage on the full-resolution frame; None where no face is there."""
        if not boxes:
            return []
        rgb = bgr[..., ::-1]  # O-Net's cuts are resampled one by one: no full-frame copy
        faces = self._detector(self.scale(bgr)).refine(rgb, boxes)
        return [None if f is None else Detection(f.box, f.prob, bgr, self.margin) for f in faces]


TILE_GAP = 16  # black pixels between packed regions: no face is found across a seam


def _pack(sizes: list[tuple[int, int]], gap: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Shelf packing, tallest first, into rows about as wide as the widest of a square's
    side and the widest tile: -> (top-left of each tile in input order, the black canvas)."""
    area = sum((tw + gap) * (th + gap) for tw, th in sizes)
    row_width = max(max(tw for tw, _ in sizes), int(np.sqrt(area) * 1.2))
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][1])
    placed: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    x = y = shelf = 0
    width = 0
    for i in order:
        tw, th = sizes[i]
        if x and x + tw > row_width:
            x, y, shelf = 0, y + shelf + gap, 0
        placed[i] = (x, y)
        x += tw + gap
        shelf = max(shelf, th)
        width = max(width, x - gap)
    return placed, np.zeros((y + shelf, width, 3), np.uint8)
