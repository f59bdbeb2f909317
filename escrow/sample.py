"""A sample input that exists on any fresh machine: the astronaut photo (Eileen Collins, NASA,
public domain) that ships inside the scikit-image wheel. Nothing is downloaded."""

from __future__ import annotations

import numpy as np


def astronaut_rgb() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def astronaut_face(margin: float = 0.2) -> np.ndarray:
    """The astronaut's face crop, cut with the project's detector and framing."""
    from escrow.detect import FaceDetector, largest_face
    from vae.framing import cut_crop

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

    face = scorer.prepare(astronaut_face(), "rgb")
    rows = {"astronaut face (original)": face}
    # each row names its own crop: sorted by quality, an indented "..." row would read as a
    # copy of whatever non-face happens to sort above it
    rows.update(
        {f"astronaut face, {k.replace('_', ' ')}": f(face) for k, f in DEGRADATIONS.items()}
    )
    rows["not a face: coffee cup"] = to_gray64(data.coffee()[100:300, 200:400], "rgb")
    rows["not a face: brick wall"] = to_gray64(data.brick()[:128, :128])
    grays = np.stack(list(rows.values()))
    log_rp = scorer.log_rp(grays)
    quality = log_rp + scorer.complexity_correction(grays)
    table = zip(rows, map(float, quality), map(float, log_rp), strict=True)
    return sorted(table, key=lambda r: -r[1])


def write_sample_video(path, frames: int = 48, size: tuple[int, int] = (640, 480)) -> None:
    """A short street-like sequence synthesised from the astronaut photo: two 'people' (the
    photo and its mirror image) cross the frame at different distances, sharp in the middle
    of their walk and motion-blurred at its ends, so each track has a clearly best frame."""
    import cv2
    from skimage import data

    from escrow.detect import FaceDetector, largest_face

    rgb = astronaut_rgb()
    face = largest_face(FaceDetector().detect(rgb))
    x1, y1, x2, y2 = face.box
    cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
    head = rgb[
        int(max(0, cy - 1.3 * s)) : int(cy + 1.6 * s), int(max(0, cx - 1.2 * s)) : int(cx + 1.2 * s)
    ]
    head = cv2.cvtColor(np.ascontiguousarray(head), cv2.COLOR_RGB2BGR)
    bg = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    bg = cv2.resize(cv2.GaussianBlur(bg, (0, 0), 6), size)
    w, h = size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, size)
    walkers = [  # (first frame, last frame, x from, x to, y, height from, height to, mirrored)
        (0, frames - 1, 40, w - 220, 60, 170, 230, False),
        (frames // 4, frames - 1, w - 200, 60, 200, 150, 190, True),
    ]
    for i in range(frames):
        img = bg.copy()
        for f0, f1, xa, xb, y, ha, hb, mirror in walkers:
            if not f0 <= i <= f1:
                continue
            u = (i - f0) / max(1, f1 - f0)
            hh = int(ha + (hb - ha) * u)
            ww = int(hh * head.shape[1] / head.shape[0])
            sprite = cv2.resize(head[:, ::-1] if mirror else head, (ww, hh))
            blur = int(1 + 14 * abs(u - 0.5) ** 1.5)  # sharp mid-walk, smeared at the ends
            if blur > 1:
                k = np.zeros((blur, blur), np.float32)
                k[blur // 2, :] = 1.0 / blur
                sprite = cv2.filter2D(sprite, -1, k)
            x = int(xa + (xb - xa) * u)
            x, y0 = max(0, min(w - ww, x)), max(0, min(h - hh, y))
            img[y0 : y0 + hh, x : x + ww] = sprite
        out.write(img)
    out.release()
