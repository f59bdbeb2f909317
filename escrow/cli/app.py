"""The Typer app, its command groups, and what every command shares."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from escrow.settings import get_settings

if TYPE_CHECKING:
    from escrow.client import VaultClient

app = typer.Typer(
    help="keyframe-escrow: one sealed best-quality face crop per passer-by.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _group(name: str, help: str) -> typer.Typer:
    sub = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


vae_app = _group("vae", "The face-quality VAE.")
keys_app = _group("keys", "The escrow authority's keys.")
tokens_app = _group("tokens", "API bearer tokens (one role each).")
retention_app = _group("retention", "Retention reports.")
policy_app = _group("policy", "Retention and access policies.")
audit_app = _group("audit", "The audit trail: hash chain, signed checkpoints, Merkle proofs.")
db_app = _group("db", "The vault's SQL index (Alembic migrations).")
warrant_app = _group("warrant", "Warrants (judges), via the vault API.")
request_app = _group("request", "Opening requests (investigators, trustees), via the vault API.")
camera_app = _group("camera", "Cameras known to the vault (admin), via the vault API.")


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def zoned_time(value: str, what: str):
    """An option's ISO 8601 time as an aware UTC datetime; a time without a zone is refused,
    not guessed (a guess would move it by hours: another epoch, another warrant window)."""
    from datetime import UTC

    from escrow.canonical import parse_time

    try:
        t = parse_time(value)
    except ValueError as exc:
        raise UserError(f"{what}: not an ISO 8601 time: {value!r}") from exc
    if t.tzinfo is None:
        raise UserError(f"{what}: give a time zone (e.g. {value}Z or {value}+01:00)")
    return t.astimezone(UTC)


def err(msg: str) -> None:
    typer.echo(f"escrow: {msg}", err=True)


def setup_torch() -> None:
    threads = get_settings().threads
    if threads:
        import torch

        torch.set_num_threads(threads)


def need_detector() -> None:
    from escrow.detect import FacenetMissing, require_facenet

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


def load_policy_or_exit(path: Path | None = None):
    """The policy in force (PATH, else ESCROW_POLICY, else the shipped one); a bad file is
    one line and exit 2."""
    from policies.schema import PolicyError, load_policy

    try:
        return load_policy(path or get_settings().policy)
    except PolicyError as exc:
        raise UserError(str(exc)) from exc


def db_factory():
    from vault.db import make_engine, session_factory, upgrade

    url = get_settings().database_url
    upgrade(url)
    return session_factory(make_engine(url))


def authority_signer():
    """The escrow authority's Ed25519 signing key, which signs judge, trustee and auditor
    tokens so that no one with only the database can mint one. Its passphrase comes from
    ESCROW_AUTHORITY_PASSPHRASE, the development default, or a prompt. One line, exit 2,
    where the key store cannot give it (e.g. the key is offline, as it should be)."""
    import os

    from escrow.sealing import KeyStoreError
    from vault.keys import KeyStore

    ks = KeyStore(get_settings().keys_dir)
    try:
        dev = ks.info()["mode"] == "development"
        passphrase = os.environ.get("ESCROW_AUTHORITY_PASSPHRASE")
        if passphrase is None:
            passphrase = (
                "development"
                if dev
                else typer.prompt("authority passphrase", hide_input=True, err=True)
            )
        return ks.authority_signer(passphrase)
    except KeyStoreError as exc:
        raise UserError(str(exc)) from exc


def camera_keyring_path() -> Path:
    st = get_settings()
    return st.camera_keyring or st.keys_dir.parent / "camera-keyring.json"


def vault_client(url: str | None, token: str | None) -> VaultClient:
    """A client of the vault API from options, else ESCROW_VAULT_URL / ESCROW_TOKEN."""
    from escrow.client import VaultClient

    st = get_settings()
    token = token or st.token
    if not token:
        raise UserError("no API token: pass --token or set ESCROW_TOKEN")
    try:
        return VaultClient(url or st.vault_url, token)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


@contextmanager
def vault_errors() -> Iterator[None]:
    """The vault's refusal (exit 6) or absence (exit 5) as one line, never a traceback."""
    from escrow.client import VaultError

    try:
        yield
    except VaultError as exc:
        if exc.status == 0:
            raise UserError(exc.detail, code=5) from exc
        raise UserError(f"the vault refused ({exc.status}): {exc.detail}", code=6) from exc


@contextmanager
def vault(url: str | None, token: str | None) -> Iterator[VaultClient]:
    """`with vault(url, token) as c:` a client for one command, closed after it, whose
    refusals end the command as one line and an exit code (vault_errors)."""
    with vault_errors(), vault_client(url, token) as client:
        yield client


def table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Rows under a header row, columns padded to their widest cell, two spaces apart: for
    people; `--json` is the stable form for machines. Empty lists still print the header, so
    "nothing" reads as nothing rather than as a failure."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    for row in [list(columns), *cells]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def short_time(iso: str | None) -> str:
    """'2026-12-04 20:05:31Z' from the API's ISO time: UTC, to the second, for a table."""
    if not iso:
        return "-"
    from datetime import UTC, datetime

    t = datetime.fromisoformat(iso).astimezone(UTC)
    return f"{t:%Y-%m-%d %H:%M:%S}Z"


def emit_json(data: object) -> None:
    import json

    typer.echo(json.dumps(data, indent=1, ensure_ascii=False))
