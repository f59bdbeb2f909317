"""ERC data: the loaders on the real folders of ../shared/data, face picking, the matchers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from escrow.detect import Face, central_face, largest_face
from vae.data import read_rgb
from vae.erc.data import find_identity_file, load_celeba, load_dataset, load_lfw


@pytest.fixture(scope="session")
def lfw_dir(data_dir: Path) -> Path:
    from tests.conftest import _require

    return _require(data_dir / "lfw")


def test_lfw_loader_keeps_people_with_two_images_named_by_their_folder(lfw_dir):
    samples = load_lfw(lfw_dir)
    people = {s.subject for s in samples}
    for s in samples:
        assert s.path.parent.name == s.subject
        assert s.path.name.startswith(s.subject + "_")
    counts = {p: 0 for p in people}
    for s in samples:
        counts[s.subject] += 1
    assert min(counts.values()) >= 2
    on_disk = [d for d in lfw_dir.iterdir() if d.is_dir() and len(list(d.iterdir())) >= 2]
    assert len(people) == len(on_disk)
    few = load_lfw(lfw_dir, limit=5)
    assert len({s.subject for s in few}) == 5
    assert [s.subject for s in few] == sorted(s.subject for s in few)


def test_celeba_loader_follows_the_identity_file(celeba_dir, celeba_identities):
    ids = dict(line.split()[:2] for line in celeba_identities.read_text().splitlines() if line)
    samples = load_celeba(celeba_dir, celeba_identities, limit=40)
    assert len({s.subject for s in samples}) == 40
    for s in samples:
        assert ids[s.path.name] == s.subject and s.path.is_file()
    assert find_identity_file(celeba_dir) == celeba_identities
    layout, auto = load_dataset(celeba_dir, limit=40)
    assert layout == "celeba" and auto == samples


def test_load_dataset_tells_a_flat_folder_without_identities(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="identity file"):
        load_dataset(tmp_path)


def test_the_centre_face_is_picked_not_the_largest():
    big_corner = Face((0.0, 0.0, 120.0, 120.0), 0.99)
    small_centre = Face((105.0, 100.0, 145.0, 150.0), 0.95)
    faces = [big_corner, small_centre]
    assert largest_face(faces) is big_corner
    assert central_face(faces, (250, 250, 3)) is small_centre


def test_dlib_matcher_same_person_closer_than_others(lfw_dir):
    from escrow.detect import FaceDetector
    from vae.erc.matchers import DlibMatcher

    det, m = FaceDetector(), DlibMatcher()
    people = ["Colin_Powell", "Hans_Blix", "Tony_Blair"]
    emb = {}
    for p in people:
        for i in (1, 2):
            rgb = read_rgb(lfw_dir / p / f"{p}_{i:04d}.jpg")
            face = central_face(det.detect(rgb), rgb.shape)
            emb[p, i] = m.embed(rgb, np.array(face.box))
            assert emb[p, i].shape == (128,)
    for p in people:
        same = np.linalg.norm(emb[p, 1] - emb[p, 2])
        for o in people:
            if o != p:
                assert same < np.linalg.norm(emb[p, 1] - emb[o, 2])


def test_facenet_matcher_loads_weights_from_a_file(tmp_path, lfw_dir):
    """The real loading code, on randomly initialised weights (the VGGFace2 file is not
    available offline): a wrong file is refused, the right shape loads and embeds."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    from vae.erc.matchers import FacenetMatcher, MatcherUnavailable

    path = tmp_path / "facenet.pt"
    torch.manual_seed(0)
    torch.save(InceptionResnetV1(pretrained=None).state_dict(), path)
    m = FacenetMatcher(path)
    rgb = read_rgb(lfw_dir / "Tony_Blair" / "Tony_Blair_0001.jpg")
    e = m.embed(rgb, np.array([70.0, 60.0, 180.0, 190.0]))
    assert e.shape == (512,) and np.isfinite(e).all()
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-4)  # the model L2-normalises
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(MatcherUnavailable, match="not InceptionResnetV1"):
        FacenetMatcher(tmp_path / "bad.pt")
    with pytest.raises(MatcherUnavailable, match="never downloads"):
        FacenetMatcher(tmp_path / "absent.pt")


def test_framings_cut_the_same_face_and_are_cached(lfw_dir, tmp_path):
    from vae.erc.data import Sample, detect_faces, vae_crops
    from vae.erc.run import weights_framing

    people = ["Colin_Powell", "Hans_Blix"]
    samples = [Sample(lfw_dir / p / f"{p}_{i:04d}.jpg", p) for p in people for i in (1, 2)]
    table = detect_faces(samples, tmp_path, progress=False, log=lambda _: None)
    assert len(table) == 4 and table.no_face == []
    shipped = vae_crops(table, "margin=0.2", tmp_path)
    np.testing.assert_array_equal(shipped, table.gray64)
    tight = vae_crops(table, "margin=0", tmp_path, progress=False)
    aligned = vae_crops(table, "aligned=0.25", tmp_path, progress=False)
    for crops in (tight, aligned):
        assert crops.shape == (4, 64, 64) and crops.dtype == np.uint8
        assert not np.array_equal(crops, shipped)
    # a tight square of the box is the middle of the shipped one: close once resized alike
    import cv2

    mid = [cv2.resize(g[5:59, 5:59], (64, 64), interpolation=cv2.INTER_AREA) for g in shipped]
    assert np.abs(np.array(mid, float) - tight).mean() < 12
    assert len(list((tmp_path / "erc").glob("gray64-*"))) == 2
    with pytest.raises(ValueError, match="unknown framing"):
        vae_crops(table, "warped=1", tmp_path)
    assert weights_framing({}) == "margin=0.2"
    assert weights_framing({"train_config": {"margin": 0.35}}) == "margin=0.35"
    assert weights_framing({"framing": "aligned=0.25"}) == "aligned=0.25"


def test_inner_aligned_chip_is_the_middle_of_the_chip_at_its_native_size(lfw_dir, tmp_path):
    """#47/#48's framing: the central fraction of dlib's aligned chip, cut at the side it spans
    in the image (never upsampled there), shrunk to at most max_side."""
    import cv2

    from vae.erc.data import Sample, detect_faces, vae_crops
    from vae.erc.matchers import DlibMatcher

    p = "Colin_Powell"
    table = detect_faces([Sample(lfw_dir / p / f"{p}_0001.jpg", p)], tmp_path, progress=False)
    m = DlibMatcher()
    rgb = np.asarray(cv2.cvtColor(cv2.imread(table.paths[0]), cv2.COLOR_BGR2RGB))
    whole = m.inner_chip(rgb, table.boxes[0], 0.0)
    half = m.inner_chip(rgb, table.boxes[0], 0.0, inner=0.5)
    capped = m.inner_chip(rgb, table.boxes[0], 0.0, inner=0.5, max_side=20)
    native = whole.shape[0]
    assert (
        0.4 * (table.boxes[0][2] - table.boxes[0][0])
        < native
        < 1.2 * (table.boxes[0][2] - table.boxes[0][0])
    )
    assert abs(half.shape[0] - native / 2) <= 1 and capped.shape[:2] == (20, 20)
    q = native // 4
    mid = cv2.resize(whole[q : native - q, q : native - q], half.shape[1::-1])
    assert np.abs(mid.astype(float) - half).mean() < 3  # the same face, its middle
    crops = vae_crops(table, "aligned=0,inner=0.5,max_side=20", tmp_path, progress=False)
    assert crops.shape == (1, 64, 64)
    assert len(list((tmp_path / "erc").glob("gray64-*-aligned0-i0.5-s20.npy"))) == 1
    with pytest.raises(ValueError, match="unknown framing"):
        vae_crops(table, "aligned=0,zoom=2", tmp_path)
