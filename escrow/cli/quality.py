"""The quality model's commands: `escrow quality` (score faces), `escrow vae train` and
`escrow vae complexity`, and `escrow erc` (does the VAE's quality predict recognition?
Error-versus-reject curves on real identities, Baert et al. 2021, section 5; the work is in
vae/erc/run.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from escrow.cli.app import UserError, app, err, load_scorer, need_detector, setup_torch, vae_app
from escrow.settings import get_settings


@app.command()
def quality(
    images: Annotated[list[Path], typer.Argument(help="Image files to score.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    weights: Annotated[Path | None, typer.Option(help="VAE weights (default: shipped).")] = None,
    samples: Annotated[int, typer.Option("--samples", "-L", min=1, help="Latent samples L.")] = 10,
    margin: Annotated[
        float, typer.Option(help="Margin of the crop cut around the MTCNN box (as captured).")
    ] = 0.2,
) -> None:
    """Score the main (largest) face of each image: `<path>\\t<score>`, higher is better.

    The score is the VAE's log reconstruction probability with the complexity correction
    its weights were trained for (vae/score.py); `--json` also gives the paper's raw log
    reconstruction probability.
    """
    need_detector()
    setup_torch()
    from escrow.detect import FaceDetector, largest_face
    from vae.data import read_rgb
    from vae.framing import cut_crop

    scorer = load_scorer(weights, samples)
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
            crops.append(
                (len(results), scorer.prepare(cut_crop(rgb, face.box, margin), "rgb", margin))
            )
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc)
        results.append(entry)
    if crops:
        import numpy as np

        grays = np.stack([g for _, g in crops])
        log_rp = scorer.log_rp(grays)
        quality = log_rp + scorer.complexity_correction(grays)
        for (i, _), q, lrp in zip(crops, quality, log_rp, strict=True):
            results[i]["score"] = round(float(q), 3)
            results[i]["log_rp"] = round(float(lrp), 3)
    failed = [r for r in results if "error" in r]
    for r in failed:
        err(r["error"])
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
    jitter: Annotated[
        float,
        typer.Option(min=0.0, max=0.2, help="Random shift/scale/turn of training crops (0: off)."),
    ] = 0.0,
    relight: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.5,
            help="Re-light the clean training faces by a random gamma of exp(U(-G, G)) (0: off); "
            "pair it with --degradations blur,resolution,noise.",
        ),
    ] = 0.0,
    degradations: Annotated[
        str,
        typer.Option(
            help="Failures the denoising objective draws, comma-separated: blur, resolution, "
            "noise, exposure, occlusion, shadow."
        ),
    ] = "blur,resolution,noise,exposure",
    kl_weight: Annotated[
        float, typer.Option(min=0.01, help="beta of a beta-VAE: the KL term's weight (paper: 1).")
    ] = 1.0,
    limit: Annotated[int | None, typer.Option(help="Use at most N training images.")] = None,
    margin: Annotated[
        float,
        typer.Option(min=-0.6, max=1.0, help="Framing: square of (1 + margin) x the MTCNN box."),
    ] = 0.2,
    max_side: Annotated[
        int | None, typer.Option(min=16, help="Framing: shrink crops larger than this (px).")
    ] = None,
    complexity: Annotated[
        str, typer.Option(help="Complexity correction of the score: 'floor', 'full' or 'bounded'.")
    ] = "bounded",
    complexity_gamma: Annotated[
        str,
        typer.Option(
            help="Count the correction's code length on x**gamma: a number, or 'auto' for the "
            "gamma at which the training crops' code length stops following their brightness."
        ),
    ] = "1",
    latent_dim: Annotated[int, typer.Option(min=2, help="Size of the latent code z.")] = 128,
    sigma_min: Annotated[
        float,
        typer.Option(min=0.001, max=0.4, help="Lower bound of the likelihood's sigma (pixels)."),
    ] = 0.01,
    resume: Annotated[bool, typer.Option(help="Continue from the per-epoch checkpoint.")] = False,
) -> None:
    """Train the quality VAE (paper defaults: Adam, lr 0.005, batch 144, 10 epochs)."""
    if not data.is_dir():
        raise UserError(f"not a folder: {data}")
    if identities is not None and not identities.is_file():
        raise UserError(f"no such identity file: {identities}")
    need_detector()
    setup_torch()
    from vae.model import VAEConfig
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
        jitter=jitter,
        relight=relight,
        degradations=tuple(k.strip() for k in degradations.split(",") if k.strip()),
        kl_weight=kl_weight,
        limit=limit,
        margin=margin,
        max_side=max_side,
        complexity=complexity,
        complexity_gamma=complexity_gamma,
        model={**VAEConfig().to_dict(), "latent_dim": latent_dim, "sigma_min": sigma_min},
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


@vae_app.command("complexity")
def vae_complexity(
    weights: Annotated[Path, typer.Argument(help="Weights file to change in place.")],
    form: Annotated[
        str, typer.Option(help="Complexity correction: 'floor', 'full' or 'bounded'.")
    ] = "bounded",
    data: Annotated[
        Path | None, typer.Option(help="Training images, if moved since training.")
    ] = None,
    identities: Annotated[
        Path | None, typer.Option(help="Identity file, if moved since training.")
    ] = None,
    gamma: Annotated[
        str | None,
        typer.Option(
            help="Measure the code length on x**gamma: a number, or 'auto' for the gamma at "
            "which the training crops' code length stops following their brightness "
            "(default: keep the weights' own)."
        ),
    ] = None,
) -> None:
    """Switch trained weights to another complexity correction, without retraining: the
    statistics it needs are re-derived from the weights' own training faces."""
    if not weights.is_file():
        raise UserError(f"no such weights file: {weights}")
    from vae.train import restate_complexity

    need_detector()
    setup_torch()
    try:
        record = restate_complexity(
            weights,
            form,
            get_settings().cache_dir,
            str(data) if data else None,
            str(identities) if identities else None,
            log=typer.echo,
            gamma=gamma,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    typer.echo(
        f"{weights}: complexity {form}, median {record['complexity_ref_bits']:.0f} bits, "
        f"bound {record['complexity_max_bits']:.0f} bits, gamma {record['complexity_gamma']:g}"
    )


@app.command("erc")
def erc_command(
    dataset: Annotated[
        Path, typer.Option(help="LFW-style folder (<Name>/<Name>_NNNN.jpg) or CelebA folder.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for the plots, erc.csv and summary.json.")],
    matcher: Annotated[str, typer.Option(help="Face matcher: dlib or facenet.")] = "dlib",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N subjects with two images or more.")
    ] = None,
    identities: Annotated[
        Path | None,
        typer.Option(help="CelebA identity file (default: <dataset>-identity.txt if present)."),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="VAE weights (default: shipped).")] = None,
    samples: Annotated[int, typer.Option("--samples", "-L", min=1, help="Latent samples L.")] = 10,
    framing: Annotated[
        str | None,
        typer.Option(
            help="VAE crops: margin=M or aligned=P (default: as the weights were trained)."
        ),
    ] = None,
    fnmr: Annotated[
        list[float] | None,
        typer.Option(help="Initial FNMR f (repeat; default 0.01 0.05, + 0.001 from 10k pairs)."),
    ] = None,
    bootstrap: Annotated[int, typer.Option(min=10, help="Bootstrap resamples of subjects.")] = 1000,
    seed: int = 0,
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr.")] = True,
) -> None:
    """Error-versus-reject curves of the VAE against random, PERFECT and simple baselines."""
    if not dataset.is_dir():
        raise UserError(f"not a folder: {dataset}")
    if identities is not None and not identities.is_file():
        raise UserError(f"no such identity file: {identities}")
    if matcher not in ("dlib", "facenet"):
        raise UserError(f"unknown matcher {matcher!r}: use dlib or facenet")
    for f in fnmr or []:
        if not 0.0 < f < 0.5:
            raise UserError(f"--fnmr must lie in (0, 0.5), got {f}")
    if framing is not None and not framing.startswith(("margin=", "aligned=")):
        raise UserError(f"unknown framing {framing!r}: use margin=M or aligned=P")
    need_detector()
    setup_torch()
    from vae.erc.matchers import MatcherUnavailable
    from vae.erc.run import ErcConfig, run_erc
    from vae.score import WeightsError

    cfg = ErcConfig(
        dataset=dataset,
        out=out,
        cache_dir=get_settings().cache_dir,
        matcher=matcher,
        limit=limit,
        identities=identities,
        weights=weights or get_settings().vae_weights,
        samples=samples,
        framing=framing,
        fnmr=list(fnmr or []),
        bootstrap=bootstrap,
        seed=seed,
        progress=progress,
    )
    try:
        summary = run_erc(cfg, log=typer.echo)
    except MatcherUnavailable as exc:
        raise UserError(str(exc), code=3) from exc
    except (WeightsError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    if "BRISQUE" not in summary["methods"]:
        err(
            "BRISQUE baseline left out: the brisque package is not installed "
            "(pip install -e '.[erc]')"
        )
    c = summary["counts"]
    typer.echo(
        f"wrote {out}: {c['images']} images ({c['images_without_face']} without a face, "
        f"{c['images_with_several_faces']} with several), {c['subjects']} subjects, "
        f"{c['pairs']} genuine pairs"
    )
