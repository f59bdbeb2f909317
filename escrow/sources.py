"""Frame sources: a video file, a folder of frames, a camera index, or an RTSP/HTTP stream.

Every frame carries its capture time (UTC): files from a start time and their frame rate,
live sources from the injected clock. A live
stream that drops is reopened with exponential backoff and the agent is told so.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from vae.data import IMAGE_SUFFIXES

STALE_AFTER_S = 1.0  # a live stream opened longer ago than this is reopened to be read


class SourceError(Exception):
    """The source cannot be read at all (missing, not a video, no frames)."""


@dataclass
class Frame:
    index: int
    time: datetime
    bgr: np.ndarray


@dataclass
class SourceStatus:
    frames_expected: int | None = None
    frames_read: int = 0
    truncated: bool = False  # a file ended before its declared frame count
    reconnects: int = 0
    skipped: int = 0  # live: frames that arrived while the agent was busy, never processed
    max_lag_s: float = 0.0  # live: the longest a frame waited between arrival and its turn


def _is_stream(spec: str) -> bool:
    return spec.split("://", 1)[0].lower() in ("rtsp", "rtsps", "http", "https", "rtmp")


def is_live(spec: str) -> bool:
    """A camera index or a stream URL: timed by the clock as frames arrive, not by a start."""
    return spec.isdigit() or _is_stream(spec)


def recorded_at(path: str) -> datetime | None:
    """When a recording began, from its container's `creation_time` tag (MP4/MOV/MKV as
    cameras and phones write it; always UTC in ISO 8601), or None where it has none."""
    try:
        import av  # PyAV (a dependency of supervision): reads the tags OpenCV does not show
    except ImportError:
        return None
    try:
        with av.open(path) as c:
            tags = [c.metadata, *(st.metadata for st in c.streams)]
    except Exception:  # not a container PyAV reads: no tag, not an error of the capture
        return None
    for tag in tags:
        value = tag.get("creation_time")
        if value:
            try:
                t = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


class NewestFrame:
    """Reads a live source on a thread of its own and keeps only the newest frame, so an
    agent slower than the camera processes the present, not an ever older backlog. Frames it
    replaces before they were taken are counted (`skipped`); each frame carries the time it
    arrived, so the agent can tell its lag."""

    def __init__(self, read: Callable[[], tuple[bool, np.ndarray | None]], clock):
        self._read, self._clock = read, clock
        self._cond = threading.Condition()
        self._frame: tuple[np.ndarray, datetime] | None = None
        self._ended = self._stopped = False
        self.skipped = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            ok, frame = self._read()
            with self._cond:
                if not ok or frame is None:
                    self._ended = True
                    self._cond.notify_all()
                    return
                if self._frame is not None:
                    self.skipped += 1  # the one waiting was never taken: replaced
                self._frame = (frame, self._clock())
                self._cond.notify_all()

    def take(
        self, interrupted: Callable[[], bool] = lambda: False
    ) -> tuple[np.ndarray, datetime] | None:
        """The newest frame not taken yet and when it arrived; None once the source ended
        (after the reader's last frame was taken) or `interrupted()` says so: a stream that
        stays open with no frames must not keep a stopping agent waiting for its read timeout.
        Polled, not notified, because the stop comes from a signal handler."""
        with self._cond:
            while self._frame is None and not self._ended:
                if interrupted():
                    return None
                self._cond.wait(timeout=0.2)
            got, self._frame = self._frame, None
            return got

    def stop(self) -> None:
        """The agent stopped taking frames: read no more (the frame being read is dropped)."""
        self._stopped = True

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


class Prefetch:
    """Decodes a recorded file on a thread of its own, a few frames ahead, so decoding
    (OpenCV releases the GIL) overlaps detection and scoring on the other core. Bounded:
    at most `depth` decoded frames wait in memory, however long the file."""

    _END = object()

    def __init__(self, frames: Iterator, depth: int = 4):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._frames, self._stopped, self.error = frames, False, None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for f in self._frames:
                while not self._stopped:
                    try:
                        self._q.put(f, timeout=0.1)
                        break
                    except queue.Full:  # the agent is busy: wait for it, or for a stop
                        continue
                if self._stopped:
                    return
        except Exception as exc:  # handed to the consumer, raised there
            self.error = exc
        finally:
            self._q.put(self._END)

    def __iter__(self) -> Iterator:
        try:
            while (f := self._q.get()) is not self._END:
                yield f
            if self.error is not None:
                raise self.error
        finally:
            self._stopped = True
            while self._thread.is_alive():  # unblock a reader waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    self._q.get(timeout=0.05)


class Source:
    def __init__(
        self,
        spec: str,
        start: datetime | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        log: Callable[[str], None] = print,
        max_reconnects: int = 10,
    ):
        self.spec, self.clock, self.log = spec, clock, log
        self.status = SourceStatus()
        self.max_reconnects = max_reconnects
        self.interrupted = False  # a stop was asked: a live source yields no more, reopens none
        self.live = is_live(spec)
        path = Path(spec)
        self.folder = None if self.live else (path if path.is_dir() else None)
        if not self.live and not path.exists():
            raise SourceError(f"no such file or folder: {spec}")
        # Files are timed from when this run started (the epoch keys a camera holds are for
        # now, not for whenever the file was written); pass `start` for a recording's time.
        self.start = start or clock()
        self.identity = spec if self.live else f"{path.resolve()}|{path.stat().st_size}"
        if self.folder is not None:
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise SourceError(f"no image frames in folder: {spec}")
            self.fps = 25.0
            self.shape = None  # the folder's frames may differ in size
            self.status.frames_expected = len(self.files)
        else:
            self.cap = self._open()
            ok, first = self.cap.read()
            if not ok or first is None:
                raise SourceError(f"not a readable video (or no frames): {spec}")
            self._first, self._opened_at = first, time.monotonic()
            self.shape: tuple[int, ...] | None = first.shape  # what the detector warms up for
            self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
            n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self.status.frames_expected = n if (n > 0 and not self.live) else None

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(int(self.spec) if self.spec.isdigit() else self.spec)
        if not cap.isOpened():
            what = "cannot open video source" if self.live else "not a readable video"
            raise SourceError(f"{what}: {self.spec}")
        return cap

    def _time(self, index: int) -> datetime:
        """A recorded frame's time (live frames carry the time they arrived)."""
        return self.start + timedelta(seconds=index / self.fps)

    def __iter__(self) -> Iterator[Frame]:
        if self.folder is not None:
            for i, p in enumerate(self.files):
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is None:
                    self.log(f"skipping unreadable frame {p.name}")
                    continue
                self.status.frames_read += 1
                yield Frame(i, self._time(i), img)
            return
        if self.live:
            yield from self._iter_live()
            return
        yield from Prefetch(self._iter_file())

    def _iter_file(self) -> Iterator[Frame]:
        index, frame = 0, self._first
        while True:
            if frame is not None:
                self.status.frames_read += 1
                yield Frame(index, self._time(index), frame)
                index += 1
            ok, frame = self.cap.read()
            if not ok:
                exp = self.status.frames_expected
                self.status.truncated = exp is not None and self.status.frames_read < exp
                break
        self.cap.release()

    def _iter_live(self) -> Iterator[Frame]:
        """Newest frame first: while the agent works on one frame, the reader keeps reading
        and replaces what waits; a dropped stream is reopened with backoff."""
        index, first = 0, (self._first, self.clock())
        if time.monotonic() - self._opened_at > STALE_AFTER_S:
            # opened a while ago (the agent loaded its models meanwhile): what waits in the
            # connection's buffers is the past, stamped with the present if read now, so the
            # stream is opened afresh and read from now on
            self.cap.release()
            self.cap, first = self._open(), None
        while True:
            reader = NewestFrame(self.cap.read, self.clock)
            try:
                while (got := first or reader.take(lambda: self.interrupted)) is not None:
                    first = None
                    frame, arrived = got
                    self.status.frames_read += 1
                    lag = (self.clock() - arrived).total_seconds()
                    self.status.max_lag_s = max(self.status.max_lag_s, round(lag, 3))
                    yield Frame(index, arrived, frame)
                    index += 1
            finally:  # also when the agent stops taking frames (a stop, an error)
                reader.stop()
                reader.join(timeout=1.0)  # a blocked read of a live stream is not waited for
                self.status.skipped += reader.skipped
            if self.interrupted or not self._reconnect():
                break
        self.cap.release()

    def interrupt(self) -> None:
        """Stop waiting for frames (safe from a signal handler): a live source ends after the
        frame in hand, a dropped stream is not reopened."""
        self.interrupted = True

    def _reconnect(self) -> bool:
        delay = 0.5
        for attempt in range(1, self.max_reconnects + 1):
            self.log(f"stream dropped; reopening {self.spec} in {delay:.1f} s (try {attempt})")
            time.sleep(delay)
            try:
                self.cap.release()
                self.cap = self._open()
                self.status.reconnects += 1
                return True
            except SourceError:
                delay = min(30.0, delay * 2)
        self.log(f"stream {self.spec} did not come back after {self.max_reconnects} tries")
        return False
