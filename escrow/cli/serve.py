"""`escrow serve`: the vault API under uvicorn, with the retention sweeper inside."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from escrow.cli.app import UserError, app, load_policy_or_exit
from escrow.settings import get_settings


def build_context(policy: Path | None, sweeper: bool):
    from escrow.sealing import KeyStoreError
    from vault import store
    from vault.api import VaultContext
    from vault.db import make_engine, upgrade
    from vault.keys import KeyStore

    st = get_settings()
    pol = load_policy_or_exit(policy)
    ks = KeyStore(st.keys_dir)
    try:
        info = ks.info()
        ks.warrant_signer()
    except KeyStoreError as exc:
        raise UserError(str(exc)) from exc
    if info["threshold"] > pol.openings.trustees:
        raise UserError(
            f"the authority needs {info['threshold']} shares but the policy names only "
            f"{pol.openings.trustees} trustees"
        )
    upgrade(st.database_url)
    ctx = VaultContext(make_engine(st.database_url), ks, pol, sweeper=sweeper)
    with ctx.factory.begin() as s:
        store.register_epochs(s, ks.certificates())
    return ctx


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8750,
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML (default: ESCROW_POLICY or shipped).")
    ] = None,
    sweep: Annotated[
        bool, typer.Option("--sweep/--no-sweep", help="Run the retention sweeper inside.")
    ] = True,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
) -> None:
    """Serve the warrant-gated vault API (OpenAPI at /docs). Put it behind TLS: pass
    --ssl-certfile/--ssl-keyfile or a TLS-terminating proxy; shares and crops cross it."""
    import logging

    import uvicorn

    from vault.api import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    ctx = build_context(policy, sweep)
    typer.echo(
        f"vault API on http://{host}:{port} (docs at /docs); "
        f"{ctx.required_approvals} trustee approvals per opening; "
        f"sweeper {'on, every ' + str(ctx.policy.sweep.every) if sweep else 'off'}",
        err=True,
    )
    uvicorn.run(
        create_app(ctx),
        host=host,
        port=port,
        log_level="info",
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )
