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
    from datetime import UTC, datetime

    from vault.db import make_engine, upgrade
    from vault.keys import KeyStore
    from vault.retention import sweep as run_sweep

    if once == daemon:
        raise UserError("say --once or --daemon")
    pol = load_policy_or_exit(policy)
    st = get_settings()
    upgrade(st.database_url)

    def one_sweep() -> None:
        engine = make_engine(st.database_url)
        try:
            now = datetime.now(UTC)
            result = run_sweep(
                engine,
                KeyStore(st.keys_dir),
                now,
                pol.sweep.batch,
                after_warrant=pol.legal_hold.after_warrant,
                unfetched_after=pol.openings.unfetched_after,
                keep_keys_for=pol.retention.for_camera,
            )
        finally:
            engine.dispose()
        typer.echo(json.dumps({"at": now.isoformat(), **result.summary()}))
        sys.stdout.flush()

    if once:
        one_sweep()
        return
    import signal
    import time

    from apscheduler.schedulers.background import BackgroundScheduler

    # The jobs run in a worker thread; the main thread only waits, in short sleeps, so a stop
    # signal is acted on within 0.2 s whatever the sweep interval.
    sched = BackgroundScheduler(timezone="UTC")
    # The first run is now: whatever fell due while no sweeper ran is caught up at start.
    sched.add_job(
        one_sweep,
        "interval",
        seconds=pol.sweep.every.total_seconds(),
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
    )
    typer.echo(f"sweeping every {pol.sweep.every}; Ctrl-C to stop", err=True)

    def stop(signum, frame):  # SIGTERM (a service manager) stops it like Ctrl-C
        raise KeyboardInterrupt

    # Installed explicitly, SIGINT too: a process started with SIGINT ignored (nohup, some
    # supervisors, a parent that ignores it) inherits that, and Python then never raises
    # KeyboardInterrupt, so Ctrl-C would not stop the daemon.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    sched.start()
    try:
        while sched.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sched.shutdown(wait=False)


@retention_app.command("report")
def retention_report(
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML (default: ESCROW_POLICY or shipped).")
    ] = None,
) -> None:
    """What was erased when, which keys were destroyed, and what is held and why (JSON)."""
    from datetime import UTC, datetime

    from vault.retention import report

    pol = load_policy_or_exit(policy)
    rep = report(db_factory(), datetime.now(UTC), pol.legal_hold.after_warrant)
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
