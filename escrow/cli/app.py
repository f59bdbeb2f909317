"""The Typer app, its command groups, and what every command shares."""

from __future__ import annotations

from pathlib import Path

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
tokens_app = typer.Typer(help="API bearer tokens (one role each).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
retention_app = typer.Typer(help="Retention reports.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")
policy_app = typer.Typer(help="Retention and access policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
db_app = typer.Typer(help="The vault's SQL index (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def err(msg: str) -> None:
    typer.echo(f"escrow: {msg}", err=True)


def setup_torch() -> None:
    threads = get_settings().threads
    if threads:
        import torch

        torch.set_num_threads(threads)


def need_detector() -> None:
    from vae.faces import FacenetMissing, require_facenet

    try:
        require_facenet()
    except FacenetMissing as exc:
        raise UserError(str(exc), code=3) from exc


def load_scorer(weights: Path | None, samples: int):
    from vae.score import QualityScorer, WeightsError

    try:
        return QualityScorer(weights or get_settings().vae_weights, samples=samples)
    except WeightsError as exc:
        raise UserError(str(exc)) from exc


def db_factory():
    from vault.db import make_engine, session_factory, upgrade

    url = get_settings().database_url
    upgrade(url)
    return session_factory(make_engine(url))


def camera_keyring_path() -> Path:
    st = get_settings()
    return st.camera_keyring or st.keys_dir.parent / "camera-keyring.json"
