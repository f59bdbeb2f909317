"""One capture run composed: keyring, source, detector, scorer, agent, the local store or
outbox, the sender, the preview and the report, wired together and torn down in order.

The command line (`escrow capture`, `escrow demo`) only parses options and prints; what
happens between "start" and "summary" is here, so a camera's service wrapper or a test
runs exactly what the command runs.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from escrow.agent import (
    CaptureAgent,
    CaptureConfig,
    CaptureSummary,
    FaceEvidence,
    Schedule,
    ScoreGate,
)
from escrow.canonical import utcnow
from escrow.client import VaultClient
from escrow.keyring import CameraKeyring, FreshKeyring
from escrow.records import create_schema, make_engine, session_factory
from escrow.sealing import KeyRefused, KeyStoreError


class CaptureError(Exception):
    """A capture cannot start or was stopped: one line for the user, and an exit code."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def open_keyring(
    camera_id: str,
    path: Path | None,
    fetch: Callable[[], dict] | None,
    authority: str | None,
    log: Callable[[str], None],
) -> FreshKeyring:
    """The camera's keyring from an explicit file, or from the vault (`fetch`, GET /keyring)
    with the authority pinned by `authority` or by the file; never a default that could
    belong to another authority."""
    try:
        if path is not None:
            if not path.exists():
                raise CaptureError(f"no camera keyring at {path}")
            ring = CameraKeyring.load(path)
            if ring.camera_id and ring.camera_id != camera_id:
                raise CaptureError(
                    f"{path} is camera {ring.camera_id}'s keyring, not {camera_id}'s"
                )
        elif fetch is not None:
            ring = CameraKeyring.from_dict(fetch())
        else:
            raise CaptureError(
                "no keyring: pass --keyring FILE (from `escrow keys export-camera`) or "
                "--vault-url with this camera's token, and --authority FINGERPRINT to pin "
                "the authority"
            )
    except KeyStoreError as exc:
        raise CaptureError(str(exc)) from exc
    ring = CameraKeyring(ring.authority_raw, ring.certs, camera_id)
    if authority and not ring.authority_fingerprint.startswith(authority.lower()):
        raise CaptureError(
            f"the keyring's authority is {ring.authority_fingerprint}, not the pinned {authority}"
        )
    return FreshKeyring(ring, camera_id, fetch, log=log)


def open_store(database_url: str, outbox: bool):
    """The engine records are written to. A camera sending to a vault keeps only the record
    tables (its outbox); writing straight into a vault's database (a vault on the same
    machine, the demo) migrates it with the vault's Alembic revisions, which a camera-only
    install does not have."""
    if outbox:
        engine = make_engine(database_url)
        create_schema(engine)
        return engine
    try:
        import alembic  # noqa: F401  (the vault's migrations run with it)

        from vault.db import upgrade
    except ImportError as exc:  # a camera-only install: no vault, no migrations
        raise CaptureError(
            "writing straight into a vault database needs the vault's install "
            "(pip install 'keyframe-escrow[vault]'); a camera sends with --vault-url"
        ) from exc
    upgrade(database_url)
    return make_engine(database_url)


@dataclass
class CaptureJob:
    source: object  # escrow.sources.Source
    camera_id: str
    keyring: FreshKeyring
    detector: object  # escrow.detect.FrameDetector
    scorer: object  # vae.score.QualityScorer
    database_url: str
    retention: timedelta
    min_track: int = 3
    clip_seconds: float = 0.0
    preview: Path | None = None
    report: Path | None = None
    progress: bool = False
    client: VaultClient | None = None  # with a client, the local store is an outbox
    send_timeout: float = 30.0
    on_sealed: Callable[[str, dict], None] | None = None
    log: Callable[[str], None] = lambda m: None
    every_frame: bool = False  # the reference pipeline: whole frame, every frame, every face


def run(job: CaptureJob) -> tuple[CaptureSummary, dict]:
    """Capture until the source ends or SIGINT/SIGTERM (live tracks are sealed first; a
    second signal stops at once), sending to the vault meanwhile when there is a client.
    Returns (summary, per-track quality histories). CaptureError when the keys run out."""
    import torch
    from tqdm import tqdm

    # one core detects, the other decodes and runs the scoring process (escrow.scoring):
    # torch's default of a thread per core here oversubscribed the cores, and a busy
    # machine then spent seconds a frame in the threads' barriers (measured: 0.3 fps live)
    torch.set_num_threads(1)
    engine = open_store(job.database_url, outbox=job.client is not None)
    writer = None
    if job.preview is not None:
        from escrow.preview import PreviewWriter, unseen_tracks

        writer = PreviewWriter(job.preview, job.source.fps)
    bar = tqdm(total=job.source.status.frames_expected, unit="frame", disable=not job.progress)

    def on_frame(frame, faces, summary):
        if writer:  # the tracks the detector missed just now stay pixelated too
            unseen = unseen_tracks(agent.tracker.tracks.values(), frame.time)
            writer.write(frame.bgr, faces, unseen, agent.moving)
        bar.update(1)
        extra = {}
        if job.source.live:  # how far the agent is behind the camera, and what it skipped
            status = job.source.status
            extra = {"skipped": status.skipped, "lag_s": status.max_lag_s}
        bar.set_postfix(live=len(agent.tracker.tracks), sealed=summary.records, **extra)

    cfg = CaptureConfig(
        camera_id=job.camera_id,
        min_track_frames=job.min_track,
        clip_seconds=job.clip_seconds,
        retention=job.retention,
        # a live camera runs for days: its tracks' histories only for a report asked for
        keep_histories=job.report is not None or not job.source.live,
        schedule=Schedule.reference() if job.every_frame else Schedule(),
        gate=ScoreGate(enabled=not job.every_frame),
        # the VAE's own evidence that a track is a face, in the shipped weights' units
        evidence=FaceEvidence(min_quality=getattr(job.scorer, "non_face_below", None)),
    )
    agent = CaptureAgent(
        cfg,
        job.detector,
        job.scorer,
        job.keyring,
        session_factory(engine),
        on_frame=on_frame,
        on_sealed=job.on_sealed,
    )
    sender = stop_sending = sending = None
    if job.client is not None:
        from escrow.outbox import Sender

        sender = Sender(session_factory(engine), job.client)
        stop_sending = threading.Event()
        sending = threading.Thread(target=sender.run, args=(stop_sending,), daemon=True)
        sending.start()

    def stop(signum, _frame):  # finish the frame, seal the live tracks, then stop
        job.log(f"{signal.Signals(signum).name}: sealing live tracks, then stopping")
        agent.request_stop()
        job.source.interrupt()  # a frozen stream sends no next frame to stop after
        signal.signal(signum, signal.SIG_DFL)  # a second signal stops at once

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    outbox = None
    try:
        summary = agent.run(job.source)
    except KeyRefused as exc:
        raise CaptureError(f"capture stopped: {exc}", code=4) from exc
    else:
        until = job.keyring.valid_until(utcnow())
        summary.keys_valid_until = until.isoformat() if until else None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        bar.close()
        if writer:
            writer.close()
        if sender is not None:
            stop_sending.set()
            sending.join()
            rep = sender.run(stop_sending, deadline=time.monotonic() + job.send_timeout)
            outbox = {
                "sent": rep.sent,
                "already_held": rep.already_held,
                "waiting": rep.waiting,
                "refused": rep.refused,
                "last_error": rep.last_error if rep.waiting else "",
            }
        engine.dispose()
    if sender is not None:
        summary.outbox = outbox
    if job.report is not None:
        from escrow.report import write_report

        write_report(agent.histories, job.report, agent.sealed)
    return summary, agent.histories


def send(database_url: str, client: VaultClient, timeout: float):
    """Drain the outbox once (`escrow send`): the sender's report."""
    from escrow.outbox import Sender

    engine = open_store(database_url, outbox=True)
    try:
        stop = threading.Event()
        stop.set()
        return Sender(session_factory(engine), client).run(
            stop, deadline=time.monotonic() + timeout
        )
    finally:
        engine.dispose()
