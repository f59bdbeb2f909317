"""Face matchers for the ERC: embeddings of the chosen face; comparison = euclidean distance.

- `dlib`: dlib's ResNet (29 layers, 128-d, LFW-trained threshold 0.6), models from the
  `face-recognition-models` package, loaded by file path because that package's own
  `__init__` needs pkg_resources. The ResNet wants a 150x150 chip aligned by dlib's 5-point
  landmarks; the landmarks are found inside the MTCNN box of the chosen face.
- `facenet`: facenet-pytorch's InceptionResnetV1 trained on VGGFace2 (the paper's matcher).
  Its weights are never downloaded here: they are used only where torch's checkpoint folder
  already holds them, otherwise `MatcherUnavailable` says where to put them.

Embeddings are cached per face table and matcher, so re-scoring with another VAE only reads
a file.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from vae.data import read_rgb

FACENET_FILE = "20180402-114759-vggface2.pt"


class MatcherUnavailable(RuntimeError):
    """The matcher cannot run here (a package or its model file is missing)."""


class Matcher(Protocol):
    name: str

    def embed(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray: ...


def face_recognition_models_dir() -> Path:
    """Folder of the dlib .dat files, found without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MatcherUnavailable(
            "the dlib matcher needs the face-recognition-models package "
            "(`.venv/bin/pip install face-recognition-models`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class DlibMatcher:
    name = "dlib"

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise MatcherUnavailable(
                f"the dlib matcher needs dlib (`.venv/bin/pip install dlib-bin`): {exc}"
            ) from exc
        models = face_recognition_models_dir()
        shape = models / "shape_predictor_5_face_landmarks.dat"
        resnet = models / "dlib_face_recognition_resnet_model_v1.dat"
        for f in (shape, resnet):
            if not f.is_file():
                raise MatcherUnavailable(f"dlib model file missing: {f}")
        self._dlib = dlib
        self.shape = dlib.shape_predictor(str(shape))
        self.net = dlib.face_recognition_model_v1(str(resnet))

    def landmarks(self, rgb: np.ndarray, box: np.ndarray):
        """dlib's 5 landmarks inside the MTCNN box: what every chip is aligned by."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        return self.shape(rgb, self._dlib.rectangle(x1, y1, x2, y2))

    def chip(
        self, rgb: np.ndarray, box: np.ndarray, size: int = 150, padding: float = 0.25
    ) -> np.ndarray:
        """The 150x150 chip dlib's ResNet was trained on (5-point alignment, padding 0.25)."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        shape = self.landmarks(rgb, box)
        return self._dlib.get_face_chip(rgb, shape, size=size, padding=padding)

    def inner_chip(
        self,
        rgb: np.ndarray,
        box: np.ndarray,
        padding: float,
        inner: float = 1.0,
        max_side: int | None = None,
    ) -> np.ndarray:
        """The central `inner` fraction of the aligned chip with `padding`, cut at its native
        resolution (the side it spans in the image), shrunk to at most `max_side` px."""
        dlib = self._dlib
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        shape = self.landmarks(rgb, box)
        d = dlib.get_face_chip_details(shape, 64, padding)
        c, half = d.rect.center(), d.rect.width() * inner / 2.0
        side = max(2, round(2.0 * half))
        if max_side:
            side = min(side, int(max_side))
        rect = dlib.drectangle(c.x - half, c.y - half, c.x + half, c.y + half)
        return dlib.extract_image_chip(
            rgb, dlib.chip_details(rect, dlib.chip_dims(side, side), d.angle)
        )

    def embed(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        return np.asarray(self.net.compute_face_descriptor(self.chip(rgb, box)), np.float32)


def facenet_weights_path() -> Path:
    """Where facenet-pytorch keeps the VGGFace2 weights once downloaded (torch's hub home)."""
    torch_home = os.path.expanduser(
        os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    )
    return Path(torch_home) / "checkpoints" / FACENET_FILE


class FacenetMatcher:
    name = "facenet"

    def __init__(self, weights: Path | None = None) -> None:
        import torch

        path = Path(weights) if weights else facenet_weights_path()
        if not path.is_file():
            raise MatcherUnavailable(
                f"the facenet matcher needs the VGGFace2 InceptionResnetV1 weights at {path} "
                f"(facenet-pytorch's {FACENET_FILE}; this tool never downloads them): copy the "
                f"file there, or use --matcher dlib"
            )
        try:
            from facenet_pytorch import InceptionResnetV1
        except Exception as exc:
            raise MatcherUnavailable(f"facenet-pytorch is not importable: {exc}") from exc
        state = torch.load(path, map_location="cpu", weights_only=True)
        # the classification head (logits.*) of the VGGFace2 identities is not needed
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        self.model = InceptionResnetV1(pretrained=None, classify=False).eval()
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            raise MatcherUnavailable(f"not InceptionResnetV1 weights: {path}") from exc
        self._torch = torch

    def embed(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        from facenet_pytorch.models.utils.detect_face import extract_face

        # facenet-pytorch's own crop (margin 14 px of 160, as its MTCNN's examples use)
        face = extract_face(np.ascontiguousarray(rgb), box, image_size=160, margin=14)
        x = (face.float() - 127.5) / 128.0  # fixed_image_standardization
        with self._torch.inference_mode():
            return self.model(x.unsqueeze(0))[0].numpy().astype(np.float32)


def make_matcher(name: str) -> Matcher:
    if name == "dlib":
        return DlibMatcher()
    if name == "facenet":
        return FacenetMatcher()
    raise ValueError(f"unknown matcher {name!r} (dlib or facenet)")


def embeddings(
    table,
    matcher: Matcher,
    cache_dir: Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> np.ndarray:
    """(N, D) embeddings of the table's faces, cached per face table and matcher."""
    cache = Path(cache_dir) / "erc" / f"emb-{matcher.name}-{table.key}.npy"
    if cache.exists():
        emb = np.load(cache)
        if len(emb) == len(table):
            return emb
    out = []
    for path, box in tqdm(
        zip(table.paths, table.boxes, strict=True),
        total=len(table),
        desc=f"embed faces ({matcher.name})",
        unit="img",
        disable=not progress,
    ):
        out.append(matcher.embed(read_rgb(Path(path)), box))
    emb = np.stack(out).astype(np.float32) if out else np.zeros((0, 128), np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, emb)
    log(f"embeddings ({matcher.name}): {len(emb)}; cached {cache}")
    return emb
