"""Face data for the ERC evaluation: dataset loaders, the one face picked per image, caches.

Two layouts are read in place (never copied):
- LFW-style: `<root>/<Name>/<Name>_NNNN.jpg`, the folder name is the identity.
- CelebA-style: a flat image folder plus an identity file of `<file> <identity>` lines
  (`celeba-10k` + `celeba-10k-identity.txt`; the file beside the folder is found by itself).

Only subjects with at least two images can give a genuine pair, so the loaders keep only
those (a singleton would cost a face detection and contribute nothing to FNMR).

Every image is detected once with MTCNN. In LFW the labelled person is the face at the
*centre* of the image and other people often appear too; the face nearest the centre is
taken, not the largest (with the largest face, every false non-match at f = 0.01 was a wrong
face, so the curve measured face picking rather than quality). The matcher, the VAE and all
baselines use that same face. What is cached under the cache dir, keyed by the file list and
the detection settings: the box, the detector's probability, how many faces the image held,
the VAE's 64x64 crop and a 112x112 gray crop of the face box for the baselines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vae.data import IMAGE_SUFFIXES, read_rgb, save_npz_atomically, to_gray64

ERC_CACHE_VERSION = 1  # bump when detection, face picking or crop cutting changes
# The margin the face table's crops are cut at: the capture margin (vae.framing.CAPTURE_MARGIN).
# It is not the shipped VAE's framing: the weights carry their own (a tighter inner square,
# capped; vae/framing.py), and `vae_crops` re-frames the same boxes for them.
VAE_MARGIN = 0.2
FACE_SIZE = 112  # side of the box-only gray crop the baselines measure


@dataclass(frozen=True)
class Sample:
    path: Path
    subject: str


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_lfw(root: Path, limit: int | None = None) -> list[Sample]:
    """LFW-style folder: one sub-folder per person. `limit`: the first N people (sorted by
    name) that have at least two images."""
    root = Path(root)
    out: list[Sample] = []
    taken = 0
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        imgs = _images_in(person)
        if len(imgs) < 2:
            continue
        out.extend(Sample(p, person.name) for p in imgs)
        taken += 1
        if limit and taken >= limit:
            break
    return out


def load_celeba(images: Path, identities: Path, limit: int | None = None) -> list[Sample]:
    """CelebA-style: image folder + `<file> <identity>` lines. `limit`: the first N identities
    (by first appearance in the sorted file list) that have at least two images."""
    ids: dict[str, str] = {}
    for line in Path(identities).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            ids[parts[0]] = parts[1]
    by_subject: dict[str, list[Path]] = {}
    for p in _images_in(Path(images)):
        if p.name in ids:
            by_subject.setdefault(ids[p.name], []).append(p)
    subjects = [s for s, ps in by_subject.items() if len(ps) >= 2]
    if limit:
        subjects = subjects[:limit]
    return [Sample(p, s) for s in subjects for p in by_subject[s]]


def find_identity_file(dataset: Path) -> Path | None:
    """`<dir>-identity.txt` beside a CelebA-style folder, as in ../shared/data."""
    cand = Path(dataset).parent / f"{Path(dataset).name}-identity.txt"
    return cand if cand.is_file() else None


def load_dataset(
    dataset: Path, identities: Path | None = None, limit: int | None = None
) -> tuple[str, list[Sample]]:
    """(layout name, samples). With an identity file (given or beside the folder) the folder
    is CelebA-style, otherwise it must hold one sub-folder per person."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise ValueError(f"not a folder: {dataset}")
    identities = identities or find_identity_file(dataset)
    if identities is not None:
        return "celeba", load_celeba(dataset, identities, limit)
    if not any(p.is_dir() for p in dataset.iterdir()):
        raise ValueError(
            f"{dataset} has no per-person sub-folders (LFW layout) and no identity file "
            f"(CelebA layout: pass --identities)"
        )
    return "lfw", load_lfw(dataset, limit)


@dataclass
class FaceTable:
    """One row per image with a face (the centre face); arrays aligned by row."""

    paths: list[str]
    subjects: np.ndarray  # (N,) str
    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2, full-image pixels
    probs: np.ndarray  # (N,) float32, MTCNN face probability of the chosen face
    n_faces: np.ndarray  # (N,) int16, faces MTCNN found in the image
    gray64: np.ndarray  # (N, 64, 64) uint8, the VAE's crop (margin VAE_MARGIN)
    face112: np.ndarray  # (N, 112, 112) uint8, gray square of the box itself (baselines)
    n_images: int  # images read, with or without a face
    no_face: list[str]  # images where MTCNN found no face (or that could not be read)
    key: str  # cache key: file list + detection settings

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def multi_face(self) -> int:
        return int((self.n_faces > 1).sum())


def _files_key(samples: list[Sample], extra: object) -> str:
    h = hashlib.sha256(json.dumps([ERC_CACHE_VERSION, extra]).encode())
    for s in samples:
        st = s.path.stat()
        h.update(f"{s.path.resolve()}|{s.subject}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:20]


def face_gray(rgb: np.ndarray, box: tuple[float, ...], size: int = FACE_SIZE) -> np.ndarray:
    """Gray square of the detector's box (no margin) at `size` px: what the baselines see."""
    from vae.framing import cut_crop

    g = cv2.cvtColor(cut_crop(rgb, box, 0.0), cv2.COLOR_RGB2GRAY)
    interp = cv2.INTER_AREA if g.shape[0] >= size else cv2.INTER_LINEAR
    return cv2.resize(g, (size, size), interpolation=interp)


def detect_faces(
    samples: list[Sample],
    cache_dir: Path,
    min_face_size: int = 20,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FaceTable:
    """MTCNN on every image, the centre face kept; cached (a second run only reads a file)."""
    key = _files_key(samples, ["detect", min_face_size, VAE_MARGIN, FACE_SIZE])
    cache = Path(cache_dir) / "erc" / f"faces-{key}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return FaceTable(
            paths=[str(p) for p in z["paths"]],
            subjects=z["subjects"],
            boxes=z["boxes"],
            probs=z["probs"],
            n_faces=z["n_faces"],
            gray64=z["gray64"],
            face112=z["face112"],
            n_images=int(z["n_images"]),
            no_face=[str(p) for p in z["no_face"]],
            key=key,
        )
    from escrow.detect import FaceDetector, central_face
    from vae.framing import cut_crop

    det = FaceDetector(min_face_size=min_face_size)
    rows: dict[str, list] = {k: [] for k in ("paths", "subjects", "boxes", "probs", "n_faces")}
    grays, faces, no_face = [], [], []
    for s in tqdm(samples, desc="detect faces (MTCNN)", unit="img", disable=not progress):
        try:
            rgb = read_rgb(s.path)
        except (OSError, ValueError):
            no_face.append(str(s.path))
            continue
        found = det.detect(rgb)
        face = central_face(found, rgb.shape)
        if face is None:
            no_face.append(str(s.path))
            continue
        rows["paths"].append(str(s.path))
        rows["subjects"].append(s.subject)
        rows["boxes"].append(face.box)
        rows["probs"].append(face.prob)
        rows["n_faces"].append(len(found))
        grays.append(to_gray64(cut_crop(rgb, face.box, VAE_MARGIN), "rgb"))
        faces.append(face_gray(rgb, face.box))
    table = FaceTable(
        paths=rows["paths"],
        subjects=np.array(rows["subjects"], dtype=str),
        boxes=np.array(rows["boxes"], dtype=np.float32).reshape(-1, 4),
        probs=np.array(rows["probs"], dtype=np.float32),
        n_faces=np.array(rows["n_faces"], dtype=np.int16),
        gray64=np.round(np.array(grays, dtype=np.float32).reshape(-1, 64, 64) * 255).astype(
            np.uint8
        ),
        face112=np.array(faces, dtype=np.uint8).reshape(-1, FACE_SIZE, FACE_SIZE),
        n_images=len(samples),
        no_face=no_face,
        key=key,
    )
    save_npz_atomically(
        cache,
        paths=np.array(table.paths, dtype=str),
        subjects=table.subjects,
        boxes=table.boxes,
        probs=table.probs,
        n_faces=table.n_faces,
        gray64=table.gray64,
        face112=table.face112,
        n_images=np.array(table.n_images),
        no_face=np.array(no_face, dtype=str),
    )
    log(f"faces: {len(table)} of {len(samples)} images; cached {cache}")
    return table


def recrop_gray64(
    table: FaceTable,
    margin: float,
    cache_dir: Path,
    progress: bool = True,
    max_side: int | None = None,
) -> np.ndarray:
    """The VAE's 64x64 crops in another framing (vae/framing.py) around the same boxes
    (cached): for scoring a model trained with that framing."""
    if margin == VAE_MARGIN and max_side is None:
        return table.gray64
    from vae.framing import Framing

    framing = Framing(margin, max_side)
    side = f"-s{max_side}" if max_side else ""
    cache = Path(cache_dir) / "erc" / f"gray64-{table.key}-m{margin:g}{side}.npy"
    if cache.exists():
        return np.load(cache)
    out = np.empty((len(table), 64, 64), dtype=np.uint8)
    it = tqdm(range(len(table)), desc=f"crops, {framing.describe()}", disable=not progress)
    for i in it:
        g = to_gray64(framing.from_image(read_rgb(Path(table.paths[i])), table.boxes[i]), "rgb")
        out[i] = np.round(g * 255.0).astype(np.uint8)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def aligned_gray64(
    table: FaceTable,
    padding: float,
    cache_dir: Path,
    progress: bool = True,
    inner: float = 1.0,
    max_side: int | None = None,
) -> np.ndarray:
    """64x64 gray crops aligned the way dlib's matcher aligns its chips (5 landmarks found in
    the same box, dlib's chip with `padding`, then the usual 64x64 gray preprocessing). Cached.
    `inner` keeps the central fraction of that chip (dlib refuses a padding below 0, and the
    box framings measured best well inside the face); `max_side` caps the native resolution
    the chip is cut at, as vae/framing.py does for the box framings. Without either, the chip
    is cut at 128 px (the first aligned experiment, #7). An experiment in framing: docs/erc.md."""
    from vae.erc.matchers import DlibMatcher

    extra = (f"-i{inner:g}" if inner != 1.0 else "") + (f"-s{max_side}" if max_side else "")
    cache = Path(cache_dir) / "erc" / f"gray64-{table.key}-aligned{padding:g}{extra}.npy"
    if cache.exists():
        return np.load(cache)
    m = DlibMatcher()
    out = np.empty((len(table), 64, 64), dtype=np.uint8)
    it = tqdm(
        range(len(table)), desc=f"aligned crops, padding {padding:g}{extra}", disable=not progress
    )
    for i in it:
        rgb = read_rgb(Path(table.paths[i]))
        if inner == 1.0 and not max_side:
            chip = m.chip(rgb, table.boxes[i], size=128, padding=padding)
        else:
            chip = m.inner_chip(rgb, table.boxes[i], padding, inner, max_side)
        out[i] = np.round(to_gray64(chip, "rgb") * 255.0).astype(np.uint8)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def vae_crops(table: FaceTable, framing: str, cache_dir: Path, progress: bool = True):
    """The VAE's crops for a framing: "margin=M[,max_side=S]" (square around the box, the
    project's way, optionally resolution-capped) or "aligned=P[,inner=F][,max_side=S]"
    (dlib-aligned chip, padding P, its central fraction F, cut at most S px)."""
    head, _, rest = framing.partition(",")
    kind, _, value = head.partition("=")
    extra = dict(kv.partition("=")[::2] for kv in rest.split(",")) if rest else {}
    side = int(extra["max_side"]) if extra.get("max_side") else None
    if kind == "margin":
        if set(extra) - {"max_side"}:
            raise ValueError(f"unknown framing {framing!r} (margin=M[,max_side=S])")
        return recrop_gray64(table, float(value), cache_dir, progress, side)
    if kind == "aligned":
        if set(extra) - {"max_side", "inner"}:
            raise ValueError(f"unknown framing {framing!r} (aligned=P[,inner=F][,max_side=S])")
        inner = float(extra.get("inner") or 1.0)
        return aligned_gray64(table, float(value), cache_dir, progress, inner, side)
    raise ValueError(f"unknown framing {framing!r} (margin=M or aligned=P)")
