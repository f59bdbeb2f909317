"""The camera side: `escrow capture` and `escrow demo`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from escrow.cli.app import (
    UserError,
    app,
    camera_keyring_path,
    err,
    load_policy_or_exit,
    load_scorer,
    need_detector,
    setup_torch,
    vault_call,
)
from escrow.settings import get_settings


def load_keyring(
    camera_id: str,
    keyring: Path | None,
    vault_url: str | None,
    token: str | None,
    authority: str | None,
):
    """The camera's keyring from an explicit file, or from the vault (GET /keyring) with the
    authority pinned by --authority or by the file; never a default that could belong to
    another authority."""
    from escrow.keyring import CameraKeyring, FreshKeyring

    fetch = None
    if vault_url:
        from escrow.cli.app import vault_client

        client = vault_client(vault_url, token)

        def fetch():
            return vault_call(client, "GET", "/keyring")

    if keyring is not None:
        if not keyring.exists():
            raise UserError(f"no camera keyring at {keyring}")
        ring = CameraKeyring.load(keyring)
        if ring.camera_id and ring.camera_id != camera_id:
            raise UserError(f"{keyring} is camera {ring.camera_id}'s keyring, not {camera_id}'s")
        ring = CameraKeyring(ring.authority_raw, ring.certs, camera_id)
    elif fetch is not None:
        ring = CameraKeyring.from_dict(fetch())
        ring = CameraKeyring(ring.authority_raw, ring.certs, camera_id)
    else:
        raise UserError(
            "no keyring: pass --keyring FILE (from `escrow keys export-camera`) or --vault-url "
            "with this camera's token, and --authority FINGERPRINT to pin the authority"
        )
    if authority and not ring.authority_fingerprint.startswith(authority.lower()):
        raise UserError(
            f"the keyring's authority is {ring.authority_fingerprint}, not the pinned {authority}"
        )
    fresh = FreshKeyring(ring, camera_id, fetch, log=lambda m: typer.echo(m, err=True))
    return fresh


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
):
    """Shared by `capture` and `demo`: returns (summary, histories). With `vault_url` the
    local store is an outbox drained to the vault while capturing and after."""
    from tqdm import tqdm

    from escrow.agent import CaptureAgent, CaptureConfig
    from escrow.detect import FrameDetector
    from escrow.sealing import KeyRefused, KeyStoreError
    from escrow.sources import Source, SourceError
    from vault.db import make_engine, session_factory, upgrade

    try:
        ring = load_keyring(camera_id, keyring, vault_url, token, authority)
        source = Source(source_spec, log=lambda m: typer.echo(m, err=True))
    except (KeyStoreError, SourceError) as exc:
        raise UserError(str(exc)) from exc
    from datetime import UTC, datetime

    until = ring.valid_until(datetime.now(UTC))
    typer.echo(
        f"sealing to authority {ring.pinned}; camera {camera_id}'s keys last until "
        + (until.isoformat() if until else "NOW: none covers the present (capture will stop)"),
        err=True,
    )
    url = get_settings().database_url
    upgrade(url)
    engine = make_engine(url)
    writer = None
    if preview is not None:
        from escrow.preview import PreviewWriter

        writer = PreviewWriter(preview, source.fps)
    bar = tqdm(total=source.status.frames_expected, unit="frame", disable=not progress)

    def on_frame(frame, faces, summary):
        if writer:
            writer.write(frame.bgr, faces)
        bar.update(1)
        bar.set_postfix(live=len(agent.tracker.tracks), sealed=summary.records)

    def on_sealed(record_id, meta):  # called after the record's transaction committed
        typer.echo(json.dumps({"sealed": record_id, "track": meta["track_id"]}))
        sys.stdout.flush()

    # how long this camera's records are kept comes from the policy
    retention = load_policy_or_exit().retention.for_camera(camera_id)
    cfg = CaptureConfig(
        camera_id=camera_id,
        min_track_frames=min_track,
        clip_seconds=clip_seconds,
        retention=retention,
    )
    agent = CaptureAgent(
        cfg,
        FrameDetector(detect_width=detect_width),
        load_scorer(None, 10),
        ring,
        session_factory(engine),
        on_frame=on_frame,
        on_sealed=on_sealed if events else None,
    )
    sender = stop_sending = sending = None
    if vault_url:
        import threading

        from escrow.cli.app import vault_client
        from escrow.outbox import Sender

        sender = Sender(session_factory(engine), vault_client(vault_url, token))
        stop_sending = threading.Event()
        sending = threading.Thread(target=sender.run, args=(stop_sending,), daemon=True)
        sending.start()
    import signal

    def stop(signum, _frame):  # finish the frame, seal the live tracks, then stop
        err(f"{signal.Signals(signum).name}: sealing live tracks, then stopping")
        agent.request_stop()
        signal.signal(signum, signal.SIG_DFL)  # a second signal stops at once

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = agent.run(source)
    except KeyRefused as exc:
        raise UserError(f"capture stopped: {exc}", code=4) from exc
    else:
        until = ring.valid_until(datetime.now(UTC))
        summary.keys_valid_until = until.isoformat() if until else None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        bar.close()
        if writer:
            writer.close()
        if sender is not None:
            import time

            stop_sending.set()
            sending.join()
            rep = sender.run(stop_sending, deadline=time.monotonic() + send_timeout)
            summary_outbox = {
                "sent": rep.sent,
                "waiting": rep.waiting,
                "refused": rep.refused,
                "last_error": rep.last_error if rep.waiting else "",
            }
        engine.dispose()
    if sender is not None:
        summary.outbox = summary_outbox
    if report is not None:
        from escrow.report import write_report

        write_report(agent.histories, report)
    return summary, agent.histories


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
    )
    if as_json:
        typer.echo(json.dumps(summary.public()))
    else:
        typer.echo(
            f"{summary.frames} frames, {summary.fps} fps: {summary.tracks} tracks, "
            f"{summary.records} records sealed, {summary.dropped_short} short tracks dropped"
        )
        if summary.outbox is not None:
            o = summary.outbox
            typer.echo(
                f"vault: {o['sent']} sent, {o['waiting']} waiting in the outbox"
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
    import threading
    import time

    from escrow.cli.app import vault_client
    from escrow.outbox import Sender
    from vault.db import make_engine, session_factory, upgrade

    url = get_settings().database_url
    upgrade(url)
    engine = make_engine(url)
    try:
        stop = threading.Event()
        stop.set()
        sender = Sender(session_factory(engine), vault_client(vault_url, token))
        rep = sender.run(stop, deadline=time.monotonic() + timeout)
    finally:
        engine.dispose()
    typer.echo(f"{rep.sent} sent, {rep.waiting} waiting, {len(rep.refused)} refused")
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
    from datetime import UTC, datetime

    from sqlalchemy import select

    from escrow.cli.vault_cmds import DEV_PASSPHRASE as DEV
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
