"""Train the quality VAE with a wider decoder, the shipped recipe otherwise (docs/erc.md #43).

The shipped decoder narrows to 16 and 8 channels at 32x32 and 64x64 so that its L = 10
passes per crop stay cheap on a camera. Its validation ELBO was still improving at epoch 80
and stayed above the training ELBO (the model underfits, it does not overfit), so this asks
whether more capacity where the pixels are makes the likelihood more selective:

    ESCROW_THREADS=1 .venv/bin/python experiments/erc/train_decoder.py \
        --dec-channels 256,128,128,64,32,16 --epochs 40 --out /tmp/vae-wide.pt
    .venv/bin/python experiments/erc/variants.py --summary /tmp/erc-full/summary.json \
        --weights /tmp/vae-wide.pt

Same split (people held out), framing, denoising objective and complexity statistics as the
shipped weights' own record; never trains on LFW.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from escrow.settings import get_settings
from vae.model import VAE, VAEConfig, count_parameters
from vae.score import load_vae
from vae.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dec-channels", required=True, help="6 widths, e.g. 256,128,128,64,32,16")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    st = get_settings()

    _, record = load_vae(None)  # the shipped recipe, paths as on this machine
    base = TrainConfig.from_record(
        record,
        data=str(st.data_dir / "celeba-10k"),
        identities=str(st.data_dir / "celeba-10k-identity.txt"),
    )
    widths = tuple(int(c) for c in args.dec_channels.split(","))
    model = dataclasses.replace(VAEConfig.from_dict(base.model), dec_channels=widths)
    print(f"decoder {widths}: {count_parameters(VAE(model)):,} parameters")
    cfg = dataclasses.replace(
        base, out=str(args.out), epochs=args.epochs, threads=st.threads, model=model.to_dict()
    )
    last = train(cfg, st.cache_dir)["history"][-1]
    print(f"wrote {args.out}: val -ELBO {last.get('val_loss', float('nan')):.1f}")


if __name__ == "__main__":
    main()
