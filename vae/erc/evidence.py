"""Held-out faces and the degradation check, shared by the tests and the model card's
measurement script (benchmarks/quality_evidence.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from escrow.detect import FaceDetector, largest_face
from vae.data import list_images, read_rgb, to_gray64
from vae.degrade import DEGRADATIONS
from vae.framing import Framing
from vae.train import read_identities, split_holdout


def heldout_celeba_faces(
    celeba_dir: Path, identities: Path, record: dict, n: int, detector: FaceDetector
) -> tuple[np.ndarray, list[str]]:
    """Gray crops of the first `n` held-out images of the weights' own split: people the
    model never saw. Raises AssertionError if the split does not match the weights' record."""
    cfg = record["train_config"]
    ids = read_identities(identities)
    train, held = split_holdout(
        list_images(celeba_dir), cfg["holdout"], ids if cfg["identities"] else None
    )
    if not held or record["holdout_first"] != held[0].name:
        raise AssertionError("held-out split does not match the weights' training record")
    train_ids = {ids.get(p.name) for p in train}
    framing = Framing.from_record(record)
    grays, names = [], []
    for p in held[:n]:
        if ids.get(p.name) in train_ids:
            raise AssertionError(f"{p.name}: its person was in the training set")
        rgb = read_rgb(p)
        face = largest_face(detector.detect(rgb))
        if face is not None:
            grays.append(to_gray64(framing.from_image(rgb, face.box), "rgb"))
            names.append(p.name)
    return np.stack(grays), names


def degradation_table(scorer, grays: np.ndarray) -> dict[str, dict[str, float]]:
    """For each degradation: the fraction of faces whose degraded copy scores below the
    original, under the quality score and under the paper's raw log RP."""
    base_rp = scorer.log_rp(grays)
    base_q = base_rp + scorer.complexity_correction(grays)
    out = {}
    for name, fn in DEGRADATIONS.items():
        d = np.stack([fn(g) for g in grays])
        rp = scorer.log_rp(d)
        q = rp + scorer.complexity_correction(d)
        out[name] = {
            "quality_below": float(np.mean(q < base_q)),
            "log_rp_below": float(np.mean(rp < base_rp)),
            "mean_abs_pixel_change": float(np.abs(d - grays).mean()),
        }
    return out
