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
    emit_json,
    load_policy_or_exit,
    policy_app,
    retention_app,
    short_time,
    table,
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


ERASED_COLUMNS = ("record", "camera", "captured", "expires", "erased", "rule", "key_destroyed")


@retention_app.command("report")
def retention_report(
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML (default: ESCROW_POLICY or shipped).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="The erased records as CSV.")] = False,
    api: Annotated[
        bool, typer.Option("--api", help="Ask the vault API (auditor token), not the database.")
    ] = False,
    vault_url: Annotated[
        str | None, typer.Option("--vault-url", help="Vault API (ESCROW_VAULT_URL).")
    ] = None,
    token: Annotated[str | None, typer.Option("--token", help="Bearer token.")] = None,
) -> None:
    """Whose data was erased and why: per record its camera, capture time, expiry, erasure,
    the retention rule and when its key was destroyed; then what is held past expiry and
    which warrants hold records, and the idle sweeps per day."""
    if as_json and as_csv:
        raise UserError("say --json or --csv, not both")
    if api or vault_url:
        from escrow.cli.app import vault

        with vault(vault_url, token) as c:
            rep = c.retention_report()
    else:
        from escrow.canonical import utcnow
        from vault.retention import report

        pol = load_policy_or_exit(policy)
        rep = report(db_factory(), utcnow(), pol.legal_hold.after_warrant)
    if as_json:
        emit_json(rep)
    elif as_csv:
        import csv

        out = csv.DictWriter(sys.stdout, ERASED_COLUMNS, extrasaction="ignore", lineterminator="\n")
        out.writeheader()
        out.writerows(rep["erased"])
    else:
        _retention_tables(rep)


def _retention_tables(rep: dict) -> None:
    """The report for people: one table per question a data-protection officer asks."""
    t = short_time
    typer.echo(f"erased records: {rep['erased_records']}")
    table(
        ("RECORD", "CAMERA", "CAPTURED", "EXPIRES", "ERASED", "RULE", "KEY DESTROYED"),
        [
            (
                e["record"],
                e["camera"],
                t(e["captured"]),
                t(e["expires"]),
                t(e["erased"]),
                e["rule"],
                t(e["key_destroyed"]) if e["key_destroyed"] else "no",
            )
            for e in rep["erased"]
        ],
    )
    typer.echo("\nheld past expiry")
    table(
        ("CAMERA", "RECORDS", "OLDEST EXPIRY", "REASON"),
        [
            (h["camera"], h["records"], t(h["oldest_expiry"]), h["reason"])
            for h in rep["held_past_expiry"]
        ],
    )
    typer.echo("\nwarrant holds")
    table(
        ("WARRANT", "CASE", "JUDGE", "STATE", "HOLD UNTIL", "RECORDS"),
        [
            (
                h["warrant"],
                h["case_ref"],
                h["judge"],
                h["state"],
                t(h["hold_until"]),
                h["records_in_scope"],
            )
            for h in rep["warrant_holds"]
        ],
    )
    typer.echo("\nidle sweeps (nothing to do; one audit entry per day)")
    table(
        ("DAY", "RUNS", "LAST", "AUDIT ENTRY"),
        [
            (d["day"], d["runs"], t(d["last"]), d["audit_entry"] or "at the next day's first sweep")
            for d in rep["idle_sweeps"]
        ],
    )


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
