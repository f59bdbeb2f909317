"""Evidence that the score means quality, on real CelebA faces the shipped model never saw.

Each degraded version of a held-out face must score below the original for at least 90% of
faces, and crops that are not faces must score below real faces.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vae.data import read_rgb, to_gray64
from vae.degrade import DEGRADATIONS
from vae.faces import cut_crop, largest_face
from vae.train import read_identities, split_holdout

N_FACES = 200


@pytest.fixture(scope="module")
def heldout_faces(scorer, detector, celeba_dir, celeba_identities):
    """Gray 64x64 crops of held-out CelebA people, checked against the weights' own record."""
    from vae.data import list_images

    cfg = scorer.record["train_config"]
    ids = read_identities(celeba_identities)
    paths = list_images(celeba_dir)
    train, held = split_holdout(paths, cfg["holdout"], ids if cfg["identities"] else None)
    assert held and scorer.record["holdout_first"] == held[0].name
    train_ids = {ids[p.name] for p in train}
    grays = []
    for p in held[:N_FACES]:
        assert ids[p.name] not in train_ids  # an unseen person, not only an unseen image
        rgb = read_rgb(p)
        face = largest_face(detector.detect(rgb))
        if face is not None:
            grays.append(to_gray64(cut_crop(rgb, face.box), "rgb"))
    assert len(grays) >= 0.95 * N_FACES
    return np.stack(grays)


@pytest.fixture(scope="module")
def face_scores(scorer, heldout_faces):
    return scorer.score_gray(heldout_faces)


@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_degraded_face_scores_below_its_original(name, scorer, heldout_faces, face_scores):
    degraded = np.stack([DEGRADATIONS[name](g) for g in heldout_faces])
    # the degradation really changed the pixels
    assert np.abs(degraded - heldout_faces).mean() > 0.01
    lower = float(np.mean(scorer.score_gray(degraded) < face_scores))
    print(json.dumps({"degradation": name, "fraction_below_original": round(lower, 3)}))
    assert lower >= 0.90


def _textures(rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for _ in range(10):
        out.append(rng.random((64, 64)))  # white noise
        smooth = cv2.GaussianBlur(rng.random((64, 64)), (0, 0), float(rng.uniform(2, 8)))
        out.append((smooth - smooth.min()) / (np.ptp(smooth) + 1e-6))  # smooth random field
        f = rng.uniform(0.05, 0.4)
        yy, xx = np.mgrid[:64, :64]
        ang = rng.uniform(0, np.pi)
        out.append(0.5 + 0.5 * np.sin(2 * np.pi * f * (xx * np.cos(ang) + yy * np.sin(ang))))
    return [t.astype(np.float32) for t in out]


def _video_background_crops(data_dir: Path, detector, rng, n: int = 30) -> list[np.ndarray]:
    """Real surveillance crops with no face in them: patches of the street clip that do not
    overlap any face MTCNN finds in that frame."""
    cap = cv2.VideoCapture(str(data_dir / "video" / "arcade-1080p.mp4"))
    crops: list[np.ndarray] = []
    idx = 0
    while len(crops) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        idx += 1
        if idx % 10:
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        faces = detector.detect(rgb)
        h, w = rgb.shape[:2]
        for _ in range(5):
            s = int(rng.integers(48, 160))
            x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
            if any(
                x < f.box[2] + 20
                and f.box[0] - 20 < x + s
                and y < f.box[3] + 20
                and f.box[1] - 20 < y + s
                for f in faces
            ):
                continue
            crops.append(to_gray64(rgb[y : y + s, x : x + s], "rgb"))
    cap.release()
    return crops[:n]


def test_textures_and_non_face_crops_score_below_real_faces(
    scorer, detector, data_dir, face_scores
):
    from skimage import data as skd

    rng = np.random.default_rng(0)
    others = _textures(rng)
    for name in ("brick", "grass", "gravel"):
        im = getattr(skd, name)()
        for _ in range(3):
            y, x = rng.integers(0, im.shape[0] - 128, 2)
            others.append(to_gray64(im[y : y + 128, x : x + 128]))
    others += _video_background_crops(data_dir, detector, rng)
    scores = scorer.score_gray(np.stack(others))
    p5 = np.percentile(face_scores, 5)
    below = float(np.mean(scores < p5))
    print(json.dumps({"non_face_crops": len(others), "fraction_below_face_p5": round(below, 3)}))
    assert len(others) >= 60
    assert below >= 0.90
