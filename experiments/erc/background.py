"""Train a *background* VAE on generic image patches, for a learned complexity correction.

Serra et al. (ICLR 2020) divide a likelihood by that of a generic lossless compressor (PNG);
Schirrmeister et al. (NeurIPS 2020) show the same ratio works better when the "compressor"
is a model of the same family trained on general images: its log-likelihood measures the
low-level complexity of a crop (smoothness, texture, noise) that every likelihood model is
dominated by, so  log RP_face(x) - log RP_background(x)  keeps only what is specific to
faces. This script trains that background model: the quality VAE's own architecture and
recipe (vae/train.py's train_step), on random squares of two sources that hold no LFW person:

- the real street clip (`video/arcade-1080p.mp4`): walls, floors, clothes, small faces;
- the face model's own CelebA training images at random positions and scales (parts of faces,
  hair, background), never a held-out image.

Each patch goes through the face model's preprocessing (shrunk to its resolution cap, then
the shared 64x64 gray resize), so the two models see crops with the same pixel statistics.

    ESCROW_THREADS=1 .venv/bin/python experiments/erc/background.py --out /tmp/vae-bg.pt
    .venv/bin/python experiments/erc/variants.py --summary docs/erc/summary.json \
        --background /tmp/vae-bg.pt --bootstrap 0
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import vae.train as vt
from escrow.settings import get_settings
from vae.data import read_rgb, to_batch, to_gray64, uint8_gray64
from vae.framing import Framing
from vae.model import VAE, VAEConfig, count_parameters
from vae.score import DEFAULT_WEIGHTS, complexity_stats, read_weights


def random_squares(
    image: np.ndarray, n: int, lo: int, hi: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """`n` random squares of a log-uniform side in [lo, hi] px, anywhere in the image."""
    h, w = image.shape[:2]
    out = []
    for _ in range(n):
        s = int(round(math.exp(rng.uniform(math.log(lo), math.log(min(hi, h, w))))))
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        out.append(image[y : y + s, x : x + s])
    return out


def generic_patches(
    video: Path, celeba: list[Path], n: int, framing: Framing, seed: int
) -> np.ndarray:
    """Half street-clip squares, half CelebA squares -> (n, 64, 64) uint8 gray."""
    rng = np.random.default_rng(seed)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cap.release()
    if not frames:
        raise SystemExit(f"no frames read from {video}")
    grays = []
    per = math.ceil((n // 2) / len(frames))
    for f in frames:
        grays += [to_gray64(framing.cap(p)) for p in random_squares(f, per, 24, 240, rng)]
    grays = grays[: n // 2]
    picks = rng.choice(len(celeba), size=n - len(grays), replace=True)
    for i in picks:
        img = cv2.cvtColor(read_rgb(celeba[i]), cv2.COLOR_RGB2GRAY)
        grays += [to_gray64(framing.cap(p)) for p in random_squares(img, 1, 16, 89, rng)]
    return uint8_gray64(grays)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--face-weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--patches", type=int, default=16000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--denoise", type=float, default=0.5)
    ap.add_argument("--latent-dim", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--source",
        choices=["generic", "perturbed"],
        default="generic",
        help="generic: street and CelebA squares; perturbed: the face model's own training "
        "crops with a fraction --mutation of pixels replaced by uniform noise, fresh each "
        "epoch (Ren et al., NeurIPS 2019)",
    )
    ap.add_argument("--mutation", type=float, default=0.2)
    args = ap.parse_args()
    st = get_settings()
    torch.set_num_threads(st.threads or 2)

    face_record = json.loads(read_weights(args.face_weights)["record"])
    cfg = vt.TrainConfig.from_record(
        face_record,
        data=str(st.data_dir / "celeba-10k"),
        identities=str(st.data_dir / "celeba-10k-identity.txt"),
    )
    train_paths, _ = vt.training_split(cfg)  # the face model's own training images only
    framing = Framing.from_record(face_record)
    t0 = time.time()
    video = st.data_dir / "video" / "arcade-1080p.mp4"
    if args.source == "generic":
        patches = generic_patches(video, train_paths, args.patches, framing, args.seed)
    else:
        patches, _ = vt.crop_faces(train_paths, cfg, st.cache_dir)
    print(f"{len(patches)} patches in {time.time() - t0:.0f} s", flush=True)

    vt._seed_everything(args.seed)
    model = VAE(VAEConfig(**{**VAEConfig().to_dict(), "latent_dim": args.latent_dim}))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    data = to_batch(patches)
    n_val = 500
    val, data = data[:n_val], data[n_val:]
    steps = math.ceil(len(data) / args.batch_size)
    model.train()
    history = []
    for epoch in range(args.epochs):
        perm = torch.randperm(len(data))
        tot = 0.0
        for step in range(steps):
            vt.set_cosine_lr(opt, args.lr, (epoch * steps + step) / (args.epochs * steps))
            idx = perm[step * args.batch_size : (step + 1) * args.batch_size]
            x = data[idx]
            if args.source == "perturbed":
                hit = torch.rand_like(x) < args.mutation
                x = torch.where(hit, torch.rand_like(x), x)
            _, res = vt.train_step(model, opt, x, args.denoise)
            tot += res["loss"].item() * len(idx)
        v = vt._evaluate(model, val, 256)
        history.append({"epoch": epoch + 1, "loss": tot / len(data), "val_loss": v["loss"]})
        print(json.dumps({k: round(x, 1) for k, x in history[-1].items()}), flush=True)
    model.eval()
    record = {
        "train_config": {
            "margin": cfg.margin,
            "max_side": cfg.max_side,
            "complexity": "floor",
            "background_of": str(args.face_weights),
            "patches": args.patches,
            "source": args.source,
            "mutation": args.mutation if args.source == "perturbed" else None,
            "epochs": args.epochs,
            "denoise": args.denoise,
        },
        "history": history,
        "parameters": count_parameters(model),
        **complexity_stats(patches.astype(np.float32) / 255.0),
    }
    vt.save_weights(model, args.out, record)
    print(f"wrote {args.out} in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
