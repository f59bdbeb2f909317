"""Skin tone without labels, to see whom a quality score rejects (docs/erc.md #58).

A likelihood model scores what it has seen less of as "lower quality", so a quality score can
push one group of people out of a gallery faster than the matcher's own errors would justify.
LFW and CelebA carry no group labels; face-fairness work (Merler et al. 2019, "Diversity in
Faces") uses the Individual Typology Angle of the skin instead, ITA = atan((L* - 50) / b*) in
degrees from CIELAB (Chardon et al. 1991), with six bands from "very light" to "dark".

ITA is a proxy, not a label: it mixes skin tone with the light on the face (a shadowed pale
face reads "tan"), so a table by band says how a score treats *dark-looking* faces. That is
still what a camera's operator needs to know before rejecting anyone's face.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

PROXY = (
    "Individual Typology Angle of the inner face (Chardon et al. 1991): skin tone mixed with "
    "the light on the face, not a group label"
)
INNER_MARGIN = -0.4  # the inner square of the box, 0.6 x: eyes to mouth, cheeks

# Chardon et al. (1991): the lower edge (degrees) of each band, from light to dark.
BANDS: tuple[tuple[str, float], ...] = (
    ("very light", 55.0),
    ("light", 41.0),
    ("intermediate", 28.0),
    ("tan", 10.0),
    ("brown", -30.0),
    ("dark", -np.inf),
)


def ita(rgb: np.ndarray) -> float:
    """ITA (degrees) of a face crop (H, W, 3) uint8 RGB: the median L* and b* of its pixels
    between the 10th and 90th percentile of L*, which leaves out eyes, brows, nostrils and
    highlights."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    lo, hi = np.percentile(lab[:, 0], [10, 90])
    skin = lab[(lab[:, 0] >= lo) & (lab[:, 0] <= hi)]
    lightness, yellow = np.median(skin[:, 0]), np.median(skin[:, 2])
    return float(np.degrees(np.arctan2(lightness - 50.0, yellow)))


def band_of(angles: np.ndarray) -> np.ndarray:
    """Chardon's band name of each ITA."""
    edges = np.array([edge for _, edge in BANDS])
    idx = np.argmax(np.asarray(angles, dtype=float)[:, None] > edges[None, :], axis=1)
    return np.array([BANDS[i][0] for i in idx], dtype=object)


def merged_bands(angles: np.ndarray, min_count: int) -> np.ndarray:
    """Chardon's bands, neighbours merged (light to dark) until each holds `min_count`
    faces, so that no figure rests on a handful of people; a short remainder at the dark end
    joins the group before it. Names like "brown + dark"."""
    bands = band_of(angles)
    groups: list[list[str]] = []
    current: list[str] = []
    for name, _ in BANDS:
        current.append(name)
        if np.isin(bands, current).sum() >= min_count:
            groups.append(current)
            current = []
    if current:
        if groups:
            groups[-1] += current
        else:
            groups.append(current)
    out = bands.copy()
    for g in groups:
        present = [n for n in g if (bands == n).any()]
        out[np.isin(bands, g)] = " + ".join(present)
    return out


def face_itas(table, cache_dir: Path, progress: bool = True) -> np.ndarray:
    """ITA of each face of an ERC face table (vae/erc/data.py), measured on the colour image
    in the inner square of its box (0.6 x, the shipped VAE's framing: skin, not hair or
    background); cached beside the table's other crops."""
    from vae.data import read_rgb
    from vae.framing import cut_crop

    cache = Path(cache_dir) / "erc" / f"ita-{table.key}.npy"
    if cache.exists():
        return np.load(cache)
    rows = zip(table.paths, table.boxes, strict=True)
    it = tqdm(rows, total=len(table), desc="skin tone (ITA)", disable=not progress)
    out = np.array([ita(cut_crop(read_rgb(Path(p)), box, INNER_MARGIN)) for p, box in it])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def rejection_by_band(
    angles: np.ndarray,
    distance: np.ndarray,
    qualities: dict[str, np.ndarray],
    fs: list[float],
    rs: tuple[float, ...] = (0.1, 0.2),
) -> list[dict]:
    """Per skin-tone band of the probes: how many, the matcher's FNMR on them at each f's
    threshold before any rejection, and the share of them each quality method rejects when
    the fraction r of *all* probes is rejected (one cut for everyone). A fair score rejects
    a band roughly in proportion to how often the matcher fails on it; bands are merged
    until each holds 2% of the probes (at least 20)."""
    from vae.erc import curve as erc

    bands = merged_bands(angles, max(20, round(0.02 * len(angles))))
    fails = {f: distance > erc.threshold_at(distance, f) for f in fs}
    n = len(angles)
    rejected = {m: {} for m in qualities}
    for m, q in qualities.items():
        order = erc.best_first(q)  # the same order, ties included, as the ERC curves
        for r in rs:
            mask = np.zeros(n, dtype=bool)
            mask[order[n - int(np.floor(r * n + 1e-9)) :]] = True
            rejected[m][r] = mask
    names = sorted(set(bands), key=lambda n: -np.median(angles[bands == n]))
    out = []
    for name in names:
        sel = bands == name
        out.append(
            {
                "band": name,
                "probes": int(sel.sum()),
                "ita_median": float(np.median(angles[sel])),
                "fnmr": {f"{f:g}": float(fails[f][sel].mean()) for f in fs},
                "rejected": {
                    m: {f"{r:g}": float(rejected[m][r][sel].mean()) for r in rs} for m in qualities
                },
            }
        )
    return out
