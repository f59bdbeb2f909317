"""Train the shipped recipe on CelebA plus LFW's one-image people (docs/erc.md #66).

The ERC uses only the 1,083 LFW people with at least two images; the 2,716 people with one
image are never evaluated on (no genuine pair can be made of them). Their faces are news
photographs like the probes' -- the same cameras, light, resolution and crowds -- where
CelebA-10k is aligned celebrity portraits at a third of the resolution. This script trains
the shipped model's recipe (its own `train_config`: framing, re-lighting, denoising, lr,
complexity form and gamma) on the CelebA training split *plus* those faces, to measure
whether the domain of the training faces, not the objective, is what holds the VAE back at
f = 0.05. It stays unsupervised: no identity, quality or matcher output is used; the
people evaluated on are never trained on (checked below).

    ESCROW_THREADS=2 .venv/bin/python experiments/erc/train_indomain.py \
        --lfw ../shared/data/lfw --out /tmp/vae-indomain.pt --epochs 40
    .venv/bin/escrow erc --dataset ../shared/data/lfw --out /tmp/erc-indomain \
        --matcher dlib --weights /tmp/vae-indomain.pt --bootstrap 300
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import vae.train as vt
from escrow.settings import get_settings
from vae.erc.data import Sample, _images_in, detect_faces, load_lfw, vae_crops
from vae.score import DEFAULT_WEIGHTS, read_weights


def singleton_samples(lfw: Path) -> list[Sample]:
    """LFW people with exactly one image: never part of the ERC (vae.erc.data.load_lfw)."""
    out = []
    for person in sorted(p for p in lfw.iterdir() if p.is_dir()):
        imgs = _images_in(person)
        if len(imgs) == 1:
            out.append(Sample(imgs[0], person.name))
    evaluated = {s.subject for s in load_lfw(lfw)}
    if evaluated & {s.subject for s in out}:
        raise SystemExit("a person to train on is among those evaluated on")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--copies", type=int, default=1, help="repeat the LFW faces N times")
    args = ap.parse_args()
    st = get_settings()
    record = json.loads(read_weights(DEFAULT_WEIGHTS)["record"])
    cfg = vt.TrainConfig.from_record(
        record,
        data=str(st.data_dir / "celeba-10k"),
        identities=str(st.data_dir / "celeba-10k-identity.txt"),
    )
    cfg.out, cfg.epochs, cfg.threads = str(args.out), args.epochs, st.threads
    cfg.complexity_gamma = "auto"  # as the shipped weights were restated (#62)
    framing = f"margin={cfg.margin:g},max_side={cfg.max_side}"

    samples = singleton_samples(args.lfw)
    table = detect_faces(samples, st.cache_dir)
    lfw_crops = vae_crops(table, framing, st.cache_dir)
    print(f"LFW one-image people: {len(samples)} images, {len(lfw_crops)} faces ({framing})")

    original = vt.crop_faces
    added = False  # the first call is the training split, the second the held-out faces

    def crop_faces(paths, cfg, cache_dir, log=print):
        """vt.crop_faces; the first call (the training split) gets the LFW faces added."""
        nonlocal added
        crops, kept = original(paths, cfg, cache_dir, log)
        if not added:
            added = True
            extra = np.concatenate([lfw_crops] * args.copies)
            crops = np.concatenate([crops, extra])
            kept = kept + [f"lfw:{p}" for p in table.paths] * args.copies
            log(f"training crops: {len(crops)} ({len(extra)} from LFW)")
        return crops, kept

    vt.crop_faces = crop_faces
    out = vt.train(cfg, st.cache_dir)
    last = out["history"][-1]
    print(f"wrote {args.out}: val -ELBO {last.get('val_loss', np.nan):.1f}")


if __name__ == "__main__":
    main()
