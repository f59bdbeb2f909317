"""The vault operator's commands: `escrow serve` (the API, with the retention sweeper inside),
`escrow keys` (the authority), `escrow tokens`, `escrow db` (migrations)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from escrow.cli.app import (
    UserError,
    app,
    db_app,
    db_factory,
    keys_app,
    load_policy_or_exit,
    tokens_app,
)
from escrow.settings import get_settings


def _passphrase(env: list[str], prompt: str, dev: bool) -> str:
    """From the first set environment variable, the development default, or a prompt."""
    for name in env:
        if os.environ.get(name):
            return os.environ[name]
    if dev:
        return DEV_PASSPHRASE
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=True)


DEV_PASSPHRASE = "development"


def _trustee_passphrases(names: list[str], dev: bool) -> list[tuple[str, str]]:
    """Each trustee types their own (or ESCROW_TRUSTEE_PASSPHRASE_<i> in a script)."""
    return [
        (
            name,
            _passphrase(
                [f"ESCROW_TRUSTEE_PASSPHRASE_{i}", "ESCROW_TRUSTEE_PASSPHRASE"],
                f"passphrase for {name}'s key file",
                dev,
            ),
        )
        for i, name in enumerate(names, 1)
    ]


@keys_app.command("init")
def keys_init(
    trustee_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for the trustees' key files (one each, hand them out)."),
    ] = None,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev", help="DEVELOPMENT MODE: passphrases 'development', trustee keys kept here."
        ),
    ] = False,
    suite: Annotated[str, typer.Option(help="HPKE suite: x25519 or mlkem768-x25519.")] = "x25519",
    epoch_hours: Annotated[
        int | None, typer.Option(min=1, help="Length of a key epoch (default: the policy's).")
    ] = None,
    threshold: Annotated[int, typer.Option(min=1, help="k: trustees needed to open.")] = 2,
    trustees: Annotated[int, typer.Option(min=1, help="n: trustee keys made.")] = 3,
    trustee_name: Annotated[
        list[str] | None, typer.Option(help="Trustee names in order (default: trustee 1..n).")
    ] = None,
    camera: Annotated[
        list[str] | None, typer.Option(help="Issue epochs for this camera now (repeatable).")
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="How far ahead to issue epochs.")] = 90,
) -> None:
    """The ceremony: the authority's signing key, one key pair per trustee (each in a
    passphrase-sealed file of theirs), the vault's release key, and per-camera epochs whose
    private halves exist only as shares sealed to the trustees. No master key is made."""
    from datetime import UTC, datetime

    from escrow.sealing import KeyStoreError
    from vault.keys import KeyStore

    if threshold > trustees:
        raise UserError("--threshold must not exceed --trustees")
    names = trustee_name or [f"trustee {i}" for i in range(1, trustees + 1)]
    if len(names) != trustees:
        raise UserError(f"--trustee-name given {len(names)} times for {trustees} trustees")
    st = get_settings()
    if epoch_hours is None:
        epoch_hours = max(1, round(load_policy_or_exit().keys.epoch.total_seconds() / 3600))
    ks = KeyStore(st.keys_dir)
    folder = trustee_dir or (ks.root / "dev-trustees" if dev else None)
    if folder is None:
        raise UserError("say where the trustees' key files go: --trustee-dir DIR")
    paths = [folder / f"trustee-{i}.key" for i in range(1, trustees + 1)]
    if clash := [p for p in paths if p.exists()]:
        raise UserError(f"{clash[0]} exists: a key file is never overwritten")
    pws = _trustee_passphrases(names, dev)
    signing_pw = _passphrase(["ESCROW_AUTHORITY_PASSPHRASE"], "authority passphrase", dev)
    now = datetime.now(UTC)
    try:
        keys = ks.init(now, pws, threshold, signing_pw, suite, epoch_hours, dev=dev)
        for key, path in zip(keys, paths, strict=True):
            key.write(path)
        made = _issue(ks, ks.authority_signer(signing_pw), camera or [], now, days)
    except (KeyStoreError, ValueError, OSError) as exc:
        raise UserError(str(exc)) from exc
    typer.echo(f"escrow authority created in {ks.root} ({suite}, {threshold} of {trustees})")
    typer.echo(f"authority fingerprint: {ks.fingerprint}")
    for key, path in zip(keys, paths, strict=True):
        typer.echo(f"  trustee {key.index} ({key.name}): {path}  key {key.public_key.hex()[:16]}")
    typer.echo(
        f"{made} epoch key(s) issued for {len(camera or [])} camera(s); no master key exists"
    )
    if not dev:
        typer.echo(
            f"Move {ks.root / 'authority-signing.key'} offline: it is needed only to issue "
            "epochs and privileged tokens."
        )


def _issue(ks, signer, cameras: list[str], start, days: int) -> int:
    hours = ks.info()["epoch_hours"]
    count = max(1, -(-days * 24 // hours))
    return sum(len(ks.issue_epochs(signer, cam, start, count)) for cam in cameras)


@keys_app.command("issue")
def keys_issue(
    camera: Annotated[list[str], typer.Option(help="Camera id (repeatable).")],
    days: Annotated[int, typer.Option(min=1, help="How far ahead from --start.")] = 90,
    start: Annotated[str | None, typer.Option(help="ISO 8601 start (default: now).")] = None,
) -> None:
    """Issue epochs ahead for cameras (needs the authority's signing key and passphrase,
    ESCROW_AUTHORITY_PASSPHRASE). Each epoch's private half is split to the trustees' keys
    at once and dropped: nothing here can open what the epoch will seal."""
    from datetime import UTC, datetime

    from escrow.sealing import KeyStoreError
    from vault.keys import KeyStore

    ks = KeyStore(get_settings().keys_dir)
    try:
        t = datetime.fromisoformat(start) if start else datetime.now(UTC)
        if t.tzinfo is None:
            raise UserError("--start: give a time zone (e.g. 2027-01-01T00:00Z)")
        dev = ks.info()["mode"] == "development"
        pw = _passphrase(["ESCROW_AUTHORITY_PASSPHRASE"], "authority passphrase", dev)
        made = _issue(ks, ks.authority_signer(pw), camera, t, days)
    except (KeyStoreError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    typer.echo(f"{made} new epoch key(s) for {', '.join(camera)} ({days} days from {t:%Y-%m-%d})")


@keys_app.command("migrate")
def keys_migrate(
    trustee_dir: Annotated[Path, typer.Option(help="Folder for the new trustee key files.")],
    share: Annotated[
        list[str] | None, typer.Option(help="An old master-key share (k of them; repeatable).")
    ] = None,
    threshold: Annotated[int | None, typer.Option(min=1, help="k (default: as before).")] = None,
    trustee_name: Annotated[
        list[str] | None, typer.Option(help="Trustee names in order (default: trustee 1..n).")
    ] = None,
) -> None:
    """One-time ceremony for a vault made before per-camera custody: with k of the old
    master-key shares, re-split every epoch key to new trustee keys and destroy the master
    key and everything it could open. The records and their certificates stay valid."""
    from datetime import UTC, datetime

    from escrow.sealing import KeyStoreError
    from vault.legacy import migrate

    root = get_settings().keys_dir
    try:
        old = json.loads((root / "authority.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"no escrow authority at {root}") from exc
    n = len(trustee_name) if trustee_name else old.get("trustees", 3)
    names = trustee_name or [f"trustee {i}" for i in range(1, n + 1)]
    dev = old.get("mode") == "development"
    shares = share or (
        []
        if dev
        else [
            typer.prompt(f"old master-key share {i}", hide_input=True)
            for i in range(1, old.get("threshold", 2) + 1)
        ]
    )
    paths = [trustee_dir / f"trustee-{i}.key" for i in range(1, n + 1)]
    if clash := [p for p in paths if p.exists()]:
        raise UserError(f"{clash[0]} exists: a key file is never overwritten")
    pws = _trustee_passphrases(names, dev)
    signing_pw = _passphrase(["ESCROW_AUTHORITY_PASSPHRASE"], "authority passphrase", dev)
    try:
        keys, moved = migrate(
            root,
            shares,
            pws,
            threshold or old.get("threshold", 2),
            signing_pw,
            datetime.now(UTC),
            save=lambda keys: [k.write(p) for k, p in zip(keys, paths, strict=True)],
        )
    except (KeyStoreError, ValueError, OSError) as exc:
        raise UserError(str(exc)) from exc
    typer.echo(f"{len(moved)} epoch key(s) re-split to {len(keys)} trustee keys; the master key")
    typer.echo("and every file it could open are destroyed. Trustee key files:")
    for key, path in zip(keys, paths, strict=True):
        typer.echo(f"  trustee {key.index} ({key.name}): {path}")


@keys_app.command("status")
def keys_status(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Per camera: how many epoch keys, and until when it can seal."""
    from datetime import UTC, datetime

    from escrow.keyring import CameraKeyring
    from escrow.sealing import KeyStoreError
    from vault.keys import KeyStore

    ks = KeyStore(get_settings().keys_dir)
    try:
        ring = CameraKeyring.from_dict(ks.camera_keyring())
    except KeyStoreError as exc:
        raise UserError(str(exc)) from exc
    now = datetime.now(UTC)
    rows = []
    for cam in sorted({c.camera_id for c in ring.certs}):
        until = ring.valid_until(now, cam)
        n = sum(c.camera_id == cam for c in ring.certs)
        rows.append(
            {
                "camera": cam or "(global)",
                "epochs": n,
                "seals_until": until.isoformat() if until else None,
            }
        )
    if as_json:
        typer.echo(json.dumps({"fingerprint": ks.fingerprint, "cameras": rows}, indent=1))
        return
    from escrow.cli.app import short_time, table

    typer.echo(f"authority {ks.fingerprint}")
    table(
        ("CAMERA", "EPOCHS", "SEALS UNTIL"),
        [
            (
                r["camera"],
                r["epochs"],
                short_time(r["seals_until"]) if r["seals_until"] else "OUT OF KEYS",
            )
            for r in rows
        ],
    )


@keys_app.command("export-camera")
def keys_export_camera(
    out: Annotated[Path, typer.Argument(help="Camera keyring file to write (public only).")],
    camera: Annotated[str, typer.Option(help="The camera whose epochs to export.")],
) -> None:
    """Write the public material one camera needs to seal: authority key + its signed epoch
    keys. (A camera with a token can fetch the same from the vault: GET /keyring.)"""
    from escrow.sealing import KeyStoreError
    from vault.keys import KeyStore

    try:
        ring = KeyStore(get_settings().keys_dir).camera_keyring(camera)
    except KeyStoreError as exc:
        raise UserError(str(exc)) from exc
    if not ring["epochs"]:
        raise UserError(f"no epochs for camera {camera}: run `escrow keys issue --camera {camera}`")
    out.write_text(json.dumps(ring, indent=1))
    typer.echo(
        f"wrote {out}: {len(ring['epochs'])} signed epoch public keys of {camera}, no private "
        f"key; authority {ring['authority_fingerprint']}"
    )


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
    from policies.schema import parse_duration
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
    """n, the number of trustee keys of the authority: a trustee index is one of 1..n."""
    from escrow.sealing import KeyStoreError
    from vault.keys import KeyStore

    try:
        return len(KeyStore(get_settings().keys_dir).info()["trustees"])
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
def tokens_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Token ids, roles, names, expiry and state (never the tokens); times in UTC."""
    from datetime import UTC, datetime

    from escrow.canonical import as_utc
    from escrow.cli.app import emit_json, table
    from vault import tokens

    now = datetime.now(UTC)
    rows = []
    for t in tokens.list_tokens(db_factory()):
        expires = tokens.expiry(t)
        state = "revoked" if t.revoked_at else "expired" if now >= expires else "active"
        rows.append(
            {
                "id": t.id,
                "role": t.role,
                "trustee_index": t.trustee_index,
                "name": t.name,
                "expires_at": expires.isoformat(),
                "state": state,
                "revoked_at": as_utc(t.revoked_at).isoformat() if t.revoked_at else None,
            }
        )
    if as_json:
        emit_json(rows)
        return
    table(
        ("ID", "ROLE", "NAME", "EXPIRES (UTC)", "STATE"),
        [
            (
                r["id"],
                r["role"] if r["trustee_index"] is None else f"{r['role']} {r['trustee_index']}",
                r["name"],
                f"{datetime.fromisoformat(r['expires_at']):%Y-%m-%d %H:%M}",
                r["state"]
                if not r["revoked_at"]
                else f"revoked {datetime.fromisoformat(r['revoked_at']):%Y-%m-%d %H:%M}",
            )
            for r in rows
        ],
    )


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
    from sqlalchemy.exc import IntegrityError

    for attempt in range(3):  # replicas starting together: another may register them first
        try:
            with ctx.factory.begin() as s:
                store.register_epochs(s, ks.certificates())
            break
        except IntegrityError:
            if attempt == 2:
                raise
    return ctx


def _url(host: str, port: int, tls: bool) -> str:
    """How a client reaches this server: an IPv6 address goes in brackets."""
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"


def _announce(port: int, url: str, port_file: Path | None) -> None:
    """Say where the server listens, once it accepts connections: a line on stderr and, with
    --port-file, the port in that file. The file is written whole and renamed into place, so
    a process waiting for it (a test, a supervisor) never reads half a number."""
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(port_file)
    typer.echo(f"listening on {url}", err=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, help="Port; 0 takes a free one (announced, see --port-file)."
        ),
    ] = 8750,
    port_file: Annotated[
        Path | None,
        typer.Option(
            help="Write the port actually bound here once the server accepts connections "
            "(with --port 0: no port is picked, freed and raced for)."
        ),
    ] = None,
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
    --ssl-certfile/--ssl-keyfile or a TLS-terminating proxy; shares and crops cross it.
    Once it accepts connections it prints `listening on URL` (the port it bound: with
    --port 0 the system picks a free one)."""
    import contextlib
    import logging
    import sys

    import uvicorn

    from vault.api import create_app

    if port_file is not None and not port_file.parent.is_dir():
        raise UserError(f"--port-file: no folder {port_file.parent}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    ctx = build_context(policy, sweep)
    tls = ssl_certfile is not None
    typer.echo(
        f"vault API on {_url(host, port, tls) if port else 'a free port'} (docs at /docs); "
        f"{ctx.required_approvals} trustee approvals per opening; "
        f"sweeper {'on, every ' + str(ctx.policy.sweep.every) if sweep else 'off'}",
        err=True,
    )

    class Server(uvicorn.Server):
        """uvicorn's server, announcing the port it bound once it has started."""

        async def startup(self, sockets: list | None = None) -> None:
            await super().startup(sockets=sockets)  # exits the process if it cannot bind
            if self.started:
                bound = self.servers[0].sockets[0].getsockname()[1]
                _announce(bound, _url(host, bound, tls), port_file)

    config = uvicorn.Config(
        create_app(ctx),
        host=host,
        port=port,
        log_level="info",
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )
    server = Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it caught
        server.run()
    if not server.started:  # as uvicorn.run: a port taken or a failed start is exit 3
        sys.exit(3)
