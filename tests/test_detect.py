"""The camera's MTCNN: the cascade (facenet-pytorch's nets and box algebra, OpenCV's
resampling) finds what facenet-pytorch finds, and the tracker's re-find (R-Net and O-Net on a
predicted box) frames a face as a full scan does."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from escrow.boxes import iou


@pytest.fixture(scope="module")
def frames(data_dir):
    """Every 8th frame of the street clip at the agent's detection size, RGB."""
    cap = cv2.VideoCapture(str(data_dir / "video" / "arcade-1080p.mp4"))
    out, i = [], 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % 8 == 0:
            small = cv2.resize(bgr, (960, 540), interpolation=cv2.INTER_AREA)
            out.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        i += 1
    assert len(out) == 14
    return out


@pytest.fixture(scope="module")
def mtcnn():
    from escrow.detect import FaceDetector

    return FaceDetector(min_face_size=20)


def _matched(a, b, floor):
    return [max((iou(x[:4], y[:4]) for y in b), default=0.0) >= floor for x in a]


def test_the_cascade_finds_what_facenet_pytorch_finds(frames, mtcnn):
    """Every face either is sure of (>= 0.95) the other finds too, on about the same box
    (IoU >= 0.6: up to 6 px on a 30 px face, where OpenCV's and torch's area resampling
    round differently); the faces at the threshold may differ."""
    ours_all = theirs_all = 0
    for rgb in frames:
        boxes, probs = mtcnn.mtcnn.detect(rgb)
        theirs = (
            []
            if boxes is None
            else [(*b, p) for b, p in zip(boxes, probs, strict=True) if p >= 0.7]
        )
        ours = [(*f.box, f.prob) for f in mtcnn.scan(rgb)]
        sure_theirs = [t for t in theirs if t[4] >= 0.95]
        sure_ours = [o for o in ours if o[4] >= 0.95]
        assert all(_matched(sure_theirs, ours, 0.6)), (sure_theirs, ours)
        assert all(_matched(sure_ours, theirs, 0.6)), (sure_ours, theirs)
        ours_all, theirs_all = ours_all + len(ours), theirs_all + len(theirs)
    assert theirs_all >= 60 and abs(ours_all - theirs_all) <= 0.05 * theirs_all


def test_a_face_is_refound_from_a_displaced_prediction_as_a_scan_frames_it(frames, mtcnn):
    """A prediction off by a fifth of the face (the tracker's error on a walking person) is
    re-found on the scan's box; a prediction on empty pavement finds nothing."""
    shifted, truth = [], []
    for rgb in frames:
        for f in mtcnn.scan(rgb):
            if f.prob < 0.99 or f.width < 24:
                continue
            dx, dy = 0.2 * f.width, -0.15 * f.height
            x1, y1, x2, y2 = f.box
            shifted.append((rgb, (x1 + dx, y1 + dy, x2 + dx, y2 + dy)))
            truth.append(f.box)
    assert len(shifted) >= 30
    refound = [mtcnn.refine(rgb, [box])[0] for rgb, box in shifted]
    overlaps = [0.0 if r is None else iou(r.box, t) for r, t in zip(refound, truth, strict=True)]
    assert np.mean([o >= 0.7 for o in overlaps]) >= 0.9, overlaps
    empty = (20.0, 500.0, 60.0, 540.0)  # bottom-left corner: pavement on every frame
    assert all(mtcnn.refine(rgb, [empty])[0] is None for rgb in frames)
