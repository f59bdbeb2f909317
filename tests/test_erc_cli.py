"""`escrow erc` end to end on a small LFW subset, as a user runs it: a real process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ESCROW = [sys.executable, "-m", "escrow.cli"]
SUBJECTS = 40  # 132 genuine pairs: at least one false non-match at f = 0.01


def run(args, env):
    return subprocess.run(
        [*ESCROW, *map(str, args)], capture_output=True, text=True, env=env, timeout=900
    )


@pytest.fixture(scope="module")
def lfw(data_dir: Path) -> Path:
    from tests.conftest import _require

    return _require(data_dir / "lfw")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A fresh cache: the first run must detect and embed, the second only read."""
    cache = tmp_path_factory.mktemp("erc-cache")
    return {**os.environ, "ESCROW_CACHE_DIR": str(cache), "ESCROW_THREADS": "2"}


@pytest.fixture(scope="module")
def first_run(lfw, env, tmp_path_factory):
    out = tmp_path_factory.mktemp("erc-out")
    args = ["erc", "--dataset", lfw, "--out", out, "--limit", SUBJECTS, "--bootstrap", 50]
    t = time.time()
    r = run([*args, "--no-progress"], env)
    return r, out, time.time() - t, args


def test_erc_writes_plots_csv_and_summary(first_run, lfw):
    r, out, _, _ = first_run
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    c = s["counts"]
    assert c["subjects"] == SUBJECTS
    assert c["images"] == sum(
        len(list(d.iterdir()))
        for d in sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.iterdir())) >= 2)[
            :SUBJECTS
        ]
    )
    assert c["images_with_face"] + c["images_without_face"] == c["images"]
    assert c["pairs"] == c["images_with_face"] - c["subjects"]  # one reference per subject
    assert s["fs"] == ["0.01", "0.05"]  # far fewer than 10,000 pairs: no f = 0.001
    for f in s["fs"]:
        png = out / f"erc-f{f}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        res = s["results"][f]
        m = res["methods"]
        for name in ("VAE", "random", "PERFECT", "detector", "face size", "sharpness", "exposure"):
            lo, hi = m[name]["area_ci95"]
            assert 0.0 <= lo <= hi <= 1.0
            assert 0.0 <= m[name]["fnmr_at_0.1"] <= 1.0
        assert m["PERFECT"]["area"] < m["random"]["area"]
        assert m["PERFECT"]["fnmr_at_0.1"] == 0.0  # f <= 0.1: the oracle has rejected them all
        assert res["false_non_matches"] == int(np.floor(float(f) * c["pairs"]))
        cmp = res["vae_vs_best_baseline"]
        assert cmp["best_baseline"] in m and cmp["best_baseline"] not in ("VAE", "PERFECT")
    rows = list(csv.DictReader((out / "erc.csv").open()))
    assert {r["method"] for r in rows} == set(s["methods"])
    from vae.erc.baselines import brisque_available

    # BRISQUE is an optional extra: present, it is a baseline; absent, the run says so
    has = brisque_available()
    assert ("BRISQUE" in s["methods"]) == has
    assert ("BRISQUE baseline left out" in r.stderr) == (not has)
    assert len(rows) == len(s["methods"]) * len(s["fs"]) * 101
    # the CSV holds the same curves the summary's figures come from
    vae01 = [float(r["fnmr"]) for r in rows if r["method"] == "VAE" and r["f"] == "0.01"]
    assert vae01[20] == pytest.approx(
        s["results"]["0.01"]["methods"]["VAE"]["fnmr_at_0.1"], abs=1e-6
    )
    # whom each method rejects, by skin tone: the bands hold every probe once, and together
    # each method rejects r of them
    bands = s["by_skin_tone"]["bands"]
    assert sum(b["probes"] for b in bands) == c["pairs"]
    assert [b["ita_median"] for b in bands] == sorted(
        (b["ita_median"] for b in bands), reverse=True
    )
    for f in s["fs"]:
        fnm = sum(b["fnmr"][f] * b["probes"] for b in bands)
        assert fnm == pytest.approx(s["results"][f]["false_non_matches"], abs=1e-6)
    for m in ("VAE", "face size"):
        rejected = sum(b["rejected"][m]["0.2"] * b["probes"] for b in bands) / c["pairs"]
        assert rejected == pytest.approx(0.2, abs=0.02)
    assert "skin tone (ITA)" in r.stdout


def test_second_run_reads_the_caches_and_agrees(first_run, env, tmp_path):
    r, out, first_seconds, args = first_run
    assert r.returncode == 0
    cached = list(Path(env["ESCROW_CACHE_DIR"], "erc").iterdir())
    assert any(p.name.startswith("faces-") for p in cached)
    assert any(p.name.startswith("emb-dlib-") for p in cached)
    args = [a if a != out else tmp_path for a in args]
    t = time.time()
    r2 = run([*args, "--no-progress"], env)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert time.time() - t < first_seconds
    a = json.loads((out / "summary.json").read_text())["results"]
    b = json.loads((tmp_path / "summary.json").read_text())["results"]
    assert a == b


def test_facenet_without_its_weights_is_one_line_and_exit_3(lfw, env, tmp_path):
    e = {**env, "TORCH_HOME": str(tmp_path / "torch")}
    r = run(["erc", "--dataset", lfw, "--out", tmp_path, "--matcher", "facenet", "--limit", 2], e)
    assert r.returncode == 3
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "20180402-114759-vggface2.pt" in r.stderr and "--matcher dlib" in r.stderr


def test_bad_inputs_are_one_line_errors(tmp_path, env):
    r = run(["erc", "--dataset", tmp_path / "nope", "--out", tmp_path], env)
    assert r.returncode == 2 and "not a folder" in r.stderr and "Traceback" not in r.stderr
    r = run(["erc", "--dataset", tmp_path, "--out", tmp_path, "--matcher", "eigenfaces"], env)
    assert r.returncode == 2 and "unknown matcher" in r.stderr
