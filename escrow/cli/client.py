"""`escrow warrant ...` and `escrow request ...`: the API's command-line client."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from escrow.cli.app import UserError, request_app, vault_call, vault_client, warrant_app, zoned_time
from escrow.settings import get_settings

Url = Annotated[str | None, typer.Option("--vault-url", help="Vault API (ESCROW_VAULT_URL).")]
Token = Annotated[str | None, typer.Option("--token", help="Bearer token (ESCROW_TOKEN).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the vault's JSON answer.")]


def _show(data, as_json: bool, line) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=1))
    else:
        for item in data if isinstance(data, list) else [data]:
            typer.echo(line(item))


def _warrant_line(w: dict) -> str:
    return (
        f"{w['id']}  {w['state']:<13} case {w['case_ref']}  cameras {','.join(w['cameras'])}  "
        f"window {w['window_start']} .. {w['window_end']}  valid until {w['not_after']}"
    )


@warrant_app.command("create")
def warrant_create(
    case: Annotated[str, typer.Option("--case", help="Case reference.")],
    basis: Annotated[str, typer.Option("--basis", help="Legal basis.")],
    camera: Annotated[list[str], typer.Option("--camera", help="Camera id (repeatable).")],
    start: Annotated[str, typer.Option("--from", help="Scope window start (ISO 8601).")],
    end: Annotated[str, typer.Option("--to", help="Scope window end (ISO 8601).")],
    valid_until: Annotated[str, typer.Option("--valid-until", help="Not after (ISO 8601).")],
    valid_from: Annotated[
        str | None, typer.Option("--valid-from", help="Not before (default: now).")
    ] = None,
    max_records: Annotated[int | None, typer.Option(min=1, help="Most records it opens.")] = None,
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Issue a warrant (judge token)."""
    body = {
        "case_ref": case,
        "legal_basis": basis,
        "cameras": camera,
        "window_start": zoned_time(start, "--from").isoformat(),
        "window_end": zoned_time(end, "--to").isoformat(),
        "not_before": zoned_time(valid_from, "--valid-from").isoformat()
        if valid_from
        else datetime.now(UTC).isoformat(),
        "not_after": zoned_time(valid_until, "--valid-until").isoformat(),
        "max_records": max_records,
    }
    w = vault_call(vault_client(vault_url, token), "POST", "/warrants", body)
    _show(w, as_json, _warrant_line)


@warrant_app.command("list")
def warrant_list(vault_url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Warrants and their state."""
    _show(vault_call(vault_client(vault_url, token), "GET", "/warrants"), as_json, _warrant_line)


@warrant_app.command("revoke")
def warrant_revoke(
    warrant_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")],
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Revoke a warrant at once (judge token)."""
    w = vault_call(
        vault_client(vault_url, token), "POST", f"/warrants/{warrant_id}/revoke", {"reason": reason}
    )
    _show(w, as_json, _warrant_line)


@warrant_app.command("records")
def warrant_records(
    warrant_id: Annotated[str, typer.Argument()],
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Records within a warrant's scope: metadata only (investigator token)."""
    rows = vault_call(vault_client(vault_url, token), "GET", f"/warrants/{warrant_id}/records")
    _show(
        rows,
        as_json,
        lambda r: f"{r['id']}  {r['camera_id']}  {r['best_time']}  quality {r['quality']:.1f}",
    )


def _request_line(r: dict) -> str:
    return (
        f"{r['id']}  {r['status']:<8} warrant {r['warrant_id']}  {len(r['record_ids'])} record(s)"
        f"  approvals {len(r['approvals'])}/{r['required']}  digest {r['digest']}"
    )


def _secret_path(request_id: str) -> Path:
    return get_settings().requests_dir / f"{request_id}.secret"


@request_app.command("create")
def request_create(
    warrant: Annotated[str, typer.Option("--warrant", help="Warrant id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why these records.")],
    record: Annotated[
        list[str] | None, typer.Option("--record", help="Record id (repeatable).")
    ] = None,
    all_records: Annotated[
        bool, typer.Option("--all", help="Every record in the warrant's scope.")
    ] = False,
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Ask to open records (investigator token). The fetch secret is kept in a 0600 file
    under ESCROW_REQUESTS_DIR until `escrow request fetch`."""
    client = vault_client(vault_url, token)
    if all_records == bool(record):
        raise UserError("give --record ID (repeatable) or --all")
    ids = record or [r["id"] for r in vault_call(client, "GET", f"/warrants/{warrant}/records")]
    if not ids:
        raise UserError(f"warrant {warrant} has no records in scope")
    created = vault_call(
        client, "POST", "/requests", {"warrant_id": warrant, "record_ids": ids, "reason": reason}
    )
    req = created["request"]
    path = _secret_path(req["id"])
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(created["fetch_secret"])
    _show(req, as_json, _request_line)
    if not as_json:
        typer.echo(f"fetch secret kept in {path}", err=True)


@request_app.command("status")
def request_status(
    request_id: Annotated[str | None, typer.Argument(help="One request (default: all).")] = None,
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Requests and their approvals."""
    path = f"/requests/{request_id}" if request_id else "/requests"
    _show(vault_call(vault_client(vault_url, token), "GET", path), as_json, _request_line)


@request_app.command("approve")
def request_approve(
    request_id: Annotated[str, typer.Argument()],
    key_file: Annotated[Path, typer.Option("--key", help="Your trustee key file.")],
    digest: Annotated[
        str | None,
        typer.Option("--digest", help="Digest you reviewed earlier (refused if it changed)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Approve without asking.")] = False,
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Approve a request as a trustee (trustee token). Shows the warrant's case and legal
    basis, the reason, the requester and the records, checks every key the vault names
    against your key file's authority and the warrant, asks to confirm, then unseals your
    shares of exactly those keys here (passphrase: prompt or ESCROW_TRUSTEE_PASSPHRASE) and
    sends them sealed for this request's release only."""
    from escrow.sealing import KeyStoreError
    from escrow.trustee import ReviewRejected, TrusteeKey, approval_body, check, summary

    try:
        key = TrusteeKey.load(key_file)
    except KeyStoreError as exc:
        raise UserError(str(exc)) from exc
    client = vault_client(vault_url, token)
    review = vault_call(client, "GET", f"/requests/{request_id}/review")
    if digest and digest != review["request"]["digest"]:
        raise UserError("the request changed since you reviewed it (digest differs)")
    try:
        check(review, key)
    except ReviewRejected as exc:
        raise UserError(f"not approving: {exc}", code=1) from exc
    for line in summary(review):
        typer.echo(line, err=True)
    if not yes and not typer.confirm("Approve this request?", err=True):
        raise UserError("not approved", code=1)
    passphrase = os.environ.get("ESCROW_TRUSTEE_PASSPHRASE") or typer.prompt(
        f"passphrase of {key_file}", hide_input=True, err=True
    )
    try:
        body = approval_body(review, key, passphrase)
    except (ReviewRejected, KeyStoreError) as exc:
        raise UserError(f"not approving: {exc}", code=1) from exc
    out = vault_call(client, "POST", f"/requests/{request_id}/approvals", body)
    _show(out, as_json, _request_line)


@request_app.command("fetch")
def request_fetch(
    request_id: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Option("--out", help="Folder for the released crops.")],
    vault_url: Url = None,
    token: Token = None,
) -> None:
    """Fetch the released crops once (the requester's token): one JPEG per record, its clip
    frames if sealed with one, and release.json with what was withheld and why."""
    path = _secret_path(request_id)
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise UserError(f"no fetch secret for request {request_id} at {path}") from exc
    res = vault_call(
        vault_client(vault_url, token),
        "POST",
        f"/requests/{request_id}/release",
        {"fetch_secret": secret},
    )
    out.mkdir(parents=True, exist_ok=True)
    ids = [r["record_id"] for r in res["released"]]
    for r in res["released"]:  # ids are unique per camera: name the camera where one repeats
        stem = (
            r["record_id"]
            if ids.count(r["record_id"]) == 1
            else f"{r['camera_id']}--{r['record_id']}"
        )
        (out / f"{stem}.jpg").write_bytes(base64.b64decode(r["jpeg"]))
        for i, frame in enumerate(r["clip"]):
            (out / f"{stem}.clip{i:03d}.jpg").write_bytes(base64.b64decode(frame))
        r.pop("jpeg"), r.pop("clip")
    (out / "release.json").write_text(json.dumps(res, indent=1))
    path.unlink()
    typer.echo(f"{len(res['released'])} crop(s) written to {out}; {len(res['withheld'])} withheld")
    for rid, why in res["withheld"].items():
        typer.echo(f"  withheld {rid}: {why}")
