"""ERC arithmetic on small hand-made distance/quality tables whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from vae.erc import curve as erc
from vae.erc.baselines import exposure, face_size, sharpness

# Ten genuine pairs, distances 0.1 .. 1.0; at f = 0.2 the threshold is the 8th smallest
# distance (0.8), so the two largest (0.9, 1.0) are the false non-matches.
D10 = np.round(np.arange(1, 11) / 10.0, 2)
GRID10 = np.array([0.0, 0.1, 0.2, 0.3, 0.5])


def test_threshold_leaves_floor_f_n_distances_above():
    assert erc.threshold_at(D10, 0.2) == pytest.approx(0.8)
    d = np.random.default_rng(0).random(5000)
    for f in (0.01, 0.05, 0.001):
        d_t = erc.threshold_at(d, f)
        assert (d > d_t).sum() == int(np.floor(f * len(d)))


def test_quality_that_agrees_with_distance_is_perfect():
    d_t = erc.threshold_at(D10, 0.2)
    curve = erc.fnmr_curve(D10, -D10, d_t, GRID10)
    # reject 1 pair (1.0): 1/9 left; reject 2: none; further rejection keeps 0
    np.testing.assert_allclose(curve, [2 / 10, 1 / 9, 0, 0, 0])
    np.testing.assert_allclose(erc.perfect_curve(D10, d_t, GRID10), curve)


def test_quality_that_opposes_distance_rejects_the_good_pairs_first():
    d_t = erc.threshold_at(D10, 0.2)
    curve = erc.fnmr_curve(D10, D10, d_t, GRID10)  # best quality = largest distance
    np.testing.assert_allclose(curve, [2 / 10, 2 / 9, 2 / 8, 2 / 7, 2 / 5])


def test_perfect_reaches_zero_fnmr_after_rejecting_f():
    rng = np.random.default_rng(1)
    d = rng.gamma(4.0, 0.1, 3000)
    for f in (0.01, 0.05):
        d_t = erc.threshold_at(d, f)
        curve = erc.perfect_curve(d, d_t)
        assert curve[0] == pytest.approx(np.floor(f * len(d)) / len(d))
        grid = erc.R_GRID
        rejected_f = grid >= f
        assert np.all(curve[rejected_f] == 0.0)
        assert np.all(curve[~rejected_f] > 0.0)


def test_random_stays_flat_on_average():
    rng = np.random.default_rng(2)
    d = rng.gamma(4.0, 0.1, 4000)
    f = 0.05
    d_t = erc.threshold_at(d, f)
    curve = erc.random_curve(d, d_t, seeds=200)
    base = (d > d_t).mean()
    # expected FNMR of a random subset is the overall FNMR; 200 seeds average the noise away
    assert np.abs(curve - base).max() < 0.006


def test_an_informative_quality_lies_between_random_and_perfect():
    rng = np.random.default_rng(3)
    d = rng.gamma(4.0, 0.1, 4000)
    q = -d + rng.normal(0, 0.2, len(d))  # noisy but informative
    d_t, curves = erc.all_curves(d, {"noisy": q}, 0.05)
    a = {m: erc.erc_area(c) for m, c in curves.items()}
    assert a[erc.PERFECT] < a["noisy"] < a[erc.RANDOM]
    g = erc.gap_closed(a["noisy"], a[erc.RANDOM], a[erc.PERFECT])
    assert 0.0 < g < 1.0


def test_area_is_the_mean_over_r_up_to_0_3():
    curve = np.where(erc.R_GRID <= 0.3 + 1e-9, 0.02, 1.0)
    assert erc.erc_area(curve) == pytest.approx(0.02)
    ramp = erc.R_GRID.copy()  # mean of 0, 0.005, ..., 0.3 is 0.15
    assert erc.erc_area(ramp) == pytest.approx(0.15)
    assert erc.at_r(ramp, 0.2) == pytest.approx(0.2)


def test_medoid_reference_and_genuine_pairs():
    subjects = np.array(["a", "a", "a", "b", "b", "c"])
    emb = np.array([[0.0], [1.0], [5.0], [2.0], [3.0], [9.0]], dtype=np.float32)
    refs = erc.medoid_references(subjects, emb)
    assert refs["a"] == 1  # 0 and 5 lie on either side of 1: summed distance 1 + 4
    assert refs["b"] == 3  # two images: the first in file order
    pairs = erc.genuine_pairs(subjects, emb)
    assert list(pairs.subjects) == ["a", "b"]  # c has no second image
    probe_ref = zip(pairs.probe.tolist(), pairs.reference.tolist(), strict=True)
    assert sorted(probe_ref) == [(0, 1), (2, 1), (4, 3)]
    got = dict(zip(pairs.probe.tolist(), pairs.distance.tolist(), strict=True))
    assert got == {0: 1.0, 2: 4.0, 4: 1.0}
    other = erc.genuine_pairs(subjects, emb, {"a": 2, "b": 4, "c": 5})  # another rule's picks
    probe_ref = zip(other.probe.tolist(), other.reference.tolist(), strict=True)
    assert sorted(probe_ref) == [(0, 2), (1, 2), (3, 4)]
    assert sorted(other.distance.tolist()) == [1.0, 4.0, 5.0]


def test_bootstrap_resamples_subjects_and_recomputes_the_threshold():
    rng = np.random.default_rng(4)
    n_subj, per = 200, 10
    subject = np.repeat(np.arange(n_subj), per)
    d = rng.gamma(4.0, 0.1, len(subject))
    pairs = erc.Pairs(
        probe=np.arange(len(d)),
        reference=np.zeros(len(d), int),
        subject=subject,
        distance=d,
        subjects=np.array([f"s{i}" for i in range(n_subj)]),
    )
    q = {"oracle-ish": -d + rng.normal(0, 0.05, len(d)), "noise": rng.random(len(d))}
    boot = erc.bootstrap_areas(pairs, q, 0.05, reps=60, seed=7, seeds=3)
    again = erc.bootstrap_areas(pairs, q, 0.05, reps=60, seed=7, seeds=3)
    for m in boot:
        assert boot[m].shape == (60,)
        np.testing.assert_array_equal(boot[m], again[m])  # seeded: reproducible
    assert np.all(boot[erc.PERFECT] <= boot["oracle-ish"])
    assert np.all(boot["oracle-ish"] < boot[erc.RANDOM])
    # the threshold is recomputed per resample: random's area stays near f every time
    assert np.all(np.abs(boot[erc.RANDOM] - 0.05) < 0.01)
    assert np.std(boot["noise"]) > 0  # resampling really changes the data
    lo, hi = erc.interval(boot["noise"])
    assert lo <= np.median(boot["noise"]) <= hi


def test_baselines_on_hand_made_faces():
    boxes = np.array([[0, 0, 10, 40], [5, 5, 25, 25]], dtype=np.float32)
    np.testing.assert_allclose(face_size(boxes), [20.0, 20.0])
    rng = np.random.default_rng(5)
    sharp = (rng.random((1, 112, 112)) * 255).astype(np.uint8)
    import cv2

    blurred = cv2.GaussianBlur(sharp[0], (0, 0), 2.0)[None]
    assert sharpness(sharp)[0] > sharpness(blurred)[0]
    mid = np.full((1, 8, 8), 128, np.uint8)
    dark = np.full((1, 8, 8), 20, np.uint8)
    clipped = np.full((1, 8, 8), 128, np.uint8)
    clipped[0, :4] = 255
    e = exposure(np.concatenate([mid, dark, clipped]))
    assert e[0] > e[1] and e[0] > e[2]
