"""Frame sources: folders, files, and a live stream that drops and comes back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from escrow import sources
from escrow.sources import Source, SourceError


def test_folder_of_frames_in_order(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    frames = list(Source(str(tmp_path)))
    assert [f.bgr[0, 0, 0] for f in frames] == [0, 50, 100]
    assert frames[1].time > frames[0].time


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        Source(str(tmp_path / "nope.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no image frames"):
        Source(str(tmp_path / "empty"))


class FlakyCapture:
    """A stream that delivers 3 frames, drops, and after one failed reopen delivers 2 more."""

    opens = 0

    def __init__(self, spec):
        FlakyCapture.opens += 1
        self.n = 0
        self.ok = FlakyCapture.opens in (1, 3)  # up, down, back up once, then gone

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.ok

    def read(self):
        self.n += 1
        limit = 3 if FlakyCapture.opens == 1 else 2
        if self.n > limit:
            return False, None
        return True, np.zeros((8, 8, 3), np.uint8)

    def get(self, prop):
        return 0

    def release(self):
        pass


def test_live_stream_is_reopened_with_backoff(monkeypatch):
    monkeypatch.setattr(sources.cv2, "VideoCapture", FlakyCapture)
    monkeypatch.setattr(sources.time, "sleep", lambda s: None)
    said = []
    src = Source("rtsp://camera.invalid/stream", log=said.append, max_reconnects=3)
    frames = list(src)
    assert len(frames) == 5 and src.status.reconnects == 1
    assert any("reopening" in m for m in said)
    assert "did not come back" in said[-1]  # after the second drop, all tries failed
