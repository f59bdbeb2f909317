"""Retention: the sweeper, its report, and policy checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from escrow.cli.app import (
    UserError,
    app,
    db_factory,
    load_policy_or_exit,
    policy_app,
    retention_app,
)
from escrow.settings import get_settings


@app.command()
def sweep(
    once: Annotated[bool, typer.Option("--once", help="One sweep now, then exit.")] = False,
    daemon: Annotated[
        bool, typer.Option("--daemon", help="Sweep now, then on the policy's schedule.")
    ] = False,
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML (default: ESCROW_POLICY or shipped).")
    ] = None,
) -> None:
    """Erase expired records not on legal hold; destroy keys of emptied, ended epochs."""
    from escrow.canonical import utcnow
    from vault import scheduler
    from vault.db import make_engine, upgrade
    from vault.keys import KeyStore

    if once == daemon:
        raise UserError("say --once or --daemon")
    pol = load_policy_or_exit(policy)
    st = get_settings()
    upgrade(st.database_url)

    def one_sweep() -> None:
        engine = make_engine(st.database_url)
        try:
            now = utcnow()
            result = scheduler.sweep_once(engine, KeyStore(st.keys_dir), pol, now)
        finally:
            engine.dispose()
        typer.echo(json.dumps({"at": now.isoformat(), **result.summary()}))
        sys.stdout.flush()

    if once:
        one_sweep()
        return
    typer.echo(f"sweeping every {pol.sweep.every}; Ctrl-C to stop", err=True)
    scheduler.run_forever(one_sweep, pol.sweep.every)


@retention_app.command("report")
def retention_report(
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML (default: ESCROW_POLICY or shipped).")
    ] = None,
) -> None:
    """What was erased when, which keys were destroyed, and what is held and why (JSON)."""
    from escrow.canonical import utcnow
    from vault.retention import report

    pol = load_policy_or_exit(policy)
    rep = report(db_factory(), utcnow(), pol.legal_hold.after_warrant)
    typer.echo(json.dumps(rep, indent=1))


@policy_app.command("check")
def policy_check(
    file: Annotated[
        Path | None, typer.Argument(help="Policy TOML (default: the shipped one).")
    ] = None,
) -> None:
    """Validate a policy file and print the effective policy."""
    from policies.schema import PolicyError, load_policy

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        raise UserError(str(exc)) from exc
    typer.echo(json.dumps(policy.effective(), indent=1))
