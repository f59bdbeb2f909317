"""Where the capture agent's quality model runs: in the loop, on a thread, or in a process.

The camera has two cores. Detection holds one; decoding and the VAE share the other. On a
thread, the VAE's many small torch calls and MTCNN's Python loops take turns on the one
interpreter lock, so the second core idles while the first waits (measured: 0.93 of 2
cores busy). In a process of its own (spawned, so no torch state is forked) the VAE has
an interpreter of its own; the crops travel to it pickled (a few tens of kB a face).

Plaintext crops cross only a pipe between two processes of the camera's own user, never a
file; the scoring process ignores SIGINT (a Ctrl-C reaches the whole process group) so that
the agent's graceful stop can still score the crops of the tracks it seals.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Literal

import numpy as np

Where = Literal["process", "thread", "inline"]

_SCORER = None  # the scoring process's own copy of the quality model


def score_crops(
    scorer, crops: Sequence[np.ndarray], floors: Sequence[float], gated: bool, slack, margin
) -> list[float | None]:
    """Quality of a frame's crops, one batch; None where the gate found the crop cannot beat
    its track's best (vae.score.QualityScorer.score_above)."""
    if not crops:
        return []
    # the sealed crop is cut at the detector's margin; the scorer takes its own framing
    if gated and hasattr(scorer, "score_above"):
        extra = {} if slack is None else {"slack": slack}
        qs = scorer.score_above(crops, floors, "bgr", margin, **extra)
    else:
        qs = scorer.score(crops, order="bgr", crop_margin=margin)
    return [None if np.isnan(q) else float(q) for q in qs]


def _start(pickled: bytes) -> None:
    global _SCORER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:  # a SIGKILLed agent leaves no scorer behind, crops in memory;
        # watched before the seconds of loading torch and the model (killed during them,
        # the scorer outlived its agent by up to 3.4 s)
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    import torch

    torch.set_num_threads(1)  # the other core is the detector's
    _SCORER = pickle.loads(pickled)


def _exit_with(sentinel: int) -> None:
    """The pool's worker waits on a pipe that stays open when its parent is killed: watch
    the parent itself, and end with it (crops in memory die with the process)."""
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _score_here(crops, floors, gated, slack, margin) -> list[float | None]:
    return score_crops(_SCORER, crops, floors, gated, slack, margin)


def _ready() -> int:
    return os.getpid()


class Scoring:
    """Scores crops `where` asked: submit() returns a future either way. A process is
    started at once (its start-up, a few seconds of importing torch, overlaps the camera's
    own start) and stopped by close()."""

    def __init__(self, scorer, where: Where, gated: bool, slack, margin: float):
        self.scorer, self.where = scorer, where
        self.args = (gated, slack, margin)
        self._pool: ProcessPoolExecutor | ThreadPoolExecutor | None = None
        self.pid: int | None = None  # the scoring process's, once ready
        if where == "process":
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start,
                initargs=(pickle.dumps(scorer),),
            )
            self._warm = self._pool.submit(_ready)
        elif where == "thread":
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="face-score")

    def submit(self, crops: list[np.ndarray], floors: list[float]) -> Future:
        if isinstance(self._pool, ProcessPoolExecutor):
            return self._pool.submit(_score_here, crops, floors, *self.args)
        if self._pool is not None:
            return self._pool.submit(score_crops, self.scorer, crops, floors, *self.args)
        done: Future = Future()
        done.set_result(score_crops(self.scorer, crops, floors, *self.args))
        return done

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the scoring process has loaded the model (benchmarks: time the
        steady state, not the start-up, and count the process's CPU and memory)."""
        if isinstance(self._pool, ProcessPoolExecutor):
            self.pid = self._warm.result(timeout)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
