"""A live camera on loopback for tests and benchmarks: an HTTP MJPEG stream (what many IP
cameras serve) that sends a clip's frames paced in real time, as a camera would, whether or
not the reader keeps up: a slow reader misses frames, it never slows the camera.

    with MjpegCamera(frames, fps=25) as cam:
        Source(cam.url)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = b"frame"


def encode(frames: list[np.ndarray], quality: int = 85) -> list[bytes]:
    return [
        cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes() for f in frames
    ]


class MjpegCamera:
    """Serves `schedule()`'s JPEG frames at `fps` on http://127.0.0.1:<port>/stream.mjpg to
    one client at a time; the stream ends when the schedule does, unless `hold`: then the
    connection stays open with no more frames, as a camera whose scene froze (a reader is not
    sent away to reconnect), until the camera is closed. `sent` counts frames sent,
    `sent_at` when each was (wall clock) and `sent_n` which of the schedule's frames, to tell
    which frame a record came from; `passes_done` counts connections that sent the whole
    schedule."""

    def __init__(
        self, schedule: Callable[[], Iterator[bytes]], fps: float = 25.0, hold: bool = False
    ):
        self.schedule, self.fps, self.hold = schedule, fps, hold
        self.closing = threading.Event()
        self.passes_done = 0
        self.sent = 0
        self.sent_at: list[float] = []  # wall-clock time each frame was sent (time.time())
        self.sent_n: list[int] = []  # which frame of its connection's schedule each was
        self.started: float | None = None
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                camera.started = t0 = time.monotonic()
                try:
                    for n, jpg in enumerate(camera.schedule()):
                        wait = t0 + n / camera.fps - time.monotonic()
                        if wait > 0:
                            time.sleep(wait)
                        self.wfile.write(
                            b"--"
                            + BOUNDARY
                            + b"\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(jpg)}\r\n\r\n".encode()
                            + jpg
                            + b"\r\n"
                        )
                        camera.sent_at.append(time.time())
                        camera.sent_n.append(n)
                        camera.sent += 1
                    camera.passes_done += 1
                    if camera.hold:
                        camera.closing.wait()
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # the OS picks the port
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/stream.mjpg"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MjpegCamera:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def clip_frames(path: str) -> list[np.ndarray]:
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames
