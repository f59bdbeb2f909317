"""Fine-tune a quality VAE on the best fraction of its own CelebA training crops (docs/erc.md #24).

The paper trains the VAE on *high-quality* faces. CelebA-10k also holds turned heads, hands
and hats; this asks whether a model that has seen only the faces it already likes best
(ranked by its own quality score, no identities, no LFW) becomes stricter where recognition
fails. Same split, framing, objective and augmentation as `escrow vae train`:

    ESCROW_THREADS=2 .venv/bin/python experiments/erc/finetune_best.py --keep 0.7 \
        --epochs 10 --lr 0.0005 --out /tmp/vae-best70.pt
    .venv/bin/python experiments/erc/variants.py --summary docs/erc/summary.json \
        --weights /tmp/vae-best70.pt
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from escrow.settings import get_settings
from vae.data import to_batch
from vae.score import QualityScorer, load_vae
from vae.train import (
    TrainConfig,
    crop_faces,
    save_weights,
    set_cosine_lr,
    train_step,
    training_split,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None, help="start from (default: shipped)")
    ap.add_argument("--keep", type=float, default=0.7, help="fraction of best crops kept")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.0005)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--holdout", type=float, default=None, help="held-out fraction (default: the weights')"
    )
    args = ap.parse_args()
    torch.set_num_threads(get_settings().threads or 2)
    torch.manual_seed(1)

    model, record = load_vae(args.weights)
    cfg = TrainConfig.from_record(record)
    if args.holdout is not None:  # more (or fewer) training faces than the weights saw (#46)
        cfg.holdout = args.holdout
    crops, _ = crop_faces(training_split(cfg)[0], cfg, get_settings().cache_dir)
    q = QualityScorer(args.weights).score_gray(crops.astype(np.float32) / 255.0)
    best = np.sort(np.argsort(-q)[: int(round(args.keep * len(q)))])
    print(f"{len(q)} training crops, keeping the best {len(best)} (quality >= {q[best].min():.0f})")

    data = to_batch(crops[best])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n, bs = len(data), cfg.batch_size
    steps = math.ceil(n / bs)
    t0 = time.time()
    for epoch in range(args.epochs):
        perm, total = torch.randperm(n), 0.0
        for step in range(steps):
            set_cosine_lr(opt, args.lr, (epoch * steps + step) / (args.epochs * steps))
            x, res = train_step(model, opt, data[perm[step * bs : (step + 1) * bs]], cfg.denoise)
            total += res["loss"].item() * len(x)
        print(f"epoch {epoch + 1}: -ELBO {total / n:.1f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    record = {**record, "finetune_best": {"keep": args.keep, "epochs": args.epochs, "lr": args.lr}}
    save_weights(model, args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
