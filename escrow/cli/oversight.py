"""Oversight: the retention sweeper (`escrow sweep`), its report and the policy check
(data-protection officers), and the audit trail (auditors).

The auditor keeps the witness file: `audit checkpoint --witness F` appends a checkpoint the
vault signed (after proving it extends the last one in F), `audit verify --checkpoint F`
proves the trail in the database still extends the last one. Only `checkpoint` and `proof`
need the key store (to sign); `verify` needs the database and the witness file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from escrow.cli.app import (
    UserError,
    app,
    audit_app,
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


@contextmanager
def _trail() -> Iterator:
    """A session factory on the configured database, read as it is (no migration: an
    auditor's check must not change the schema it checks)."""
    from vault.db import make_engine, session_factory

    engine = make_engine(get_settings().database_url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[
        str | None, typer.Option(help="A head hash recorded earlier: also catches cut tails.")
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Witness file: also check its signatures and that the trail extends its last "
            "checkpoint (catches cut tails and consistent rewrites).",
        ),
    ] = None,
) -> None:
    """Check every link of the audit trail; exit 1 at the first broken one."""
    from vault import anchor, audit

    with _trail() as factory:
        v = audit.verify(factory, expect_head)
        if not v.ok:
            raise UserError(f"audit trail BROKEN at entry {v.broken_at}: {v.reason}", code=1)
        if checkpoint is not None:
            try:
                no, cp = anchor.check_trail(factory, checkpoint)
            except anchor.WitnessUnreadable as exc:
                raise UserError(str(exc)) from exc
            except anchor.AnchorBroken as exc:
                raise UserError(f"audit trail BROKEN: {exc}", code=1) from exc
    typer.echo(f"audit trail intact: {v.entries} entries, head {v.head}")
    if checkpoint is not None:
        typer.echo(
            f"consistent with checkpoint {no} of {checkpoint}: size {cp.size}, root {cp.root}"
        )


@audit_app.command("checkpoint")
def audit_checkpoint(
    witness: Annotated[
        Path, typer.Option(help="Witness file to append to (created if missing; keep it safe).")
    ],
) -> None:
    """Sign a checkpoint of the trail, append it to the witness file; exit 1 if inconsistent.

    If the file holds checkpoints, the trail must first be proved (RFC 9162 consistency
    proof) to extend the last of them, under the key the file pinned."""
    from vault import anchor

    key = anchor.CheckpointKey(get_settings().keys_dir)
    try:
        with _trail() as factory:
            cp = anchor.extend_witness(factory, key, datetime.now(UTC), witness)
    except anchor.WitnessUnreadable as exc:
        raise UserError(str(exc)) from exc
    except anchor.AnchorBroken as exc:
        raise UserError(f"refused: {exc}", code=1) from exc
    except OSError as exc:
        raise UserError(f"checkpoint key {key.path}: {exc}") from exc
    typer.echo(f"checkpoint: size {cp.size}, root {cp.root}, appended to {witness}")


@audit_app.command("proof")
def audit_proof(
    entry: Annotated[int, typer.Argument(min=1, help="The entry's id.")],
    size: Annotated[
        int | None, typer.Option(min=1, help="Tree size (default: the whole trail).")
    ] = None,
) -> None:
    """Print entry ENTRY, its inclusion proof and a signed checkpoint of the tree, as JSON."""
    from vault import anchor

    key = anchor.CheckpointKey(get_settings().keys_dir)
    try:
        with _trail() as factory:
            p = anchor.inclusion(factory, key, datetime.now(UTC), entry, size)
    except anchor.ProofRefused as exc:
        raise UserError(str(exc)) from exc
    except OSError as exc:
        raise UserError(f"checkpoint key {key.path}: {exc}") from exc
    out = {
        "entry": p.entry.id,
        "leaf": p.leaf,
        "leaf_index": p.leaf_index,
        "tree_size": p.tree_size,
        "proof": p.proof,
        "checkpoint": asdict(p.checkpoint),
    }
    typer.echo(json.dumps(out, indent=1))
