import numpy as np
import pytest

from vae.data import list_images, read_rgb, to_batch, to_gray64
from vae.erc.contrast import normalise_contrast


def _rgb(h=90, w=70, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(90, 70, 3), (300, 200, 3), (20, 33, 3), (64, 64, 3)])
def test_any_size_rgb_becomes_gray64_in_unit_range(shape):
    g = to_gray64(_rgb(*shape[:2]), "rgb")
    assert g.shape == (64, 64) and g.dtype == np.float32
    assert g.min() >= 0.0 and g.max() <= 1.0


def test_bgr_and_rgb_of_same_picture_agree_and_order_matters():
    rgb = _rgb()
    bgr = rgb[:, :, ::-1].copy()
    assert np.array_equal(to_gray64(rgb, "rgb"), to_gray64(bgr, "bgr"))
    # Luminance weights R and B differently, so naming the wrong order changes the result.
    assert not np.array_equal(to_gray64(rgb, "rgb"), to_gray64(rgb, "bgr"))


def test_gray_float_and_alpha_inputs():
    rgb = _rgb()
    gray = to_gray64(rgb, "rgb")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert np.array_equal(to_gray64(rgba, "rgb"), gray)
    g2d = (np.random.default_rng(1).random((80, 80))).astype(np.float32)
    assert to_gray64(g2d).shape == (64, 64)
    assert np.allclose(to_gray64(g2d[:, :, None]), to_gray64(g2d))


@pytest.mark.parametrize("bad", [np.zeros((5,)), np.zeros((1, 1, 3)), np.zeros((9, 9, 5))])
def test_rejects_non_images(bad):
    with pytest.raises(ValueError):
        to_gray64(bad)


def test_to_batch_shape_and_uint8_roundtrip():
    a = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    t = to_batch(a)
    assert tuple(t.shape) == (3, 1, 64, 64)
    assert np.allclose(t.numpy()[:, 0] * 255, a)


def test_read_rgb_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_rgb(tmp_path / "nope.jpg")
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        read_rgb(junk)
    with pytest.raises(ValueError, match="directory"):
        read_rgb(tmp_path)


def test_list_images_is_recursive_and_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    for p in ["b/2.png", "1.jpg", "b/c.txt", "0.JPEG"]:
        (tmp_path / p).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "0.JPEG",
        "1.jpg",
        "b/2.png",
    ]


def test_cache_files_are_written_whole_by_concurrent_writers(tmp_path):
    """Two writers of the same cache at once (trainings side by side) both finish, the file
    is one complete write, and no temporary file is left behind."""
    from concurrent.futures import ThreadPoolExecutor

    from vae.data import save_npz_atomically

    path = tmp_path / "cache" / "crops-x.npz"
    big = {i: np.full((400, 64, 64), i, np.uint8) for i in range(8)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: save_npz_atomically(path, crops=big[i]), range(8)))
    crops = np.load(path)["crops"]
    assert crops.shape == (400, 64, 64) and len(np.unique(crops)) == 1
    assert [p.name for p in path.parent.iterdir()] == ["crops-x.npz"]


def test_contrast_normalisation_takes_out_brightness_and_contrast():
    rng = np.random.default_rng(0)
    face = rng.normal(0.5, 0.1, size=(3, 64, 64)).clip(0, 1)
    crops = np.round(face * 255).astype(np.uint8)
    dim = np.round((0.2 + 0.4 * face) * 255).astype(np.uint8)  # darker and flatter
    assert np.abs(dim.astype(float) - crops).mean() > 20
    for form in ("standardise", "equalise"):
        a, b = normalise_contrast(crops, form), normalise_contrast(dim, form)
        assert a.shape == crops.shape and a.dtype == np.uint8
        assert np.abs(a.astype(float) - b).mean() < 3, form  # the same face after it
    std = normalise_contrast(crops, "standardise").astype(float) / 255
    assert np.allclose(std.mean(axis=(1, 2)), 0.5, atol=0.01)
    assert np.allclose(std.std(axis=(1, 2)), 0.2, atol=0.01)
    assert normalise_contrast(crops, "none") is crops


def test_contrast_normalisation_of_a_flat_crop_and_unknown_forms():
    flat = np.full((1, 64, 64), 90, np.uint8)
    assert (normalise_contrast(flat, "standardise") == 128).all()  # no division by zero
    with pytest.raises(ValueError, match="unknown contrast form"):
        normalise_contrast(flat, "gamma")
