"""The best crop so far of each live track: one crop per track in memory, however long the
stream (the paper keeps each person's best crop even when it is poor in absolute terms)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

import numpy as np


@dataclass
class Candidate:
    quality: float
    crop: np.ndarray  # BGR, plaintext: lives only until sealed
    frame_index: int
    time: datetime
    box: tuple[float, float, float, float]
    det_prob: float


class BestCrops:
    def __init__(self) -> None:
        self._best: dict[int, Candidate] = {}

    def offer(self, track_id: int, cand: Candidate) -> bool:
        cur = self._best.get(track_id)
        if cur is None or cand.quality > cur.quality:
            self._best[track_id] = cand
            return True
        return False

    def get(self, track_id: int) -> Candidate | None:
        return self._best.get(track_id)

    def pop(self, track_id: int) -> Candidate | None:
        return self._best.pop(track_id, None)

    def __len__(self) -> int:
        return len(self._best)


class ClipBuffers:
    """For `--clip-seconds`: per live track, the crops around its best frame, bounded.

    A ring buffer holds the last `half` crops; when a new best arrives the ring becomes the
    clip's 'before' part and the next `half` crops its 'after' part. Memory per track is at
    most 3 x half crops, however long the stream.
    """

    def __init__(self, half: int):
        self.half = half
        self._ring: dict[int, deque] = {}
        self._clip: dict[int, tuple[list, list]] = {}

    def add(self, track_id: int, crop: np.ndarray, is_new_best: bool) -> None:
        ring = self._ring.setdefault(track_id, deque(maxlen=self.half))
        if is_new_best:
            self._clip[track_id] = (list(ring), [])
        elif track_id in self._clip and len(self._clip[track_id][1]) < self.half:
            self._clip[track_id][1].append(crop)
        ring.append(crop)

    def pop(self, track_id: int) -> tuple[list, list]:
        self._ring.pop(track_id, None)
        return self._clip.pop(track_id, ([], []))
