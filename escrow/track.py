"""Tracking faces across frames with ByteTrack (Roboflow's maintained `trackers` package):
a Kalman filter per face predicts where it moves, so a track survives the frames where the
detector missed it or did not run, and detections are matched to the predictions by IoU with
an optimal assignment. The paper tracks by box-centre distance between consecutive frames;
that breaks a track whenever the detector misses a face for a few frames, and one person
then gets two records (measured on the street clip: tests/data/arcade-1080p.gt.md).

Detections come in on the frames where the agent ran the detector, with their time, so the
filter steps over the frames in between; the agent asks for each live track's predicted box
to re-detect it there and to keep it pixelated in the preview.

This module keeps the project's own view of a track (first and last time seen, hits, the
frames it was missed) and which tracks ended, which ByteTrack does not report.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from escrow.boxes import Box


@dataclass
class Track:
    id: int
    box: Box  # the last detected box
    first_seen: datetime
    last_seen: datetime
    first_index: int
    last_index: int = -1
    hits: int = 1
    missed: int = 0  # frames since the detector last saw it
    velocity: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # px per frame
    probs: list[float] | None = None  # the detector's score on each hit
    recent: deque = field(default_factory=lambda: deque(maxlen=64))  # (frame index, box)

    def at(self, index: int) -> list[Box]:
        """The box this track had on frame `index`, if it was seen there."""
        return [b for i, b in self.recent if i == index]

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    def predicted(self, at: datetime, fps: float = 25.0) -> Box:
        """Where the Kalman filter expects this face at time `at` (its velocity is per frame
        at `fps`: a live source's skipped frames count, by the clock)."""
        k = (at - self.last_seen).total_seconds() * fps
        return tuple(float(b + v * k) for b, v in zip(self.box, self.velocity, strict=True))  # type: ignore[return-value]


class Tracker:
    """lost_seconds: how long a track lives on unseen before it ends (and is sealed);
    min_iou: the least overlap of a detection with a track's prediction to continue it."""

    def __init__(self, fps: float = 25.0, lost_seconds: float = 0.8, min_iou: float = 0.1):
        from trackers import ByteTrackTracker

        self.fps = fps
        self._bt = ByteTrackTracker(
            lost_track_buffer=max(1, round(lost_seconds * 30)),  # in 30 fps frames
            frame_rate=fps,
            track_activation_threshold=0.0,  # the detector's own threshold already applied
            high_conf_det_threshold=0.0,
            minimum_consecutive_frames=1,
            minimum_iou_threshold=min_iou,
        )
        self.tracks: dict[int, Track] = {}
        self._tracklet: dict[int, object] = {}  # our id -> ByteTrack's tracklet
        self._next = 1
        self._origin: datetime | None = None  # the first frame's time

    def update(
        self,
        boxes: list[Box],
        index: int,
        t: datetime,
        probs: list[float] | None = None,
    ) -> tuple[list[int], list[Track]]:
        """This frame's detections -> (track id per box, tracks that ended)."""
        import supervision as sv

        n = len(boxes)
        probs = list(probs) if probs is not None else [1.0] * n
        dets = sv.Detections(
            xyxy=np.asarray(boxes, dtype=np.float32).reshape(n, 4),
            confidence=np.asarray(probs, dtype=np.float32),
            data={"det": np.arange(n)},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # seconds since the first frame, not since 1970: the filter's time steps are then
            # exact (index / fps), so the same file tracks the same way whenever it is run
            self._origin = self._origin or t
            out = self._bt.update(dets, timestamp=(t - self._origin).total_seconds())
        by_tracklet = {id(tl): tid for tid, tl in self._tracklet.items()}
        fresh = [
            tl for tl in self._bt.tracks if id(tl) not in by_tracklet and tl.time_since_update == 0
        ]
        ids: list[int | None] = [None] * n
        for j, bt_id in zip(out.data.get("det", []), out.tracker_id, strict=True):
            j = int(j)
            tl = None
            if bt_id != -1:
                tl = next((x for x in self._bt.tracks if x.tracker_id == bt_id), None)
            else:  # a new tracklet spawned from this detection (ByteTrack gives it -1 first)
                tl = next(
                    (x for x in fresh if np.allclose(x.get_state_bbox(), boxes[j], atol=1e-3)),
                    None,
                )
                if tl is not None:
                    fresh.remove(tl)
            if tl is None:
                continue
            tid = by_tracklet.get(id(tl))
            if tid is None:
                tid = self._next
                self._next += 1
                self._tracklet[tid] = tl
                by_tracklet[id(tl)] = tid
                self.tracks[tid] = Track(tid, boxes[j], t, t, index, index, 1, 0, probs=[])
            else:
                tr = self.tracks[tid]
                tr.box, tr.last_seen, tr.last_index = tuple(boxes[j]), t, index
                tr.hits += 1
            self.tracks[tid].probs.append(float(probs[j]))
            self.tracks[tid].recent.append((index, tuple(boxes[j])))
            ids[j] = tid
        alive = {id(tl) for tl in self._bt.tracks}
        ended = []
        for tid in list(self.tracks):
            tl = self._tracklet[tid]
            tr = self.tracks[tid]
            if id(tl) not in alive:
                ended.append(self.tracks.pop(tid))
                del self._tracklet[tid]
                continue
            tr.missed = index - tr.last_index
            v = tl.state_estimator.kf.state[4:8].reshape(4)
            tr.velocity = tuple(float(x) for x in v)  # per frame at fps  # type: ignore[assignment]
        return [i if i is not None else -1 for i in ids], ended

    @property
    def started(self) -> int:
        """Tracks started so far (each with a detection of its own): a count, not a set of
        ids, so a camera running for days keeps nothing per track that ended."""
        return self._next - 1

    def age(self, index: int) -> None:
        """A frame the detector did not run on: count it as missed for every live track (the
        preview grows their boxes); nothing ends here, the next update decides."""
        for tr in self.tracks.values():
            tr.missed = index - tr.last_index

    def finish(self) -> list[Track]:
        """End every live track (the stream ended)."""
        ended = list(self.tracks.values())
        self.tracks.clear()
        self._tracklet.clear()
        return ended
