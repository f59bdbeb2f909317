"""The camera's commands: `escrow capture`, `escrow send`, `escrow demo`."""

from __future__ import annotations

import json
import sys
from datetime import UTC
from pathlib import Path
from typing import Annotated

import typer

from escrow.canonical import utcnow
from escrow.cli.app import (
    UserError,
    app,
    camera_keyring_path,
    err,
    load_policy_or_exit,
    load_scorer,
    need_detector,
    setup_torch,
    vault_client,
    vault_errors,
    zoned_time,
)
from escrow.settings import get_settings


def recording_start(value: str | None, source_spec: str):
    """`--start`: the wall-clock time a recorded file's first frame was taken. A time without
    a zone is refused (a guess would put records in another epoch); a live source is timed
    by the clock, never by this."""
    if value is None:
        return None
    from escrow.sources import is_live

    if is_live(source_spec):
        raise UserError("--start is for recorded files; a live source is timed as it is read")
    if value == "file":
        from escrow.sources import recorded_at

        found = recorded_at(source_spec)
        if found is None:
            raise UserError(
                f"{source_spec} carries no recording time (creation_time): pass --start TIME"
            )
        return found
    return zoned_time(value, "--start")


def run_capture(
    source_spec: str,
    camera_id: str,
    keyring: Path | None,
    detect_width: int,
    min_track: int,
    preview: Path | None,
    report: Path | None,
    progress: bool,
    events: bool = False,
    clip_seconds: float = 0.0,
    vault_url: str | None = None,
    token: str | None = None,
    send_timeout: float = 30.0,
    authority: str | None = None,
    start: str | None = None,
    every_frame: bool = False,
):
    """Options to a capture job (escrow.capture), its errors to one line and an exit code;
    shared by `capture` and `demo`. Returns (summary, histories)."""
    from escrow import capture as job
    from escrow.detect import FrameDetector
    from escrow.sources import Source, SourceError

    def log(m: str) -> None:
        typer.echo(m, err=True)

    def on_sealed(record_id, meta):  # called after the record's transaction committed
        typer.echo(json.dumps({"sealed": record_id, "track": meta["track_id"]}))
        sys.stdout.flush()

    client = fetch = None
    if vault_url:
        client = vault_client(vault_url, token)

        def fetch():
            with vault_errors():
                return client.keyring()

    try:
        ring = job.open_keyring(camera_id, keyring, fetch, authority, log)
        source = Source(source_spec, start=recording_start(start, source_spec), log=log)
    except (job.CaptureError, SourceError) as exc:
        raise UserError(str(exc), getattr(exc, "code", 2)) from exc
    until = ring.valid_until(utcnow())
    log(
        f"sealing to authority {ring.pinned}; camera {camera_id}'s keys last until "
        + (until.isoformat() if until else "NOW: none covers the present (capture will stop)")
    )
    try:
        return job.run(
            job.CaptureJob(
                source=source,
                camera_id=camera_id,
                keyring=ring,
                detector=FrameDetector(detect_width=detect_width),
                scorer=load_scorer(None, 10),
                database_url=get_settings().database_url,
                # how long this camera's records are kept comes from the policy
                retention=load_policy_or_exit().retention.for_camera(camera_id),
                min_track=min_track,
                clip_seconds=clip_seconds,
                preview=preview,
                report=report,
                progress=progress,
                client=client,
                send_timeout=send_timeout,
                on_sealed=on_sealed if events else None,
                log=err,
                every_frame=every_frame,
            )
        )
    except job.CaptureError as exc:
        raise UserError(str(exc), exc.code) from exc


@app.command()
def capture(
    source: Annotated[str, typer.Argument(help="Video file, frame folder, camera index or URL.")],
    camera_id: Annotated[str, typer.Option("--camera-id", help="This camera's id.")],
    keyring: Annotated[Path | None, typer.Option(help="Camera keyring (public keys).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    detect_width: Annotated[int, typer.Option(min=64, help="Detect on frames this wide.")] = 960,
    min_track: Annotated[int, typer.Option(min=1, help="Shorter tracks are noise.")] = 3,
    preview: Annotated[Path | None, typer.Option(help="Anonymised preview video.")] = None,
    report: Annotated[Path | None, typer.Option(help="Per-track quality report folder.")] = None,
    events: Annotated[
        bool, typer.Option("--events", help="Print a JSON line as each record is stored.")
    ] = False,
    clip_seconds: Annotated[
        float, typer.Option(min=0.0, help="Also seal S seconds of the track around its best crop.")
    ] = 0.0,
    vault_url: Annotated[
        str | None,
        typer.Option("--vault-url", help="Send records to this vault (local store = outbox)."),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="This camera's token (ESCROW_TOKEN).")
    ] = None,
    send_timeout: Annotated[
        float, typer.Option(min=0.0, help="Seconds to keep trying to send after the input ends.")
    ] = 30.0,
    authority: Annotated[
        str | None,
        typer.Option(help="Pin the escrow authority by (a prefix of) its fingerprint."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="When a recorded file began (ISO 8601 with a zone, or 'file': the file's "
            "own creation_time tag): its records get that time's epoch and retention. "
            "Default: now."
        ),
    ] = None,
    every_frame: Annotated[
        bool,
        typer.Option(
            "--every-frame",
            help="Run the detector on the whole of every frame and score every face (the "
            "reference pipeline; not real time on a camera's CPU).",
        ),
    ] = False,
) -> None:
    """Keep one sealed best-quality face crop per person who passes; nothing else. Needs an
    explicit keyring (--keyring FILE) or the vault's (--vault-url with a camera token)."""
    need_detector()
    setup_torch()
    summary, _ = run_capture(
        source,
        camera_id,
        keyring,
        detect_width,
        min_track,
        preview,
        report,
        not (as_json or events),
        events,
        clip_seconds,
        vault_url,
        token,
        send_timeout,
        authority,
        start,
        every_frame,
    )
    if as_json:
        typer.echo(json.dumps(summary.public()))
    else:
        typer.echo(
            f"{summary.frames} frames, {summary.fps} fps: {summary.tracks} tracks, "
            f"{summary.records} records sealed, {summary.dropped_short} short tracks and "
            f"{summary.dropped_not_face} non-faces dropped"
        )
        if summary.outbox is not None:
            o = summary.outbox
            typer.echo(
                f"vault: {o['sent']} sent, {o['waiting']} waiting in the outbox"
                + (f", {o['already_held']} it held already" if o["already_held"] else "")
                + (f" ({o['last_error']})" if o["last_error"] else "")
                + (f", {len(o['refused'])} refused" if o["refused"] else "")
            )
    if summary.truncated:
        raise UserError(
            f"the video ended early (corrupt or truncated) after {summary.frames} frames; "
            f"the {summary.records} records from before that point are stored",
            code=3,
        )


@app.command()
def send(
    vault_url: Annotated[
        str | None, typer.Option("--vault-url", help="The vault (ESCROW_VAULT_URL).")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="This camera's token (ESCROW_TOKEN).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.0, help="Give up after S seconds.")] = 60.0,
) -> None:
    """Send the sealed records waiting in this camera's outbox to the vault."""
    from escrow.capture import send as drain

    rep = drain(get_settings().database_url, vault_client(vault_url, token), timeout)
    held = f", {rep.already_held} the vault held already" if rep.already_held else ""
    typer.echo(f"{rep.sent} sent, {rep.waiting} waiting, {len(rep.refused)} refused{held}")
    for rid, why in rep.refused.items():
        err(f"refused {rid}: {why}")
    if rep.waiting and not rep.refused:
        raise UserError(f"{rep.waiting} record(s) still waiting: {rep.last_error}", code=5)
    if rep.refused:
        raise UserError(f"the vault refused {len(rep.refused)} record(s); kept in the outbox", 6)


@app.command()
def demo(
    source: Annotated[
        str | None, typer.Option(help="Run on this video instead of the built-in sample.")
    ] = None,
) -> None:
    """The whole camera side on embedded defaults: keys (development mode) and a SQLite
    vault if absent, then capture on a sample that needs nothing from outside the checkout."""
    import tempfile
    from datetime import datetime

    from sqlalchemy import select

    from escrow.cli.admin import DEV_PASSPHRASE as DEV
    from escrow.sample import sample_face_table, write_sample_video
    from escrow.sealing import KeyStoreError
    from vault.db import make_engine, session_factory
    from vault.keys import KeyStore
    from vault.models import SealedRecordRow

    need_detector()
    setup_torch()
    st = get_settings()
    ks = KeyStore(st.keys_dir)
    now = datetime.now(UTC)
    try:
        if not ks.exists():
            made = ks.init(now, [(f"trustee {i}", DEV) for i in (1, 2, 3)], 2, DEV, dev=True)
            for key in made:
                key.write(ks.root / "dev-trustees" / f"trustee-{key.index}.key")
            typer.echo(
                f"created an escrow authority in {ks.root} (DEVELOPMENT MODE: passphrases "
                "'development'; no master key, epoch keys split to 3 trustee keys)"
            )
        if ks.info()["mode"] != "development":
            raise UserError(f"{ks.root} is a production authority: the demo uses its own")
        ks.issue_epochs(ks.authority_signer(DEV), "demo-cam", now, 7)
    except KeyStoreError as exc:
        raise UserError(str(exc)) from exc
    ring = camera_keyring_path()
    ring.write_text(json.dumps(ks.camera_keyring("demo-cam"), indent=1))
    with tempfile.TemporaryDirectory() as tmp:
        spec = source
        if spec is None:
            spec = str(Path(tmp) / "astronaut-walk.mp4")
            write_sample_video(spec)
            typer.echo("sample: two people (the scikit-image astronaut photo) crossing a street")
        summary, histories = run_capture(spec, "demo-cam", ring, 960, 3, None, None, False)
    typer.echo(
        f"{summary.frames} frames at {summary.fps} fps: {summary.faces_detected} faces in "
        f"{summary.tracks} tracks -> {summary.records} sealed records "
        f"({summary.dropped_short} short tracks dropped) in {st.database_url}"
    )
    engine = make_engine(st.database_url)
    with session_factory(engine)() as s:
        rows = s.scalars(
            select(SealedRecordRow).where(SealedRecordRow.id.in_(summary.record_ids))
        ).all()
    engine.dispose()
    typer.echo(f"\n  {'record':<36s} {'track':>5s} {'frames':>6s} {'quality':>9s}  epoch  (sealed)")
    for r in sorted(rows, key=lambda r: r.track_id):
        typer.echo(
            f"  {r.id:<36s} {r.track_id:>5d} {len(histories.get(r.track_id, [])):>6d} "
            f"{r.quality:>9.1f}  {r.epoch_id}  {len(r.ciphertext)} bytes"
        )
    typer.echo("\nThe crops are sealed to the epoch keys; this machine cannot show them.")
    typer.echo("Quality of the sample face, degraded copies of it, and two crops that are not")
    typer.echo(
        "faces (log RP = the paper's log reconstruction probability, before the complexity"
        " correction):"
    )
    typer.echo(f"\n  {'crop':<28s} {'quality':>10s} {'log RP':>10s}")
    for name, quality, log_rp in sample_face_table(load_scorer(None, 10)):
        typer.echo(f"  {name:<28s} {quality:10.1f} {log_rp:10.1f}")
