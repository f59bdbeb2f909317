"""The best crop so far of each live track: one crop per track in memory, however long the
stream (the paper keeps each person's best crop even when it is poor in absolute terms)."""

from __future__ import annotations

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

    def pop(self, track_id: int) -> Candidate | None:
        return self._best.pop(track_id, None)

    def __len__(self) -> int:
        return len(self._best)
