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
        """Faces in one RGB uint8 image, by facenet-pytorch itself: what the training data,
        the ERC evaluation and `escrow quality` were measured with (one image at a time: on
        a CPU, its batched path measured slower here, 18 ms vs 10 ms per CelebA image)."""
        boxes, probs = self.mtcnn.detect(rgb)
        if boxes is None:
            return []
        return [
            Face(tuple(float(v) for v in b), float(p))
            for b, p in zip(boxes, probs, strict=True)
            if p is not None and p >= self.score_threshold
        ]

    def scan(self, rgb: np.ndarray) -> list[Face]:
        """The same faces as detect(), found faster (the camera's scans: `_cascade`)."""
        boxes = self._cascade(np.ascontiguousarray(rgb))
        return [
            Face(tuple(float(v) for v in b[:4]), float(b[4]))
            for b in boxes
            if b[4] >= self.score_threshold
        ]

    def _cascade(self, rgb: np.ndarray) -> np.ndarray:
        """facenet-pytorch's `detect_face` for one uint8 image, with its nets and its box
        algebra (generateBoundingBox, NMS, rerec, pad, bbreg), but every resampling done by
        OpenCV's INTER_AREA on the uint8 image (as the TensorFlow MTCNN that facenet-pytorch
        ports does) instead of torch's area interpolation of a float copy, one call per box.
        That per-box torch call was a fifth of a scan's time on a street frame. Boxes agree
        with facenet-pytorch's to a few pixels (tests/test_detect.py). -> rows x1, y1, x2, y2,
        score."""
        import torch
        from facenet_pytorch.models.utils.detect_face import (
            batched_nms,
            batched_nms_numpy,
            bbreg,
            generateBoundingBox,
            rerec,
        )

        m = self.mtcnn
        h, w = rgb.shape[:2]
        none = np.zeros((0, 5), np.float32)
        scale = 12.0 / m.min_face_size
        minl = min(h, w) * scale
        found, picks, offset = [], [], 0
        with torch.inference_mode():
            while minl >= 12:  # stage 1: P-Net over the image pyramid
                size = (int(w * scale + 1), int(h * scale + 1))
                level = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                reg, probs = m.pnet(_net_input(level[None]))
                b, inds = generateBoundingBox(reg, probs[:, 1], scale, m.thresholds[0])
                found.append(b)
                picks.append(batched_nms(b[:, :4], b[:, 4], inds, 0.5) + offset)
                offset += b.shape[0]
                scale, minl = scale * m.factor, minl * m.factor
            if not found:
                return none
            boxes = torch.cat(found)[torch.cat(picks)]
            boxes = boxes[batched_nms(boxes[:, :4], boxes[:, 4], _zeros(boxes), 0.7)]
            regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            offsets = torch.stack([regw, regh, regw, regh], 1) * boxes[:, 5:9]
            boxes = rerec(torch.cat([boxes[:, :4] + offsets, boxes[:, 4:5]], 1))
            boxes, reg = self._rnet(rgb, boxes)  # stage 2: NMS, then the regression
            pick = batched_nms(boxes[:, :4], boxes[:, 4], _zeros(boxes), 0.7)
            boxes, reg = self._onet(rgb, rerec(bbreg(boxes[pick], reg[pick])))  # stage 3
            if not len(boxes):
                return none
            boxes = bbreg(boxes, reg)  # the regression, then NMS by the smaller box
            boxes = boxes[batched_nms_numpy(boxes[:, :4], boxes[:, 4], _zeros(boxes), 0.7, "Min")]
        return boxes.numpy()

    def _stage(self, rgb: np.ndarray, boxes, net, size: int, threshold: float, keep_all=False):
        """One refining stage of the cascade: cut each (square) box, resample it to the
        net's input size, score it and regress its box (facenet-pytorch's pad and bbreg).
        -> (boxes x1, y1, x2, y2, score; their regressions), only those above `threshold`
        unless `keep_all`."""
        import torch
        from facenet_pytorch.models.utils.detect_face import pad

        if not len(boxes):
            return boxes[:, :5], boxes[:, :4]
        h, w = rgb.shape[:2]
        y, ey, x, ex = pad(boxes, w, h)
        cuts = [
            cv2.resize(
                rgb[y[k] - 1 : ey[k], x[k] - 1 : ex[k]], (size, size), interpolation=cv2.INTER_AREA
            )
            if ey[k] >= y[k] and ex[k] >= x[k]
            else np.zeros((size, size, 3), np.uint8)
            for k in range(len(y))
        ]
        reg, *_, prob = net(_net_input(np.stack(cuts)))
        score = prob[:, 1]
        ok = torch.ones_like(score, dtype=torch.bool) if keep_all else score > threshold
        return torch.cat((boxes[ok, :4], score[ok, None]), dim=1), reg[ok]

    def _rnet(self, rgb: np.ndarray, boxes, keep_all: bool = False):
        return self._stage(rgb, boxes, self.mtcnn.rnet, 24, self.thresholds[1], keep_all)

    def _onet(self, rgb: np.ndarray, boxes, keep_all: bool = False):
        return self._stage(rgb, boxes, self.mtcnn.onet, 48, self.thresholds[2], keep_all)

    def refine(self, rgb: np.ndarray, boxes: Sequence[Box]) -> list[Face | None]:
        """The cascade's last two stages, with each given box (where a tracked face is
        predicted) standing in for P-Net's proposal: R-Net recentres the box, O-Net says
        whether a face is there and regresses the box as it does for a full scan, so a
        re-found face is framed as the every-frame pipeline frames it. -> the face, or None.

        Re-finding a face whose position the tracker predicts needs no proposal stage: this
        costs about a millisecond a face, against tens for a scan of a region.
        """
        import torch
        from facenet_pytorch.models.utils.detect_face import bbreg, rerec

        if not boxes:
            return []
        proposals = torch.tensor([(*b, 1.0) for b in boxes], dtype=torch.float32)
        with torch.inference_mode():
            # every box goes through both nets (no threshold between them), so each answer
            # stays with its box; R-Net's verdict is kept and applied at the end
            stage2 = bbreg(*self._rnet(rgb, rerec(proposals), keep_all=True))
            stage3 = bbreg(*self._onet(rgb, rerec(stage2.clone()), keep_all=True))
        floor = max(self.thresholds[2], self.score_threshold)
        return [
            Face(tuple(float(v) for v in b3[:4]), float(b3[4]))
            if b2[4] > self.thresholds[1] and b3[4] >= floor
            else None
            for b2, b3 in zip(stage2.tolist(), stage3.tolist(), strict=True)
        ]


def _net_input(images: np.ndarray):
    """uint8 N x H x W x 3 -> MTCNN's input: float, (x - 127.5) / 128, channels-last (the
    same numbers as NCHW, 1.7x faster on this CPU, where NCHW max-pooling is slow)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return ((x - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)


def _zeros(boxes):
    """One image: every box in NMS group 0."""
    import torch

    return torch.zeros(len(boxes), dtype=torch.long)


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

    def warm(self, shape: tuple[int, ...]) -> None:
        """Load MTCNN for frames of `shape` and run it once: done before a live source's first
        frame, the seconds this takes are not spent while the camera's frames go by."""
        self(np.zeros(shape, np.uint8))

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
        faces: list[Face] = self._detector(smallest).scan(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB))
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
