"""`escrow erc`: does the VAE's quality predict recognition? Error-versus-reject curves on
real identities (Baert et al. 2021, section 5); the work is in vae/erc_run.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from escrow.cli.app import UserError, app, err, need_detector, setup_torch
from escrow.settings import get_settings


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
    from vae.erc_run import ErcConfig, run_erc
    from vae.matchers import MatcherUnavailable
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
