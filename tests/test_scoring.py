"""Where the capture agent's VAE runs (escrow.scoring): a process of its own gives the very
scores the loop would, survives the Ctrl-C the agent handles, and dies with its agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from escrow.scoring import Scoring

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def crops(data_dir):
    """Faces of CelebA as the camera cuts them (BGR, any size)."""
    paths = sorted((data_dir / "celeba-10k").glob("*.jpg"))[:8]
    return [cv2.imread(str(p))[20:200, 0:178] for p in paths]


def test_a_scoring_process_scores_as_the_loop_does(scorer, crops):
    floors = [-np.inf] * 4 + [1e9] * 4  # the last four cannot beat their track's best
    got = {}
    for where in ("inline", "thread", "process"):
        s = Scoring(scorer, where, True, None, 0.2)
        try:
            got[where] = s.submit(crops, floors).result(timeout=120)
        finally:
            s.close()
    assert got["inline"][4:] == [None] * 4
    assert all(q is not None for q in got["inline"][:4])
    # the same numbers, to float rounding (the process runs torch on one thread, this
    # test process on two): 1e-7 of a score, far below any difference between crops
    for where in ("thread", "process"):
        assert [q is None for q in got[where]] == [q is None for q in got["inline"]]
        np.testing.assert_allclose(got[where][:4], got["inline"][:4], rtol=1e-6)
    # ungated, all eight go through the model in one batch, gated only the four that may win:
    # batches of another size round differently (seen in a full-suite run: 5e-4 of 6,648)
    ungated = Scoring(scorer, "inline", False, None, 0.2).submit(crops, floors).result()
    assert None not in ungated
    np.testing.assert_allclose(ungated[:4], got["inline"][:4], rtol=1e-6)


def test_the_scoring_process_ignores_ctrl_c_and_stops_when_closed(scorer, crops):
    """Ctrl-C reaches the whole process group: the agent seals its live tracks first, which
    needs their scores."""
    import multiprocessing

    before = {p.pid for p in multiprocessing.active_children()}
    s = Scoring(scorer, "process", True, None, 0.2)
    s.wait_ready(timeout=120)
    (child,) = [p for p in multiprocessing.active_children() if p.pid not in before]
    os.kill(child.pid, signal.SIGINT)
    time.sleep(0.5)
    assert s.submit(crops[:2], [-np.inf] * 2).result(timeout=60)[0] is not None
    s.close()
    child.join(timeout=10)
    assert not child.is_alive()


def test_the_scoring_process_dies_with_a_killed_agent(tmp_path):
    """SIGKILL gives the agent no chance to stop its pool: the scorer watches its parent."""
    script = tmp_path / "agent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import multiprocessing, sys, time
            sys.path.insert(0, {str(ROOT)!r})
            from escrow.scoring import Scoring
            from vae.score import QualityScorer
            if __name__ == "__main__":
                s = Scoring(QualityScorer(), "process", True, None, 0.2)
                s.wait_ready(timeout=120)
                print(multiprocessing.active_children()[0].pid, flush=True)
                time.sleep(300)
            """
        )
    )
    agent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(agent.stdout.readline())
        assert Path(f"/proc/{child}").exists()
        agent.kill()
        agent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{child}").exists(), "the scorer outlived its agent"
    finally:
        agent.kill()
