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
    # live: the newest frame wins; a frame replaced while the agent was busy is counted
    assert len(frames) + src.status.skipped == 5 and len(frames) >= 2
    assert src.status.reconnects == 1
    assert any("reopening" in m for m in said)
    assert "did not come back" in said[-1]  # after the second drop, all tries failed


class FastCamera:
    """A live camera delivering 40 numbered frames at 200 frames a second."""

    def __init__(self, spec):
        self.n = 0

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return True

    def read(self):
        import time

        time.sleep(0.005)
        self.n += 1
        if self.n > 40:
            return False, None
        return True, np.full((4, 4, 3), self.n, np.uint8)

    def get(self, prop):
        return 0

    def release(self):
        pass


def test_live_source_keeps_only_the_newest_frame_and_counts_what_it_skipped(monkeypatch):
    import time

    monkeypatch.setattr(sources.cv2, "VideoCapture", FastCamera)
    src = Source("rtsp://camera.invalid/stream", log=lambda m: None, max_reconnects=0)
    seen = []
    for frame in src:  # an agent 4x slower than the camera
        seen.append(int(frame.bgr[0, 0, 0]))
        time.sleep(0.02)
    assert seen == sorted(seen) and seen[-1] == 40  # in order, and it ends on the newest
    assert len(seen) < 25 and src.status.skipped == 40 - len(seen)
    assert src.status.frames_read == len(seen)
    assert 0.0 < src.status.max_lag_s < 0.5  # bounded: never a growing backlog


def test_live_reader_stops_when_the_agent_stops(monkeypatch):
    monkeypatch.setattr(sources.cv2, "VideoCapture", FastCamera)
    src = Source("rtsp://camera.invalid/stream", log=lambda m: None, max_reconnects=0)
    frames = iter(src)
    next(frames)
    cap = src.cap
    frames.close()  # the agent stopped: the reader thread reads no more
    read_then = cap.n
    import time

    time.sleep(0.1)
    assert cap.n <= read_then + 1 and cap.n < 40


class FrozenCamera(FastCamera):
    """A live camera that sends one frame, then keeps the connection open and sends nothing
    (a frozen scene, a stalled encoder): each read blocks far longer than a stop may take."""

    def read(self):
        import time

        self.n += 1
        if self.n > 1:
            time.sleep(30)
        return True, np.full((4, 4, 3), self.n, np.uint8)


def test_a_stop_ends_a_live_source_that_sends_nothing(monkeypatch):
    """The operator's Ctrl-C reaches the source: a stream that stays open without frames
    does not keep the agent waiting for its read to time out, and is not reopened."""
    import threading
    import time

    monkeypatch.setattr(sources.cv2, "VideoCapture", FrozenCamera)
    src = Source("rtsp://camera.invalid/stream", log=lambda m: None, max_reconnects=3)
    frames = iter(src)
    next(frames)  # the one frame; the next read never returns
    threading.Timer(0.3, src.interrupt).start()  # as the signal handler does
    t0 = time.monotonic()
    assert list(frames) == []
    assert time.monotonic() - t0 < 2.0
    assert src.status.reconnects == 0
