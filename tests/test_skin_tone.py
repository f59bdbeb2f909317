"""The skin-tone proxy (ITA) that docs/erc.md #58 reports the quality score's rejections by."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vae.erc.skin_tone import band_of, ita, merged_bands


def patch_of_lab(lightness: float, a: float, b: float, size: int = 32) -> np.ndarray:
    lab = np.full((size, size, 3), (lightness, a, b), dtype=np.float32)
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize(("lightness", "b"), [(75.0, 14.0), (60.0, 18.0), (40.0, 20.0)])
def test_ita_of_a_uniform_skin_patch_is_chardons_angle(lightness, b):
    expected = np.degrees(np.arctan((lightness - 50.0) / b))
    assert ita(patch_of_lab(lightness, 8.0, b)) == pytest.approx(expected, abs=1.5)


def test_ita_ignores_eyes_and_highlights():
    """Dark eyes and a bright highlight (under 10% of the pixels each) do not move it."""
    skin = patch_of_lab(65.0, 10.0, 16.0, size=40)
    marked = skin.copy()
    marked[5:8, 5:20] = 10  # an eyebrow
    marked[30:33, 10:25] = 250  # a highlight
    assert ita(marked) == pytest.approx(ita(skin), abs=1.0)
    assert ita(skin) > ita(patch_of_lab(35.0, 10.0, 16.0, size=40)) + 30


def test_bands_follow_chardon_and_merge_small_ones():
    angles = np.array([60.0, 50.0, 30.0, 20.0, 0.0, -40.0])
    assert list(band_of(angles)) == ["very light", "light", "intermediate", "tan", "brown", "dark"]
    many = np.concatenate([np.full(50, 60.0), np.full(50, 20.0), np.full(5, -40.0)])
    merged = merged_bands(many, min_count=40)
    assert set(merged[:50]) == {"very light"}
    # tan reaches 40 only with the (empty) bands before it; dark is the short remainder
    assert set(merged[50:]) == {"tan + dark"}
    assert set(merged_bands(many, min_count=1000)) == {"very light + tan + dark"}


def test_rejection_by_band_on_a_hand_made_table():
    """A score that rejects the darkest faces first rejects the darkest band, none of the
    lightest; the FNMR per band counts the pairs above the threshold."""
    from vae.erc.skin_tone import rejection_by_band

    angles = np.concatenate([np.full(60, 60.0), np.full(20, 35.0), np.full(20, -40.0)])
    distance = np.linspace(0.0, 1.0, 100)
    distance[[0, 1, 2, 3, 4]] = 2.0  # five false non-matches at f = 0.05, all "very light"
    qual = {"darkness-averse": angles.copy(), "random": np.random.default_rng(0).random(100)}
    out = rejection_by_band(angles, distance, qual, [0.05])
    by = {b["band"]: b for b in out}
    assert [b["band"] for b in out] == ["very light", "intermediate", "dark"]
    assert [b["probes"] for b in out] == [60, 20, 20]
    assert by["very light"]["fnmr"]["0.05"] == pytest.approx(5 / 60)
    assert by["dark"]["fnmr"]["0.05"] == 0.0
    # exactly r of all probes are rejected, the lowest first (ties broken at random)
    assert by["dark"]["rejected"]["darkness-averse"]["0.2"] == 1.0
    assert by["dark"]["rejected"]["darkness-averse"]["0.1"] == 0.5
    assert by["very light"]["rejected"]["darkness-averse"]["0.2"] == 0.0
    total = sum(b["rejected"]["random"]["0.1"] * b["probes"] for b in out)
    assert total == pytest.approx(10)
