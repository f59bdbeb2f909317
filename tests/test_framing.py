"""The VAE's framing: the inner square of a stored capture crop is the face the model was
trained on, resolution-capped; the scorer frames every crop by its weights' record."""

from __future__ import annotations

import numpy as np
import pytest

from escrow.detect import largest_face
from vae.data import read_rgb, to_gray64
from vae.framing import CAPTURE_MARGIN, Framing, cut_crop


@pytest.fixture(scope="module")
def lfw_face(data_dir, detector):
    path = sorted((data_dir / "lfw").glob("*/*_0001.jpg"))[0]
    rgb = read_rgb(path)
    face = largest_face(detector.detect(rgb))
    assert face is not None
    return rgb, face.box


@pytest.mark.parametrize("margin", [0.2, 0.0, -0.4])
def test_inner_square_of_a_capture_crop_is_the_direct_cut(lfw_face, margin):
    rgb, box = lfw_face
    framing = Framing(margin)
    direct = framing.from_image(rgb, box)
    inner = framing.from_crop(cut_crop(rgb, box, CAPTURE_MARGIN), CAPTURE_MARGIN)
    assert abs(direct.shape[0] - inner.shape[0]) <= 2 and abs(direct.shape[1] - inner.shape[1]) <= 2
    # the same face, give or take a pixel of rounding at the border
    diff = np.abs(to_gray64(direct) - to_gray64(inner)).mean()
    assert diff < 0.03, diff
    if margin < CAPTURE_MARGIN:  # really tighter: the box's corners are not in it
        full = cut_crop(rgb, box, CAPTURE_MARGIN)
        assert inner.shape[0] < 0.9 * full.shape[0]


def test_resolution_cap_shrinks_only_large_crops():
    big = np.random.default_rng(0).integers(0, 255, (150, 150, 3), dtype=np.uint8)
    small = big[:20, :20]
    f = Framing(0.2, max_side=34)
    assert f.cap(big).shape == (34, 34, 3)
    assert f.cap(small) is small
    assert Framing(0.2).cap(big) is big
    # a capped crop has lost the fine detail: its 64x64 view is smoother than the uncapped one
    assert (
        np.abs(np.diff(to_gray64(f.cap(big)), axis=1)).mean()
        < np.abs(np.diff(to_gray64(big), axis=1)).mean()
    )


def test_a_crop_tighter_than_the_framing_is_refused():
    with pytest.raises(ValueError, match="tighter"):
        Framing(0.2).from_crop(np.zeros((60, 60), np.uint8), crop_margin=0.0)


def test_framing_comes_from_the_weights_record():
    assert Framing.from_record({}) == Framing(0.2, None)  # weights older than the setting
    rec = {"train_config": {"margin": -0.4, "max_side": 34}}
    assert Framing.from_record(rec) == Framing(-0.4, 34)


def test_scorer_frames_capture_crops_as_it_was_trained(scorer, lfw_face):
    rgb, box = lfw_face
    crop = cut_crop(rgb, box, CAPTURE_MARGIN)
    want = scorer.score_gray(np.stack([to_gray64(scorer.framing.from_image(rgb, box))]))[0]
    got = scorer.score([crop])[0]
    assert abs(got - want) < 0.02 * abs(want), (got, want)
    # and a 1.2 x crop scored as if it were already the model's framing is another number
    if scorer.framing != Framing():
        plain = scorer.score_gray(np.stack([to_gray64(crop)]))[0]
        assert abs(plain - got) > 1.0
