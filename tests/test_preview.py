"""The operator's preview: a face the detector lost for a few frames, while its track is
still alive, stays pixelated (the street clip showed a face in clear on frames 96-102)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from escrow.preview import anonymise, unseen_tracks
from escrow.track import Tracker


def detail(img: np.ndarray, box) -> float:
    """Spread of horizontal pixel differences inside a box: a mosaic has almost none."""
    x1, y1, x2, y2 = box
    g = img[y1:y2, x1:x2].astype(np.float64).mean(axis=2)
    return float(np.abs(np.diff(g, axis=1)).mean())


class Det:
    def __init__(self, box):
        self.box = box


def test_a_track_the_detector_missed_stays_pixelated():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)  # detail everywhere
    t = datetime(2026, 12, 4, tzinfo=UTC)
    tracker = Tracker()
    face = (100.0, 60.0, 160.0, 120.0)
    for i in range(3):  # seen three times, then the detector misses it
        tracker.update([face], i, t + timedelta(seconds=i / 25))
    tracker.update([], 3, t + timedelta(seconds=3 / 25))
    unseen = unseen_tracks(tracker.tracks.values(), t + timedelta(seconds=3 / 25))
    assert [missed for _, _, missed in unseen] == [1]
    assert np.allclose(unseen[0][1], face, atol=1.0)  # a still face: predicted where it was
    shown = anonymise(frame, [], unseen)
    inner = (106, 66, 154, 114)
    assert detail(frame, inner) > 40 and detail(shown, inner) < 10  # the lost face: a mosaic
    far = (10, 180, 90, 230)
    assert np.array_equal(shown[180:230, 10:90], frame[180:230, 10:90])  # the rest is kept
    assert detail(shown, far) == detail(frame, far)
    # without the missed tracks (the old preview) the same face was shown in clear
    assert np.array_equal(anonymise(frame, [], [])[66:114, 106:154], frame[66:114, 106:154])


def test_the_missed_box_grows_with_the_frames_missed_and_detections_stay_pixelated():
    frame = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    box = (100.0, 60.0, 160.0, 120.0)
    near = (180, 66, 210, 114)  # right of the box: where a moving face goes next
    once = anonymise(frame, [], [(1, box, 1)])
    four = anonymise(frame, [], [(1, box, 4)])
    assert detail(four, near) < 10 < detail(once, near)
    seen = anonymise(frame, [(Det(box), 1, -500.0)], [])
    assert detail(seen, (106, 66, 154, 114)) < 10


def test_what_moves_is_hidden_and_the_still_scene_kept():
    """A passer-by whose face the detector never found is a moving blob under a coarse
    mosaic; where nothing moves the preview is the scene as it is."""
    from escrow.motion import MotionGate

    rng = np.random.default_rng(2)
    scene = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    gate = MotionGate()
    person = rng.integers(0, 255, (80, 60, 3), dtype=np.uint8)
    for i in range(30):  # the background is learnt, then someone walks across
        frame = scene.copy()
        x = 40 + 12 * i
        frame[200:280, x : x + 60] = person
        moving = gate(frame)
    shown = anonymise(frame, [], [], moving)
    inner = (x + 10, 210, x + 50, 270)
    assert detail(frame, inner) > 40 and detail(shown, inner) < 25  # the walker: mosaic
    assert np.array_equal(shown[20:120, 20:200], frame[20:120, 20:200])  # the scene kept
    assert any(b[0] <= x + 10 and b[2] >= x + 50 for b in moving)
