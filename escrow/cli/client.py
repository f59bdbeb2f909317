"""`escrow warrant ...`, `escrow request ...` and `escrow camera ...`: the API's command-line
client. Lists print a header row and one row per item; `--json` prints the vault's answer as
is, the stable form for scripts."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from escrow.cli.app import (
    UserError,
    audit_app,
    camera_app,
    emit_json,
    request_app,
    short_time,
    table,
    vault,
    warrant_app,
    zoned_time,
)
from escrow.settings import get_settings

Url = Annotated[str | None, typer.Option("--vault-url", help="Vault API (ESCROW_VAULT_URL).")]
Token = Annotated[str | None, typer.Option("--token", help="Bearer token (ESCROW_TOKEN).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the vault's JSON answer.")]


WARRANT_COLUMNS = ("ID", "STATE", "CASE", "CAMERAS", "SCOPE FROM", "SCOPE TO", "VALID UNTIL")


def _warrant_rows(ws: list[dict]) -> None:
    table(
        WARRANT_COLUMNS,
        [
            (
                w["id"],
                w["state"],
                w["case_ref"],
                ",".join(w["cameras"]),
                short_time(w["window_start"]),
                short_time(w["window_end"]),
                short_time(w["not_after"]),
            )
            for w in ws
        ],
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
    window = (zoned_time(start, "--from"), zoned_time(end, "--to"))
    not_before = zoned_time(valid_from, "--valid-from") if valid_from else datetime.now(UTC)
    not_after = zoned_time(valid_until, "--valid-until")
    with vault(vault_url, token) as c:
        w = c.create_warrant(case, basis, camera, *window, not_after, not_before, max_records)
    if as_json:
        emit_json(w)
    else:
        _warrant_rows([w])


@warrant_app.command("list")
def warrant_list(vault_url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Warrants and their state."""
    with vault(vault_url, token) as c:
        ws = c.warrants()
    if as_json:
        emit_json(ws)
    else:
        _warrant_rows(ws)


@warrant_app.command("revoke")
def warrant_revoke(
    warrant_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")],
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Revoke a warrant at once (judge token)."""
    with vault(vault_url, token) as c:
        w = c.revoke_warrant(warrant_id, reason)
    if as_json:
        emit_json(w)
    else:
        _warrant_rows([w])


@warrant_app.command("records")
def warrant_records(
    warrant_id: Annotated[str, typer.Argument()],
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Records within a warrant's scope: metadata only (investigator token)."""
    with vault(vault_url, token) as c:
        rows = c.warrant_records(warrant_id)
    if as_json:
        emit_json(rows)
        return
    table(
        ("RECORD", "CAMERA", "CAPTURED", "QUALITY", "EXPIRES", "HOLD"),
        [
            (
                r["id"],
                r["camera_id"],
                short_time(r["best_time"]),
                f"{r['quality']:.1f}",
                short_time(r["expires"]),
                "held" if r["legal_hold"] else "-",
            )
            for r in rows
        ],
    )


def _request_rows(reqs: list[dict]) -> None:
    table(
        ("ID", "STATUS", "WARRANT", "RECORDS", "APPROVALS", "REQUESTER", "CREATED"),
        [
            (
                r["id"],
                r["status"],
                r["warrant_id"],
                len(r["record_ids"]),
                f"{len(r['approvals'])}/{r['required']}",
                r["requester"],
                short_time(r["created"]),
            )
            for r in reqs
        ],
    )


def _request_detail(r: dict) -> None:
    """One request in full, as a person checks it: reason, records, who approved."""
    fields = [
        ("request", r["id"]),
        ("status", r["status"]),
        ("warrant", r["warrant_id"]),
        ("requester", r["requester"]),
        ("reason", r["reason"]),
        ("created", short_time(r["created"])),
        ("approvals", f"{len(r['approvals'])} of {r['required']}"),
    ]
    fields += [
        ("  approved", f"{a['trustee']} (share {a['share_index']}) {short_time(a['at'])}")
        for a in r["approvals"]
    ]
    if r.get("released_at"):
        fields.append(
            ("released", f"{short_time(r['released_at'])}, {r['released_count']} crop(s)")
        )
    fields.append(("digest", r["digest"]))
    fields.append(("records", str(len(r["record_ids"]))))
    fields += [("", rid) for rid in r["record_ids"]]
    for k, v in fields:
        typer.echo(f"{k:<11s}{v}")


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
    if all_records == bool(record):
        raise UserError("give --record ID (repeatable) or --all")
    with vault(vault_url, token) as c:
        ids = record or [r["id"] for r in c.warrant_records(warrant)]
        if not ids:
            raise UserError(f"warrant {warrant} has no records in scope")
        created = c.create_request(warrant, ids, reason)
    req = created["request"]
    path = _secret_path(req["id"])
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(created["fetch_secret"])
    if as_json:
        emit_json(req)
        return
    _request_detail(req)
    typer.echo(f"fetch secret kept in {path}", err=True)


@request_app.command("status")
def request_status(
    request_id: Annotated[str | None, typer.Argument(help="One request (default: all).")] = None,
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Requests and their approvals: a table, or one request in full."""
    with vault(vault_url, token) as c:
        data = c.request(request_id) if request_id else c.requests()
    if as_json:
        emit_json(data)
    elif request_id:
        _request_detail(data)
    else:
        _request_rows(data)


@request_app.command("review")
def request_review(
    request_id: Annotated[str, typer.Argument()],
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """What a trustee approves, before approving (trustee token): the warrant's case and
    legal basis, the reason, the requester, the records and the keys they need."""
    from escrow.trustee import summary

    with vault(vault_url, token) as c:
        review = c.review(request_id)
    if as_json:
        emit_json(review)
        return
    for line in summary(review):
        typer.echo(line)


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
    with vault(vault_url, token) as c:
        review = c.review(request_id)
        if digest and digest != review["request"]["digest"]:
            raise UserError("the request changed since you reviewed it (digest differs)")
        try:
            check(review, key)
        except ReviewRejected as exc:
            raise UserError(f"not approving: {exc}", code=1) from exc
        for line in summary(review):  # on stderr: stdout stays the answer (--json)
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
        out = c.approve(request_id, body)
    if as_json:
        emit_json(out)
    else:
        _request_detail(out)


def _private_folder(out: Path) -> None:
    """A folder only its owner can enter (0700), new or empty: released crops are the most
    sensitive bytes this system makes, and a shared or half-full folder would mix them with
    what others can read. Checked before the release, which happens once."""
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {out} is not a folder")
        if any(out.iterdir()):
            raise UserError(f"--out {out} is not empty: crops are written to a new folder")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out, 0o700)  # mkdir's mode passes through the umask; an empty folder is ours


def _write_private(path: Path, data: bytes) -> None:
    """Created 0600 in one step (no moment at the umask's mode), never over a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@request_app.command("fetch")
def request_fetch(
    request_id: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Option("--out", help="New or empty folder for the crops.")],
    vault_url: Url = None,
    token: Token = None,
) -> None:
    """Fetch the released crops once (the requester's token): one JPEG per record, its clip
    frames if sealed with one, and release.json with what was withheld and why; all 0600 in
    a 0700 folder. Once they are written, their receipt is confirmed to the vault; a fetch
    cut off before that can be run again (to a new folder) and gets the same crops."""
    path = _secret_path(request_id)
    with vault(vault_url, token) as c:
        try:
            secret = path.read_text().strip()
        except OSError as exc:
            req = c.request(request_id)  # why there is none: fetched already, or never here
            if req["status"] == "released":
                raise UserError(
                    f"request {request_id} was already released (410) at "
                    f"{short_time(req['released_at'])}: crops go out once",
                    code=6,
                ) from exc
            raise UserError(f"no fetch secret for request {request_id} at {path}") from exc
        _private_folder(out)
        res = c.release(request_id, secret)
    ids = [r["record_id"] for r in res["released"]]
    for r in res["released"]:  # ids are unique per camera: name the camera where one repeats
        stem = (
            r["record_id"]
            if ids.count(r["record_id"]) == 1
            else f"{r['camera_id']}--{r['record_id']}"
        )
        _write_private(out / f"{stem}.jpg", base64.b64decode(r["jpeg"]))
        for i, frame in enumerate(r["clip"]):
            _write_private(out / f"{stem}.clip{i:03d}.jpg", base64.b64decode(frame))
        r.pop("jpeg"), r.pop("clip")
    _write_private(out / "release.json", json.dumps(res, indent=1).encode())
    with vault(vault_url, token) as c:  # on disk: the vault may erase the copy it held
        c.received(request_id)
    path.unlink()
    typer.echo(f"{len(res['released'])} crop(s) written to {out}; {len(res['withheld'])} withheld")
    for rid, why in res["withheld"].items():
        typer.echo(f"  withheld {rid}: {why}")


@camera_app.command("list")
def camera_list(vault_url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Cameras the vault knows (admin or auditor token)."""
    with vault(vault_url, token) as c:
        cams = c.cameras()
    if as_json:
        emit_json(cams)
        return
    table(
        ("CAMERA", "NAME", "REGISTERED"),
        [(x["id"], x["name"], short_time(x["created"])) for x in cams],
    )


@camera_app.command("add")
def camera_add(
    camera_id: Annotated[str, typer.Argument(help="The camera's id (what its token names).")],
    name: Annotated[str | None, typer.Option("--name", help="A name people know it by.")] = None,
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Register a camera (admin token); its token comes from `escrow camera token`."""
    with vault(vault_url, token) as c:
        cam = c.add_camera(camera_id, name)
    if as_json:
        emit_json(cam)
        return
    table(("CAMERA", "NAME", "REGISTERED"), [(cam["id"], cam["name"], short_time(cam["created"]))])


@camera_app.command("token")
def camera_token(
    camera_id: Annotated[str, typer.Argument(help="The camera the token speaks for.")],
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Make a camera's bearer token (admin token); printed once, only its hash is kept."""
    with vault(vault_url, token) as c:
        made = c.create_token(camera_id)
    if as_json:
        emit_json(made)
        return
    typer.echo(
        f"token {made['id']} (camera {camera_id}, expires {short_time(made['expires_at'])}); "
        f"shown once, store it now:\n{made['token']}"
    )


AuditAction = Annotated[
    str | None,
    typer.Option("--action", help="An action (request.release) or a prefix ending in '.'."),
]
AuditActor = Annotated[
    str | None, typer.Option("--actor", help="An actor (judge:Judge Ito) or a role (judge).")
]
AuditRecord = Annotated[
    str | None, typer.Option("--record", help="Entries naming this record/request/warrant id.")
]
Since = Annotated[str | None, typer.Option("--since", help="From this time (ISO 8601, zoned).")]
Until = Annotated[str | None, typer.Option("--until", help="Before this time (ISO 8601).")]
PAGE = 1000  # the API's largest page


def _audit_filters(action, actor, record, since, until) -> dict:
    return {
        "action": action,
        "actor": actor,
        "record": record,
        "since": zoned_time(since, "--since") if since else None,
        "until": zoned_time(until, "--until") if until else None,
    }


def _entry_cells(e: dict) -> tuple:
    detail = json.dumps(e["detail"], separators=(",", ":"), ensure_ascii=False)
    return (e["id"], short_time(e["at"]), e["actor"], e["action"], detail)


ENTRY_COLUMNS = ("ID", "TIME", "ACTOR", "ACTION", "DETAIL")


@audit_app.command("list")
def audit_list(
    action: AuditAction = None,
    actor: AuditActor = None,
    record: AuditRecord = None,
    since: Since = None,
    until: Until = None,
    after: Annotated[int, typer.Option(min=0, help="Entries with a larger id.")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries.")] = 100,
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Read the audit trail through the vault API (auditor token), oldest first."""
    filters = _audit_filters(action, actor, record, since, until)
    got: list[dict] = []
    with vault(vault_url, token) as c:
        while len(got) < limit:
            want = min(PAGE, limit - len(got))
            page = c.audit(after=after, limit=want, **filters)
            got += page
            if len(page) < want:
                break
            after = page[-1]["id"]
    if as_json:
        emit_json(got)
        return
    table(ENTRY_COLUMNS, [_entry_cells(e) for e in got])


@audit_app.command("tail")
def audit_tail(
    action: AuditAction = None,
    actor: AuditActor = None,
    record: AuditRecord = None,
    last: Annotated[int, typer.Option("--last", min=0, help="Show the last N first.")] = 10,
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, help="Seconds between polls.")
    ] = 2.0,
    vault_url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Follow the audit trail (auditor token): the last entries, then each new one as the
    vault writes it, until Ctrl-C. `--json` prints one JSON object per line."""
    import sys
    import time

    filters = _audit_filters(action, actor, record, None, None)

    def show(e: dict) -> None:
        if as_json:
            typer.echo(json.dumps(e, ensure_ascii=False))
        else:
            typer.echo("  ".join(str(v) for v in _entry_cells(e)))
        sys.stdout.flush()

    import signal

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    # Ctrl-C or a service manager's SIGTERM ends the tail, even where the shell that started
    # it in the background set SIGINT to be ignored (Python then installs no handler)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    after = 0
    with vault(vault_url, token) as c:
        recent: list[dict] = []
        while page := c.audit(after=after, limit=PAGE, **filters):  # to the head, once
            recent = (recent + page)[-last:] if last else []
            after = page[-1]["id"]
        if not as_json:
            typer.echo("  ".join(ENTRY_COLUMNS))
        for e in recent:
            show(e)
        try:
            while True:
                time.sleep(interval)
                while page := c.audit(after=after, limit=PAGE, **filters):
                    for e in page:
                        show(e)
                    after = page[-1]["id"]
        except KeyboardInterrupt:
            return  # stopping a tail is its normal end
