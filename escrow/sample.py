"""A sample input that exists on any fresh machine: the astronaut photo (Eileen Collins, NASA,
public domain) that ships inside the scikit-image wheel. Nothing is downloaded."""

from __future__ import annotations

import numpy as np


def astronaut_rgb() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def astronaut_face(margin: float = 0.2) -> np.ndarray:
    """The astronaut's face crop, cut with the project's detector and framing."""
    from vae.faces import FaceDetector, cut_crop, largest_face

    rgb = astronaut_rgb()
    face = largest_face(FaceDetector().detect(rgb))
    if face is None:  # pragma: no cover - the photo is fixed; this would be a detector bug
        raise RuntimeError("MTCNN found no face in the astronaut photo")
    return cut_crop(rgb, face.box, margin)


def sample_face_table(scorer) -> list[tuple[str, float, float]]:
    """(name, quality, log_rp) for the face, its degradations and two non-face crops, best
    quality first."""
    from skimage import data

    from vae.data import to_gray64
    from vae.degrade import DEGRADATIONS

    face = to_gray64(astronaut_face(), "rgb")
    rows = {"astronaut face (original)": face}
    rows.update({f"  ... {k.replace('_', ' ')}": f(face) for k, f in DEGRADATIONS.items()})
    rows["not a face: coffee cup"] = to_gray64(data.coffee()[100:300, 200:400], "rgb")
    rows["not a face: brick wall"] = to_gray64(data.brick()[:128, :128])
    grays = np.stack(list(rows.values()))
    log_rp = scorer.log_rp(grays)
    quality = log_rp - scorer.complexity_penalty(grays)
    table = zip(rows, map(float, quality), map(float, log_rp), strict=True)
    return sorted(table, key=lambda r: -r[1])
