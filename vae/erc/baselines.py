"""Quality baselines the VAE is compared with in the ERC. Higher = better for every one.

All of them look at the same face as the matcher and the VAE (the centre face, see
vae/erc/data.py):
- `detector`: MTCNN's face probability of that face.
- `face size`: the side of the detector's box in pixels (sqrt of its area); resolution is
  the first thing a recogniser lacks.
- `sharpness`: variance of the Laplacian of the face box, gray, resized to 112x112 (Pech-
  Pacheco et al. 2000): a blurred face has little second-derivative energy.
- `exposure`: minus the distance of the face box's mean luminance from mid-gray, minus the
  fraction of clipped pixels (< 5 or > 250 of 255): penalises dark, washed-out and saturated
  faces.
- `BRISQUE` (Mittal et al. 2012), a general no-reference image quality method, only where
  the `brisque` package (PyPI `brisque` + `libsvm-official`; it ships its SVM model, so it
  runs offline) is importable; its score is lower-is-better, so it is negated.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable

import cv2
import numpy as np


def face_size(boxes: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.sqrt(np.clip(w, 0, None) * np.clip(h, 0, None)).astype(np.float64)


def sharpness(faces: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each (H, W) uint8 gray face."""
    return np.array(
        [cv2.Laplacian(f.astype(np.float64) / 255.0, cv2.CV_64F, ksize=3).var() for f in faces]
    )


def exposure(faces: np.ndarray) -> np.ndarray:
    """-(|mean - 0.5| + clipped fraction) of each uint8 gray face, luminance in [0, 1]."""
    f = faces.reshape(len(faces), -1)
    mean = f.mean(1) / 255.0
    clipped = ((f < 5) | (f > 250)).mean(1)
    return -(np.abs(mean - 0.5) + clipped)


def brisque_available() -> bool:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from brisque import BRISQUE  # noqa: F401
    except Exception:
        return False
    return True


def _brisque_model():
    """The package's BRISQUE with one fix: its generalised-Gaussian fit returns 1-element
    arrays where floats are meant, which numpy 2 no longer converts to scalars."""
    with contextlib.redirect_stdout(io.StringIO()):
        from brisque import BRISQUE

    class Brisque(BRISQUE):
        def asymmetric_generalized_gaussian_fit(self, x):
            return tuple(
                float(np.ravel(v)[0]) for v in super().asymmetric_generalized_gaussian_fit(x)
            )

    return Brisque(url=False)


def brisque(faces: np.ndarray, progress: Callable[[Iterable], Iterable] = lambda it: it):
    """Negated BRISQUE score of each gray face (the package wants RGB: gray is repeated)."""
    model = _brisque_model()
    out = []
    for f in progress(faces):
        try:
            out.append(-float(model.score(np.repeat(f[:, :, None], 3, axis=2))))
        except Exception:  # a degenerate (flat) face: its features are undefined
            out.append(-np.inf)
    return np.nan_to_num(np.array(out), nan=-np.inf)


def baseline_qualities(
    boxes: np.ndarray,
    probs: np.ndarray,
    faces: np.ndarray,
    with_brisque: bool | None = None,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> dict[str, np.ndarray]:
    """{name: (N,) quality} of every baseline, per image row."""
    out = {
        "detector": probs.astype(np.float64),
        "face size": face_size(boxes),
        "sharpness": sharpness(faces),
        "exposure": exposure(faces),
    }
    if with_brisque is None:
        with_brisque = brisque_available()
    if with_brisque:
        out["BRISQUE"] = brisque(faces, progress)
    return out
