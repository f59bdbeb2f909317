"""Tracking as in the paper: euclidean distance between box centres of consecutive frames,
matched one-to-one by an optimal assignment (Hungarian, not greedy), gated by a distance
relative to the box size; a track ends after a number of frames without a match."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class Track:
    id: int
    box: tuple[float, float, float, float]
    first_seen: datetime
    last_seen: datetime
    first_index: int
    hits: int = 1
    missed: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)  # (frame, quality)

    @property
    def centre(self) -> np.ndarray:
        x1, y1, x2, y2 = self.box
        return np.array([(x1 + x2) / 2, (y1 + y2) / 2])

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


class Tracker:
    def __init__(self, max_distance: float = 1.0, max_missed: int = 5):
        """max_distance: largest centre shift between matched frames, in box sizes."""
        self.max_distance, self.max_missed = max_distance, max_missed
        self.tracks: dict[int, Track] = {}
        self._next = 1

    def update(
        self, boxes: list[tuple[float, float, float, float]], index: int, t: datetime
    ) -> tuple[list[int], list[Track]]:
        """Assign this frame's boxes to tracks -> (track id per box, tracks that ended)."""
        ids = list(self.tracks)
        assigned: list[int | None] = [None] * len(boxes)
        if ids and boxes:
            centres = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in boxes])
            tc = np.array([self.tracks[i].centre for i in ids])
            dist = np.linalg.norm(tc[:, None, :] - centres[None, :, :], axis=2)
            sizes = np.array([self.tracks[i].size for i in ids])[:, None]
            gate = dist > self.max_distance * sizes
            cost = np.where(gate, 1e9, dist)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                if not gate[r, c]:
                    assigned[c] = ids[r]
        for j, box in enumerate(boxes):
            tid = assigned[j]
            if tid is None:
                tid = self._next
                self._next += 1
                self.tracks[tid] = Track(tid, box, t, t, index)
                assigned[j] = tid
            else:
                tr = self.tracks[tid]
                tr.box, tr.last_seen, tr.missed = box, t, 0
                tr.hits += 1
        matched = set(assigned)
        ended = []
        for tid in ids:
            if tid not in matched:
                tr = self.tracks[tid]
                tr.missed += 1
                if tr.missed > self.max_missed:
                    ended.append(self.tracks.pop(tid))
        return [int(a) for a in assigned], ended

    def finish(self) -> list[Track]:
        """End every live track (the stream ended)."""
        ended = list(self.tracks.values())
        self.tracks.clear()
        return ended
