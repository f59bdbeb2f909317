"""Train the quality VAE on a folder of face images (paper defaults: Adam, lr 0.005,
batch 144, 10 epochs).

Faces are cut with MTCNN first; the crops (already 64x64 gray, uint8) are cached under the
cache directory keyed by the file list and the cropping settings, so a second run does not
detect again. The last `holdout` fraction of the sorted file list is never trained on (and,
given an identity file, neither is anyone who appears in it): tests and evaluation score
faces the model has not seen.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vae.data import list_images, read_rgb, save_npz_atomically, to_batch, to_gray64, uint8_gray64
from vae.degrade import CAMERA_FAILURES, check_degradations, random_degradations
from vae.model import VAE, VAEConfig, count_parameters
from vae.score import (
    COMPLEXITY_FORMS,
    WEIGHTS_FORMAT,
    complexity_stats,
    light_neutral_gamma,
    parse_gamma,
    read_weights,
)

CROP_VERSION = 1  # bump when cutting/preprocessing changes, to invalidate caches


@dataclass
class TrainConfig:
    data: str
    out: str
    epochs: int = 10
    batch_size: int = 144
    lr: float = 0.005
    schedule: str = "constant"  # or "cosine": decay lr to 0 over the run (not in the paper)
    seed: int = 0
    holdout: float = 0.1
    # Denoising-VAE training: this fraction of each batch is shown to the encoder degraded,
    # while the likelihood is always of the clean face. 0 gives the paper's plain VAE.
    denoise: float = 0.5
    # Geometric jitter of the training crops (not in the paper): each face is shifted by up to
    # `jitter` x its side, scaled by 1 +- jitter and turned by +- jitter radians, so that the
    # likelihood does not punish the few pixels a detector box moves between two shots of an
    # equally good face. 0: off.
    jitter: float = 0.0
    # Photometric jitter of the clean faces (not in the paper): each face,
    # target included, is re-lit by a gamma of exp(U(-relight, relight)), so that the
    # likelihood learns a dark-skinned or dimly lit face as a face, not as a defect. The
    # exposure failure of the denoising objective is then best left out. 0: off.
    relight: float = 0.0
    # Which failures the denoising objective draws (vae/degrade.py); the default is the four
    # camera failures. The shipped model leaves exposure out and re-lits instead.
    degradations: tuple[str, ...] = CAMERA_FAILURES
    # beta of a beta-VAE (Higgins et al. 2017): the KL term's weight in the training loss;
    # 1 is the paper's ELBO. Above 1 the code keeps less of each face, so the decoder redraws
    # a more typical one and an unusual face (pose, expression) reconstructs worse.
    kl_weight: float = 1.0
    identities: str | None = None
    # Framing of the training crops (vae/framing.py): a square of (1 + margin) x the box,
    # shrunk to at most max_side px; the scorer frames every face it scores the same way.
    margin: float = 0.2
    max_side: int | None = None
    complexity: str = "bounded"  # the score's complexity correction (vae/score.py)
    # the light at which it counts the code length: a number, or "auto" for the training
    # crops' light-neutral gamma (vae/score.py); "1" is the plain x
    complexity_gamma: str = "1"
    min_face_size: int = 20
    limit: int | None = None
    threads: int | None = None
    model: dict = field(default_factory=lambda: VAEConfig().to_dict())

    @classmethod
    def from_record(cls, record: dict, **moved: str | None) -> TrainConfig:
        """The config a weights file was trained with (fields this version does not know are
        dropped); `moved` overrides paths that have moved since, where given."""
        tc = {k: v for k, v in record["train_config"].items() if k in cls.__dataclass_fields__}
        return cls(**{**tc, **{k: v for k, v in moved.items() if v}})


def split_holdout(
    paths: list[Path], holdout: float, identities: dict[str, str] | None
) -> tuple[list[Path], list[Path]]:
    """Last `holdout` fraction of the sorted list is held out; with identities, every image of
    a held-out person is dropped from training too (unseen people, not just unseen images)."""
    n_hold = int(round(len(paths) * holdout))
    train, held = paths[: len(paths) - n_hold], paths[len(paths) - n_hold :]
    if identities:
        held_ids = {identities.get(p.name) for p in held} - {None}
        train = [p for p in train if identities.get(p.name) not in held_ids]
    return train, held


def training_split(cfg: TrainConfig) -> tuple[list[Path], list[Path]]:
    """The images a config trains on and the held-out ones, as `train` and
    `restate_complexity` must both see them."""
    paths = list_images(Path(cfg.data))
    if not paths:
        raise ValueError(f"no images found under {cfg.data}")
    ids = read_identities(cfg.identities) if cfg.identities else None
    train_paths, held_paths = split_holdout(paths, cfg.holdout, ids)
    if cfg.limit:
        train_paths = train_paths[: cfg.limit]
    return train_paths, held_paths


def read_identities(path: str | Path) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = parts[1]
    return out


def _cache_key(paths: list[Path], cfg: TrainConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CROP_VERSION, cfg.margin, cfg.max_side, cfg.min_face_size]).encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:20]


def crop_faces(
    paths: list[Path], cfg: TrainConfig, cache_dir: Path, log: Callable[[str], None] = print
) -> tuple[np.ndarray, list[str]]:
    """MTCNN-crop the largest face of each image -> (N, 64, 64) uint8 and the kept paths."""
    cache = Path(cache_dir) / f"crops-{_cache_key(paths, cfg)}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        log(f"face crops: {len(z['crops'])} from cache {cache}")
        return z["crops"], [str(s) for s in z["paths"]]
    from escrow.detect import FaceDetector, largest_face
    from vae.framing import Framing

    framing = Framing(cfg.margin, cfg.max_side)
    det = FaceDetector(min_face_size=cfg.min_face_size)
    grays, kept, missed = [], [], 0
    for p in tqdm(paths, desc="MTCNN crops", unit="img"):
        try:
            rgb = read_rgb(p)
        except (OSError, ValueError):
            missed += 1
            continue
        face = largest_face(det.detect(rgb))
        if face is None:
            missed += 1
            continue
        grays.append(to_gray64(framing.from_image(rgb, face.box), "rgb"))
        kept.append(str(p))
    if not grays:
        raise ValueError("no face found in any training image")
    crops = uint8_gray64(grays)
    save_npz_atomically(cache, crops=crops, paths=np.array(kept))
    log(f"face crops: {len(kept)} kept, {missed} without a face or unreadable; cached {cache}")
    return crops, kept


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def plot_losses(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ep = [h["epoch"] for h in history]
    ax[0].plot(ep, [h["loss"] for h in history], "o-", label="-ELBO (train)")
    if all("val_loss" in h for h in history):
        ax[0].plot(ep, [h["val_loss"] for h in history], "s--", label="-ELBO (held out)")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("nats per image")
    ax[0].legend()
    ax[1].plot(ep, [h["rec"] for h in history], "o-", label="E[log p(x|z)]")
    ax[1].plot(ep, [h["kl"] for h in history], "o-", label="KL(q||p)")
    ax[1].set_xlabel("epoch")
    ax[1].legend()
    fig.suptitle("VAE training")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def _evaluate(model: VAE, data: torch.Tensor, batch: int) -> dict[str, float]:
    model.eval()
    g = torch.Generator().manual_seed(1234)
    tot = {"loss": 0.0, "rec": 0.0, "kl": 0.0}
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
        for i in range(0, len(data), batch):
            out = model(data[i : i + batch])
            n = len(data[i : i + batch])
            for k in tot:
                tot[k] += float(out[k]) * n
    model.train()
    return {k: v / max(1, len(data)) for k, v in tot.items()}


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.stem + ".ckpt.pt")


def set_cosine_lr(opt: torch.optim.Optimizer, base_lr: float, progress: float) -> None:
    """Cosine decay from base_lr to 0 over the run (progress in [0, 1))."""
    for group in opt.param_groups:
        group["lr"] = 0.5 * base_lr * (1.0 + math.cos(math.pi * progress))


def random_jitter(x: torch.Tensor, amount: float) -> torch.Tensor:
    """Small random similarity transforms of (B, 1, H, W) faces: shift up to `amount` x the
    side, scale 1 +- amount, rotation +- amount rad; edges filled by reflection."""
    b = len(x)
    u = (torch.rand(b, 4) * 2 - 1) * amount
    scale, angle = 1 + u[:, 0], u[:, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, 2 * u[:, 2]], 1), torch.stack([sin, cos, 2 * u[:, 3]], 1)], 1
    )
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def train_step(
    model: VAE,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    denoise: float,
    jitter: float = 0.0,
    degradations: Sequence[str] = CAMERA_FAILURES,
    kl_weight: float = 1.0,
    relight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One step of the (denoising) ELBO on a batch of clean faces, randomly mirrored
    (faces are left-right symmetric) and, with `jitter`, slightly moved; returns the batch as
    trained on and the losses."""
    flip = torch.rand(len(x)) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if jitter:
        x = random_jitter(x, jitter)
    if relight:
        gamma = torch.exp((torch.rand(len(x), 1, 1, 1) * 2 - 1) * relight)
        x = x.clamp(min=0.0) ** gamma
    seen = random_degradations(x, denoise, kinds=tuple(degradations)) if denoise else x
    res = model(seen, target=x, kl_weight=kl_weight)
    opt.zero_grad(set_to_none=True)
    res["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1000.0)
    opt.step()
    return x, res


def train(
    cfg: TrainConfig, cache_dir: Path, resume: bool = False, log: Callable[[str], None] = print
) -> dict:
    """Train and write `cfg.out` (weights + config + training record); returns the record."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.denoise:
        check_degradations(cfg.degradations)
    if cfg.kl_weight <= 0:
        raise ValueError(f"the KL weight must be positive, got {cfg.kl_weight}")
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    train_paths, held_paths = training_split(cfg)
    crops, kept = crop_faces(train_paths, cfg, cache_dir, log)
    # A few hundred held-out crops give an honest validation loss per epoch.
    val_crops, _ = crop_faces(held_paths[:500], cfg, cache_dir, log) if held_paths else (None, [])

    _seed_everything(cfg.seed)
    model = VAE(VAEConfig.from_dict(cfg.model))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if cfg.schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown lr schedule: {cfg.schedule}")
    if cfg.complexity not in COMPLEXITY_FORMS:
        raise ValueError(
            f"unknown complexity correction: {cfg.complexity} ({', '.join(COMPLEXITY_FORMS)})"
        )
    parse_gamma(cfg.complexity_gamma)  # refused before any training, not after it
    history: list[dict] = []
    start_epoch = 0
    ckpt = checkpoint_path(out)
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history, start_epoch = state["history"], state["epoch"]
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        log(f"resumed from {ckpt} after epoch {start_epoch}")

    data = to_batch(crops)
    val = to_batch(val_crops) if val_crops is not None and len(val_crops) else None
    n = len(data)
    steps = math.ceil(n / cfg.batch_size)
    t0 = time.time()
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        perm = torch.randperm(n)
        sums = {"loss": 0.0, "rec": 0.0, "kl": 0.0}
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
        for step in bar:
            if cfg.schedule == "cosine":
                set_cosine_lr(opt, cfg.lr, (epoch * steps + step) / (cfg.epochs * steps))
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x, res = train_step(
                model,
                opt,
                data[idx],
                cfg.denoise,
                cfg.jitter,
                cfg.degradations,
                cfg.kl_weight,
                cfg.relight,
            )
            for k in sums:
                sums[k] += res[k].item() * len(x)
            bar.set_postfix(loss=f"{sums['loss'] / ((step * cfg.batch_size) + len(x)):.1f}")
        rec = {"epoch": epoch + 1, **{k: v / n for k, v in sums.items()}}
        if val is not None:
            rec.update({f"val_{k}": v for k, v in _evaluate(model, val, 256).items()})
        history.append(rec)
        log(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in rec.items()}))
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "history": history,
                "epoch": epoch + 1,
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(),
            },
            ckpt,
        )
        plot_losses(history, out.with_name(out.stem + "-loss.png"))

    record = {
        "train_config": asdict(cfg),
        "history": history,
        "n_train_images": len(train_paths),
        "n_train_faces": len(kept),
        "n_holdout_images": len(held_paths),
        "holdout_first": held_paths[0].name if held_paths else None,
        "parameters": count_parameters(model),
        **_complexity_record(crops, cfg.complexity_gamma, log),
        "torch": torch.__version__,
    }
    log(f"trained in {time.time() - t0:.0f} s")
    model.eval()
    save_weights(model, out, record)
    return record


def _complexity_record(
    crops: np.ndarray, gamma: float | str, log: Callable[[str], None]
) -> dict[str, float]:
    """The score's code-length statistics of the training crops (uint8) at `gamma`, "auto"
    resolved on those same crops: what training and `restate_complexity` both store."""
    x = crops.astype(np.float32) / 255.0
    gamma = parse_gamma(gamma)
    if gamma == "auto":
        gamma = light_neutral_gamma(x)
        log(f"light-neutral gamma of the {len(x)} training crops: {gamma:g}")
    return complexity_stats(x, float(gamma))


def restate_complexity(
    path: Path,
    form: str,
    cache_dir: Path,
    data: str | None = None,
    identities: str | None = None,
    log: Callable[[str], None] = print,
    gamma: float | str | None = None,
) -> dict:
    """Switch a trained weights file to another complexity form without retraining.

    The code-length statistics are re-derived from the very crops the weights were trained
    on (same files, split and framing, from the weights' own training config; the crop cache
    makes this cheap), and the stored median is checked against them, so a bound can never
    come from other faces than the model saw. `gamma` (a number, or "auto" for
    `light_neutral_gamma` of those crops) changes the light at which the code length is
    measured; None keeps the weights' own. Returns the new record."""
    if form not in COMPLEXITY_FORMS:
        raise ValueError(f"unknown complexity correction: {form} ({', '.join(COMPLEXITY_FORMS)})")
    payload = read_weights(path)
    record = json.loads(payload.get("record") or "{}")
    if not record.get("train_config"):
        raise ValueError(f"{path} has no training config to find its training faces by")
    cfg = TrainConfig.from_record(record, data=data, identities=identities)
    if gamma is not None:
        parse_gamma(gamma)  # refused before the crops are read
    crops, _ = crop_faces(training_split(cfg)[0], cfg, cache_dir, log)
    old_gamma = float(record.get("complexity_gamma", 1.0))
    kept = complexity_stats(crops.astype(np.float32) / 255.0, old_gamma)
    ref = kept["complexity_ref_bits"]
    if record.get("complexity_ref_bits") not in (None, ref):
        raise ValueError(
            f"the faces under {cfg.data} are not the ones {path} was trained on (median code "
            f"length {ref:.0f} bits, the weights say {record['complexity_ref_bits']:.0f})"
        )
    record.update(kept if gamma is None else _complexity_record(crops, gamma, log))
    new_gamma = record["complexity_gamma"]
    was = record["train_config"].get("complexity", "floor")  # as the scorer reads it
    change = {"from": was, "to": form}
    if new_gamma != old_gamma:
        change.update({"gamma_from": old_gamma, "gamma_to": new_gamma})
    record.setdefault("complexity_changes", []).append(change)
    record["train_config"] = {**record["train_config"], "complexity": form}
    payload["record"] = json.dumps(record)
    _write_atomically(payload, Path(path))
    return record


def save_weights(model: VAE, path: Path, record: dict) -> None:
    """Weights file: plain tensors + JSON-able metadata, loadable with weights_only=True."""
    payload = {
        "format": WEIGHTS_FORMAT,
        "config": model.cfg.to_dict(),
        "state_dict": model.state_dict(),
        "record": json.dumps(record),
    }
    _write_atomically(payload, Path(path))


def _write_atomically(payload: dict, path: Path) -> None:
    """A weights file is replaced whole or not at all: a crash mid-write loses nothing."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
