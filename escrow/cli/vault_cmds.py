"""Vault administration: keys, tokens, the audit trail, migrations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from escrow.cli.app import UserError, audit_app, db_app, db_factory, keys_app, tokens_app
from escrow.settings import get_settings


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


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help="camera, judge, investigator, trustee, auditor, admin")],
    name: Annotated[str, typer.Option(help="Who or what holds it.")],
    expires: Annotated[
        str | None,
        typer.Option(help="Lifetime like 30d, 12w, 72h (default: camera 365d, others 90d)."),
    ] = None,
    trustee_index: Annotated[
        int | None, typer.Option(help="A trustee's share index (1..n); trustees only.")
    ] = None,
) -> None:
    """Create a token and print it once; only its hash is stored. Judge, trustee and auditor
    tokens are signed with the escrow authority's key (the API's admin cannot make them)."""
    from datetime import UTC, datetime

    from escrow.cli.app import authority_signer
    from policies.model import parse_duration
    from vault import tokens

    try:
        life = parse_duration(expires) if expires is not None else None
        tokens.check(role, trustee_index)  # before asking the key store for anything
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    signer = authority_signer() if role in tokens.PRIVILEGED else None
    trustees = _trustees() if role == "trustee" else None
    try:
        tid, token = tokens.create(
            db_factory(),
            role,
            name,
            datetime.now(UTC),
            expires=life,
            trustee_index=trustee_index,
            signer=signer,
            trustees=trustees,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    typer.echo(f"token {tid} ({role}, {name}); shown once, store it now:\n{token}")


def _trustees() -> int:
    """n, the number of trustee shares of the authority: a trustee index is one of 1..n."""
    from vault.keys import KeyStore, KeyStoreError

    try:
        return int(KeyStore(get_settings().keys_dir).info()["trustees"])
    except KeyStoreError as exc:
        raise UserError(str(exc)) from exc


@tokens_app.command("revoke")
def tokens_revoke(token_id: str) -> None:
    """Revoke a token at once."""
    from datetime import UTC, datetime

    from vault import tokens

    if not tokens.revoke(db_factory(), token_id, datetime.now(UTC)):
        raise UserError(f"no active token {token_id}", code=1)
    typer.echo(f"revoked {token_id}")


@tokens_app.command("list")
def tokens_list() -> None:
    """Token ids, roles, names, expiry and state (never the tokens); times in UTC."""
    from datetime import UTC, datetime

    from vault import tokens

    now = datetime.now(UTC)
    typer.echo(f"{'ID':<36s}  {'ROLE':<12s} {'NAME':<24s} {'EXPIRES (UTC)':<16s}  STATE")
    for t in tokens.list_tokens(db_factory()):
        role = f"{t.role} {t.trustee_index}" if t.trustee_index is not None else t.role
        expires = tokens.expiry(t)
        if t.revoked_at:
            state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}"
        else:
            state = "expired" if now >= expires else "active"
        typer.echo(f"{t.id}  {role:<12s} {t.name:<24s} {expires:%Y-%m-%d %H:%M}  {state}")


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[
        str | None, typer.Option(help="A head hash recorded earlier: also catches cut tails.")
    ] = None,
) -> None:
    """Check every link of the audit trail; exit 1 at the first broken one."""
    from vault import audit
    from vault.db import make_engine, session_factory

    engine = make_engine(get_settings().database_url)
    try:
        v = audit.verify(session_factory(engine), expect_head)
    finally:
        engine.dispose()
    if not v.ok:
        raise UserError(f"audit trail BROKEN at entry {v.broken_at}: {v.reason}", code=1)
    typer.echo(f"audit trail intact: {v.entries} entries, head {v.head}")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from vault.db import upgrade

    upgrade(get_settings().database_url, revision)
    typer.echo(f"{get_settings().database_url}: upgraded to {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str = "base") -> None:
    """Revert migrations down to REVISION (default: an empty database)."""
    from vault.db import downgrade

    downgrade(get_settings().database_url, revision)
    typer.echo(f"{get_settings().database_url}: downgraded to {revision}")
