"""`escrow vae train` end to end on a few real CelebA faces: crops cached, checkpoints,
resume, loss curve, and a weights file the scorer loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vae.score import (
    GAMMA_GRID,
    LN2,
    QualityScorer,
    WeightsError,
    complexity_bits,
    load_vae,
)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, celeba_dir):
    d = tmp_path_factory.mktemp("faces")
    for i in range(1, 41):  # links, not copies: the data stays in ../shared
        (d / f"{i:06d}.jpg").symlink_to(celeba_dir / f"{i:06d}.jpg")
    return d


def escrow_train(tmp_path, data, out, *extra):
    env = {**os.environ, "ESCROW_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "escrow.cli", "vae", "train", "--data", str(data)]
    cmd += ["--out", str(out), *map(str, extra)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def train(tmp_path, data, out, *extra):
    r = escrow_train(tmp_path, data, out, "--batch-size", "8", "--holdout", "0.25", *extra)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_train_checkpoint_resume_and_cache(tmp_path, small_set):
    a = tmp_path / "a.pt"
    r1 = train(tmp_path, small_set, a, "--epochs", "1")
    assert "MTCNN crops" in r1.stderr  # detection ran the first time
    assert (tmp_path / "a.ckpt.pt").exists() and (tmp_path / "a-loss.png").stat().st_size > 1000

    r2 = train(tmp_path, small_set, a, "--epochs", "2", "--resume")
    assert "MTCNN crops" not in r2.stderr and "from cache" in r2.stdout
    assert "resumed from" in r2.stdout
    _, record = load_vae(a)
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert record["n_train_images"] == 30 and record["holdout_first"] == "000031.jpg"
    assert record["train_config"]["lr"] == 0.005  # the paper's default
    assert record["train_config"]["complexity"] == "bounded"  # the best measured form

    # Two epochs straight give the same weights as one epoch plus a resumed one.
    b = tmp_path / "b.pt"
    train(tmp_path, small_set, b, "--epochs", "2")
    wa, wb = load_vae(a)[0].state_dict(), load_vae(b)[0].state_dict()
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5) for k in wa)

    s = QualityScorer(a)
    assert s.score_gray(torch.rand(2, 1, 64, 64)).shape == (2,)
    assert json.loads(json.dumps(record))  # the record is plain JSON


def test_train_refuses_a_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    r = escrow_train(tmp_path, tmp_path / "empty", tmp_path / "w.pt")
    assert r.returncode == 2 and "no images found" in r.stderr and "Traceback" not in r.stderr


def test_train_options_travel_with_the_weights(tmp_path, small_set):
    """Framing, complexity form, latent size and sigma bound reach the weights' record, and
    the scorer that loads them frames and bounds as trained."""
    w = tmp_path / "w.pt"
    train(tmp_path, small_set, w, "--epochs", "1", "--margin", "-0.4", "--max-side", "34",
          "--complexity", "bounded", "--latent-dim", "16", "--sigma-min", "0.05",
          "--jitter", "0.05", "--degradations", "blur,occlusion,shadow",
          "--kl-weight", "2", "--relight", "0.7")  # fmt: skip
    model, record = load_vae(w)
    cfg = record["train_config"]
    assert (cfg["margin"], cfg["max_side"], cfg["complexity"]) == (-0.4, 34, "bounded")
    assert record["complexity_max_bits"] > record["complexity_ref_bits"] > 0
    assert cfg["jitter"] == 0.05 and cfg["relight"] == 0.7
    assert cfg["degradations"] == ["blur", "occlusion", "shadow"] and cfg["kl_weight"] == 2.0
    assert model.cfg.latent_dim == 16 and model.cfg.sigma_min == 0.05
    with torch.no_grad():
        _, sigma = model.decoder(torch.randn(8, 16) * 5)
    assert float(sigma.min()) >= 0.05
    s = QualityScorer(w)
    assert (s.framing.margin, s.framing.max_side, s.complexity) == (-0.4, 34, "bounded")
    assert s.bits_max == record["complexity_max_bits"]
    # a 'bounded' file without its bound is refused, not scored with a made-up one
    payload = torch.load(w, weights_only=True)
    payload["record"] = json.dumps({k: v for k, v in record.items() if k != "complexity_max_bits"})
    torch.save(payload, w)
    with pytest.raises(WeightsError, match="complexity_max_bits"):
        QualityScorer(w)


def test_jitter_moves_faces_slightly_and_is_off_at_zero():
    """The training jitter is the identity at 0 and, at 0.05, a small move: the face shifts
    by at most a few pixels (its centre of mass), it is never blanked or flipped."""
    from vae.train import random_jitter

    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((xx - 30) ** 2 + (yy - 26) ** 2) / 60.0)[None, None].repeat(64, 1, 1, 1)
    assert torch.allclose(random_jitter(blob, 0.0), blob, atol=1e-5)
    moved = random_jitter(blob, 0.05)
    assert moved.shape == blob.shape
    mass = moved.sum((1, 2, 3))
    cx = (moved[:, 0] * xx).sum((1, 2)) / mass
    cy = (moved[:, 0] * yy).sum((1, 2)) / mass
    shift = torch.sqrt((cx - 30) ** 2 + (cy - 26) ** 2)
    assert float(shift.max()) < 0.05 * 64 * 1.5 + 1.5  # shift + what scale and turn add
    assert float(shift.mean()) > 0.3  # it does move
    assert float((mass / blob[0].sum() - 1).abs().max()) < 0.15  # nothing blanked


def test_relight_changes_the_light_of_the_clean_faces_and_is_off_at_zero():
    """The photometric jitter re-lights the faces the likelihood is trained on (targets
    included): at 0.7 the mean light of a batch of identical mid-grey faces spreads to both
    sides and stays in [0, 1], the darkest pixels stay darkest; at 0 it is left alone."""
    from vae.model import VAE
    from vae.train import train_step

    torch.manual_seed(0)
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=0.0)  # lr 0: only the batch is looked at
    ramp = torch.linspace(0.1, 0.9, 64).repeat(64, 1)
    face = ((ramp + ramp.flip(-1)) / 2)[None, None].repeat(32, 1, 1, 1)  # mirror-symmetric
    same, _ = train_step(model, opt, face.clone(), denoise=0.0, relight=0.0)
    assert torch.allclose(same, face)
    lit, res = train_step(model, opt, face.clone(), denoise=0.0, relight=0.7)
    means = lit.mean((1, 2, 3))
    assert float(lit.min()) >= 0.0 and float(lit.max()) <= 1.0
    assert (
        float(means.min())
        < float(face.mean()) - 0.05
        < float(face.mean()) + 0.05
        < float(means.max())
    )
    # a gamma keeps the order of the pixels: the face's darkest column stays darkest
    assert bool((lit[:, 0, 0, 0] <= lit[:, 0, 0, 32]).all())
    assert torch.isfinite(res["loss"])


def escrow_cli(tmp_path, *args):
    env = {**os.environ, "ESCROW_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "escrow.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_complexity_form_is_switched_from_the_training_faces(tmp_path, small_set, celeba_dir):
    """`escrow vae complexity` re-derives the statistics from the faces the weights were
    trained on, refuses other faces (leaving the file as it was), and changes only the
    correction: the paper's log RP of every crop stays the same."""
    w = tmp_path / "w.pt"
    train(tmp_path, small_set, w, "--epochs", "1", "--complexity", "floor")
    floor = QualityScorer(w)
    assert floor.complexity == "floor" and floor.bits_max is not None
    before = w.read_bytes()

    other = tmp_path / "other"
    other.mkdir()
    for i in range(101, 141):
        (other / f"{i:06d}.jpg").symlink_to(celeba_dir / f"{i:06d}.jpg")
    r = escrow_cli(tmp_path, "vae", "complexity", w, "--form", "bounded", "--data", other)
    assert r.returncode == 2 and "not the ones" in r.stderr and "Traceback" not in r.stderr
    assert w.read_bytes() == before

    r = escrow_cli(tmp_path, "vae", "complexity", w, "--form", "bounded")
    assert r.returncode == 0, r.stderr[-2000:]
    bounded = QualityScorer(w)
    assert bounded.complexity == "bounded" and bounded.bits_max == floor.bits_max
    assert bounded.bits_ref == floor.bits_ref
    x = torch.rand(4, 1, 64, 64)
    assert torch.allclose(
        torch.from_numpy(bounded.log_rp(x)), torch.from_numpy(floor.log_rp(x)), atol=1e-6
    )
    noise = bounded.complexity_correction(x)  # white noise costs more than any face
    assert float(noise.max()) == pytest.approx(LN2 * (bounded.bits_max - bounded.bits_ref))
    assert float(floor.complexity_correction(x).max()) == 0.0
    assert bounded.bits_gamma == 1.0

    # the light at which the code length is counted: a number, or "auto"; bad input changes
    # nothing
    before = w.read_bytes()
    r = escrow_cli(tmp_path, "vae", "complexity", w, "--gamma", "dark")
    assert r.returncode == 2 and "gamma must be" in r.stderr and w.read_bytes() == before
    r = escrow_cli(tmp_path, "vae", "complexity", w, "--gamma", "0.8")
    assert r.returncode == 0, r.stderr[-2000:]
    lit = QualityScorer(w)
    assert lit.bits_gamma == 0.8 and lit.bits_ref != bounded.bits_ref
    y = torch.rand(4, 1, 64, 64) * 0.5
    want = LN2 * (np.minimum(complexity_bits(y[:, 0].numpy(), 0.8), lit.bits_max) - lit.bits_ref)
    assert np.allclose(lit.complexity_correction(y), want)
    assert np.allclose(lit.log_rp(y), bounded.log_rp(y), atol=1e-4)
    change = lit.record["complexity_changes"][-1]
    assert (change["gamma_from"], change["gamma_to"]) == (1.0, 0.8)
    r = escrow_cli(tmp_path, "vae", "complexity", w, "--gamma", "auto")
    assert r.returncode == 0 and "light-neutral gamma" in r.stdout, r.stderr[-2000:]
    auto = QualityScorer(w)
    assert auto.bits_gamma in GAMMA_GRID

    # training can pick the same light itself: one command, the same statistics
    w2 = tmp_path / "w2.pt"
    r = escrow_train(tmp_path, small_set, w2, "--complexity-gamma", "dark")
    assert r.returncode == 2 and "gamma must be" in r.stderr and not w2.exists()
    train(tmp_path, small_set, w2, "--epochs", "1", "--complexity-gamma", "auto")
    again = QualityScorer(w2)
    assert (again.bits_gamma, again.bits_ref, again.bits_max) == (
        auto.bits_gamma,
        auto.bits_ref,
        auto.bits_max,
    )

    r = escrow_cli(tmp_path, "vae", "complexity", tmp_path / "missing.pt")
    assert r.returncode == 2 and "no such weights file" in r.stderr


def test_train_refuses_an_unknown_degradation(tmp_path, small_set):
    r = escrow_train(tmp_path, small_set, tmp_path / "w.pt", "--degradations", "blur,rain")
    assert r.returncode == 2 and "unknown degradations: rain" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "w.pt").exists()
    r = escrow_train(tmp_path, small_set, tmp_path / "w.pt", "--degradations", " , ")
    assert r.returncode == 2 and "at least one degradation" in r.stderr


def test_occlusion_and_shadow_degradations():
    """An occluder replaces one rectangle of the face and leaves every other pixel as it
    was; a shadow only ever darkens, down to at most 0.15 x; the default draws only the four
    camera failures, exactly as before these two existed."""
    from vae.degrade import CAMERA_FAILURES, random_degradations

    x = torch.full((32, 1, 64, 64), 0.5)
    occ = random_degradations(x, 1.0, torch.Generator().manual_seed(0), kinds=("occlusion",))
    for img in occ[:, 0]:
        changed = (img - 0.5).abs() > 1e-6
        rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
        assert len(rows) and len(cols)
        box = changed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert 64 * 0.10 - 1 <= box.shape[0] <= 64 * 0.40 and 64 * 0.15 - 1 <= box.shape[1] <= 32
        assert box.float().mean() > 0.9  # one patch, not scattered pixels
    sh = random_degradations(x, 1.0, torch.Generator().manual_seed(1), kinds=("shadow",))
    assert float(sh.max()) <= 0.5 + 1e-6 and float(sh.amin((1, 2, 3)).min()) >= 0.5 * 0.15
    assert float((sh.amax((1, 2, 3)) - sh.amin((1, 2, 3))).min()) > 0.1  # a real fall-off
    faces = torch.rand(16, 1, 64, 64)
    a = random_degradations(faces, 0.5, torch.Generator().manual_seed(2))
    b = random_degradations(faces, 0.5, torch.Generator().manual_seed(2), kinds=CAMERA_FAILURES)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown degradations"):
        random_degradations(faces, 0.5, kinds=("rain",))
