"""The `escrow` command line: one Typer app, each sub-command a thin call into a package.

Errors a user can cause (a missing file, a bad weights file, a broken install) end as one
plain line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from escrow.settings import get_settings

app = typer.Typer(
    help="keyframe-escrow: one sealed best-quality face crop per passer-by.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
vae_app = typer.Typer(help="The face-quality VAE.", no_args_is_help=True)
app.add_typer(vae_app, name="vae")
keys_app = typer.Typer(help="The escrow authority's keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
db_app = typer.Typer(help="The vault's SQL index (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _err(msg: str) -> None:
    typer.echo(f"escrow: {msg}", err=True)


def _setup_torch() -> None:
    threads = get_settings().threads
    if threads:
        import torch

        torch.set_num_threads(threads)


def _need_detector() -> None:
    from vae.faces import FacenetMissing, require_facenet

    try:
        require_facenet()
    except FacenetMissing as exc:
        raise UserError(str(exc), code=3) from exc


def _scorer(weights: Path | None, samples: int):
    from vae.score import QualityScorer, WeightsError

    try:
        return QualityScorer(weights or get_settings().vae_weights, samples=samples)
    except WeightsError as exc:
        raise UserError(str(exc)) from exc


@app.command()
def quality(
    images: Annotated[list[Path], typer.Argument(help="Image files to score.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    weights: Annotated[Path | None, typer.Option(help="VAE weights (default: shipped).")] = None,
    samples: Annotated[int, typer.Option("--samples", "-L", min=1, help="Latent samples L.")] = 10,
    margin: Annotated[float, typer.Option(help="Crop margin around the MTCNN box.")] = 0.2,
) -> None:
    """Score the main (largest) face of each image: `<path>\\t<score>`, higher is better.

    The score is the VAE's log reconstruction probability with the complexity floor
    (vae/score.py); `--json` also gives the paper's raw log reconstruction probability.
    """
    _need_detector()
    _setup_torch()
    from vae.data import read_rgb
    from vae.faces import FaceDetector, cut_crop, largest_face

    scorer = _scorer(weights, samples)
    detector = FaceDetector()
    results: list[dict] = []
    crops = []
    for path in images:
        entry: dict = {"path": str(path), "score": None, "box": None}
        try:
            rgb = read_rgb(path)
            face = largest_face(detector.detect(rgb))
            if face is None:
                raise ValueError(f"no face found in {path}")
            entry["box"] = [round(v, 1) for v in face.box]
            crops.append((len(results), cut_crop(rgb, face.box, margin)))
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc)
        results.append(entry)
    if crops:
        from vae.data import to_gray64

        grays = np.stack([to_gray64(c, "rgb") for _, c in crops])
        log_rp = scorer.log_rp(grays)
        quality = log_rp - scorer.complexity_penalty(grays)
        for (i, _), q, lrp in zip(crops, quality, log_rp, strict=True):
            results[i]["score"] = round(float(q), 3)
            results[i]["log_rp"] = round(float(lrp), 3)
    failed = [r for r in results if "error" in r]
    for r in failed:
        _err(r["error"])
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" not in r:
                typer.echo(f"{r['path']}\t{r['score']}")
    if failed:
        raise typer.Exit(1)


@vae_app.command("train")
def vae_train(
    data: Annotated[Path, typer.Option(help="Folder of face images (searched recursively).")],
    out: Annotated[Path, typer.Option(help="Weights file to write.")],
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=1)] = 144,
    lr: Annotated[float, typer.Option(min=0.0)] = 0.005,
    schedule: Annotated[
        str, typer.Option(help="Learning rate: 'constant' (paper) or 'cosine' decay to 0.")
    ] = "constant",
    seed: int = 0,
    holdout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Held-out fraction.")] = 0.1,
    identities: Annotated[
        Path | None, typer.Option(help="`image identity` file: hold out whole people.")
    ] = None,
    denoise: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of degraded encoder inputs.")
    ] = 0.5,
    limit: Annotated[int | None, typer.Option(help="Use at most N training images.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the per-epoch checkpoint.")] = False,
) -> None:
    """Train the quality VAE (paper defaults: Adam, lr 0.005, batch 144, 10 epochs)."""
    if not data.is_dir():
        raise UserError(f"not a folder: {data}")
    if identities is not None and not identities.is_file():
        raise UserError(f"no such identity file: {identities}")
    _need_detector()
    _setup_torch()
    from vae.train import TrainConfig, train

    cfg = TrainConfig(
        data=str(data),
        out=str(out),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule,
        seed=seed,
        holdout=holdout,
        identities=str(identities) if identities else None,
        denoise=denoise,
        limit=limit,
        threads=get_settings().threads,
    )
    try:
        record = train(cfg, get_settings().cache_dir, resume=resume, log=typer.echo)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    last = record["history"][-1] if record["history"] else {}
    typer.echo(
        f"wrote {out} ({record['parameters']} parameters, {record['n_train_faces']} faces, "
        f"final -ELBO {last.get('loss', float('nan')):.1f})"
    )


@app.command()
def demo(
    weights: Annotated[Path | None, typer.Option(help="VAE weights (default: shipped).")] = None,
) -> None:
    """Score a real face photo that ships with scikit-image, and degraded copies of it."""
    _need_detector()
    _setup_torch()
    from escrow.sample import sample_face_table

    scorer = _scorer(weights, 10)
    typer.echo("Face quality of the astronaut photo that ships with scikit-image, of degraded")
    typer.echo("copies of its face crop, and of two crops that are not faces (higher = better;")
    typer.echo("log RP = the paper's log reconstruction probability, before the complexity floor):")
    typer.echo(f"\n  {'crop':<28s} {'quality':>10s} {'log RP':>10s}")
    for name, quality, log_rp in sample_face_table(scorer):
        typer.echo(f"  {name:<28s} {quality:10.1f} {log_rp:10.1f}")


@keys_app.command("init")
def keys_init(
    dev: Annotated[
        bool, typer.Option("--dev", help="DEVELOPMENT MODE: keep the master key in a 0600 file.")
    ] = False,
    suite: Annotated[str, typer.Option(help="HPKE suite: x25519 or mlkem768-x25519.")] = "x25519",
    epoch_hours: Annotated[int, typer.Option(min=1, help="Length of a key epoch.")] = 24,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs to create from now.")] = 7,
    threshold: Annotated[int, typer.Option(min=1, help="k: shares needed to open.")] = 2,
    trustees: Annotated[int, typer.Option(min=1, help="n: shares handed out.")] = 3,
) -> None:
    """Create the escrow authority: signing key, master key, signed epoch keys."""
    from datetime import UTC, datetime

    from vault.keys import KeyStore, KeyStoreError

    if threshold > trustees:
        raise UserError("--threshold must not exceed --trustees")
    ks = KeyStore(get_settings().keys_dir)
    try:
        shares = ks.init(
            datetime.now(UTC),
            suite=suite,
            epoch_hours=epoch_hours,
            epochs_ahead=epochs,
            k=threshold,
            n=trustees,
            dev=dev,
        )
    except (KeyStoreError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    typer.echo(f"escrow authority created in {ks.root} ({suite}, {epochs} epochs)")
    if dev:
        typer.echo("DEVELOPMENT MODE: the master key is stored in master.key (0600).")
    else:
        typer.echo(f"Master-key shares ({threshold} of {trustees} needed to open), shown ONCE:")
        for i, share in enumerate(shares, 1):
            typer.echo(f"  trustee {i}: {share}")


@keys_app.command("export-camera")
def keys_export_camera(
    out: Annotated[Path, typer.Argument(help="Camera keyring file to write (public only).")],
) -> None:
    """Write the public material a camera needs to seal: authority key + signed epoch keys."""
    from vault.keys import KeyStore, KeyStoreError

    try:
        ring = KeyStore(get_settings().keys_dir).camera_keyring()
    except KeyStoreError as exc:
        raise UserError(str(exc)) from exc
    out.write_text(json.dumps(ring, indent=1))
    typer.echo(f"wrote {out}: {len(ring['epochs'])} signed epoch public keys, no private key")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from vault.db import upgrade

    upgrade(get_settings().database_url, revision)


@db_app.command("downgrade")
def db_downgrade(revision: str = "base") -> None:
    """Revert migrations down to REVISION (default: an empty database)."""
    from vault.db import downgrade

    downgrade(get_settings().database_url, revision)


def main() -> None:
    try:
        app()
    except UserError as exc:
        _err(str(exc))
        sys.exit(exc.code)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
