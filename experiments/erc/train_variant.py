"""Train a candidate quality VAE on CelebA-10k with another framing of the face, for the ERC.

`escrow vae train` cuts every crop as a square of 1.2 x the MTCNN box. This script trains
the same model with the same training code (vae/train.py: same split, same people held out,
same objective) on crops framed another way, so `experiments/erc/variants.py --framing` can
score LFW framed the same way:

    margin=M    square of (1 + M) x the box (M = 0.2 is the shipped framing)
    margin=M,max_side=S     the same, shrunk to at most S px first (vae/framing.py)
    aligned=P   dlib's 5-point aligned chip with padding P (the matcher's own alignment)
    aligned=P,inner=F,max_side=S   its central fraction F, cut at most S px (#47, #48)

    ESCROW_THREADS=2 .venv/bin/python experiments/erc/train_variant.py --framing aligned=0.25 \
        --out /tmp/vae-aligned.pt --epochs 40 --batch-size 64 --lr 0.002 --schedule cosine

`--contrast standardise|equalise` also takes each crop's brightness and contrast out
(vae.erc.contrast.normalise_contrast, #54); the form travels in the weights' record and
`experiments/erc/variants.py` applies it to the faces it scores. `--relight G` re-lights the
clean training faces by a random gamma of exp(U(-G, G)) (vae.train.TrainConfig.relight, #59),
best with `--degradations blur,resolution,noise` (under-exposure left out).

Never trains on LFW: only the CelebA training split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import vae.train as vt
from escrow.settings import get_settings
from vae.erc.contrast import CONTRAST_FORMS, normalise_contrast
from vae.erc.data import Sample, detect_faces, vae_crops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--framing", required=True, help="margin=M[,max_side=S] or aligned=P[,inner=F][,max_side=S]"
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--schedule", default="cosine")
    ap.add_argument("--denoise", type=float, default=0.5)
    ap.add_argument("--sigma-min", type=float, default=None)
    ap.add_argument("--contrast", choices=CONTRAST_FORMS, default="none")
    ap.add_argument("--relight", type=float, default=0.0, help="vae.train.TrainConfig.relight")
    ap.add_argument("--degradations", default=",".join(vt.CAMERA_FAILURES), help="comma-separated")
    args = ap.parse_args()
    st = get_settings()
    data = st.data_dir / "celeba-10k"
    ids = st.data_dir / "celeba-10k-identity.txt"

    def crop_faces(paths, cfg, cache_dir, log=print):
        """vae.train.crop_faces with the requested framing (the centre face's box)."""
        samples = [Sample(Path(p), "") for p in paths]
        table = detect_faces(samples, cache_dir, log=log)
        gray = normalise_contrast(vae_crops(table, args.framing, cache_dir), args.contrast)
        return gray, list(table.paths)

    vt.crop_faces = crop_faces
    model = vt.VAEConfig().to_dict()
    if args.sigma_min is not None:
        model["sigma_min"] = args.sigma_min
    cfg = vt.TrainConfig(
        data=str(data),
        out=str(args.out),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        identities=str(ids),
        denoise=args.denoise,
        threads=st.threads,
        model=model,
        relight=args.relight,
        degradations=tuple(args.degradations.split(",")),
    )
    # A box framing goes into the record the usual way too (vae.framing.Framing.from_record),
    # so that every scorer, escrow quality and the quality evidence included, frames faces as
    # the model was trained; aligned framings are known only to the ERC's weights_framing.
    parts = dict(kv.split("=") for kv in args.framing.split(","))
    if set(parts) <= {"margin", "max_side"}:
        cfg.margin = float(parts["margin"])
        cfg.max_side = int(parts["max_side"]) if "max_side" in parts else None
    record = vt.train(cfg, st.cache_dir)
    # the framing travels with the weights, so a scorer can frame faces the same way
    import json

    import torch

    payload = torch.load(args.out, map_location="cpu", weights_only=True)
    payload["record"] = json.dumps(
        {**json.loads(payload["record"]), "framing": args.framing, "contrast": args.contrast}
    )
    torch.save(payload, args.out)
    last = record["history"][-1]
    print(f"wrote {args.out}: framing {args.framing}, val -ELBO {last.get('val_loss', np.nan):.1f}")


if __name__ == "__main__":
    main()
