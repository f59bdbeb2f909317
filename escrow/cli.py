"""The `escrow` command line: one Typer app, each sub-command a thin call into a package.

Errors a user can cause (a missing file, a bad weights file, a broken install) end as one
plain line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from escrow.settings import get_settings

app = typer.Typer(
    help="keyframe-escrow: one sealed best-quality face crop per passer-by.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
vae_app = typer.Typer(help="The face-quality VAE.", no_args_is_help=True)
app.add_typer(vae_app, name="vae")
keys_app = typer.Typer(help="The escrow authority's keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
tokens_app = typer.Typer(help="API bearer tokens (one role each).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
retention_app = typer.Typer(help="Retention reports.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")
policy_app = typer.Typer(help="Retention and access policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
db_app = typer.Typer(help="The vault's SQL index (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _err(msg: str) -> None:
    typer.echo(f"escrow: {msg}", err=True)


def _setup_torch() -> None:
    threads = get_settings().threads
    if threads:
        import torch

        torch.set_num_threads(threads)


def _need_detector() -> None:
    from vae.faces import FacenetMissing, require_facenet

    try:
        require_facenet()
    except FacenetMissing as exc:
        raise UserError(str(exc), code=3) from exc


def _scorer(weights: Path | None, samples: int):
    from vae.score import QualityScorer, WeightsError

    try:
        return QualityScorer(weights or get_settings().vae_weights, samples=samples)
    except WeightsError as exc:
        raise UserError(str(exc)) from exc


@app.command()
def quality(
    images: Annotated[list[Path], typer.Argument(help="Image files to score.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    weights: Annotated[Path | None, typer.Option(help="VAE weights (default: shipped).")] = None,
    samples: Annotated[int, typer.Option("--samples", "-L", min=1, help="Latent samples L.")] = 10,
    margin: Annotated[float, typer.Option(help="Crop margin around the MTCNN box.")] = 0.2,
) -> None:
    """Score the main (largest) face of each image: `<path>\\t<score>`, higher is better.

    The score is the VAE's log reconstruction probability with the complexity floor
    (vae/score.py); `--json` also gives the paper's raw log reconstruction probability.
    """
    _need_detector()
    _setup_torch()
    from vae.data import read_rgb
    from vae.faces import FaceDetector, cut_crop, largest_face

    scorer = _scorer(weights, samples)
    detector = FaceDetector()
    results: list[dict] = []
    crops = []
    for path in images:
        entry: dict = {"path": str(path), "score": None, "box": None}
        try:
            rgb = read_rgb(path)
            face = largest_face(detector.detect(rgb))
            if face is None:
                raise ValueError(f"no face found in {path}")
            entry["box"] = [round(v, 1) for v in face.box]
            crops.append((len(results), cut_crop(rgb, face.box, margin)))
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc)
        results.append(entry)
    if crops:
        from vae.data import to_gray64

        grays = np.stack([to_gray64(c, "rgb") for _, c in crops])
        log_rp = scorer.log_rp(grays)
        quality = log_rp - scorer.complexity_penalty(grays)
        for (i, _), q, lrp in zip(crops, quality, log_rp, strict=True):
            results[i]["score"] = round(float(q), 3)
            results[i]["log_rp"] = round(float(lrp), 3)
    failed = [r for r in results if "error" in r]
    for r in failed:
        _err(r["error"])
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" not in r:
                typer.echo(f"{r['path']}\t{r['score']}")
    if failed:
        raise typer.Exit(1)


@vae_app.command("train")
def vae_train(
    data: Annotated[Path, typer.Option(help="Folder of face images (searched recursively).")],
    out: Annotated[Path, typer.Option(help="Weights file to write.")],
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=1)] = 144,
    lr: Annotated[float, typer.Option(min=0.0)] = 0.005,
    schedule: Annotated[
        str, typer.Option(help="Learning rate: 'constant' (paper) or 'cosine' decay to 0.")
    ] = "constant",
    seed: int = 0,
    holdout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Held-out fraction.")] = 0.1,
    identities: Annotated[
        Path | None, typer.Option(help="`image identity` file: hold out whole people.")
    ] = None,
    denoise: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of degraded encoder inputs.")
    ] = 0.5,
    limit: Annotated[int | None, typer.Option(help="Use at most N training images.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the per-epoch checkpoint.")] = False,
) -> None:
    """Train the quality VAE (paper defaults: Adam, lr 0.005, batch 144, 10 epochs)."""
    if not data.is_dir():
        raise UserError(f"not a folder: {data}")
    if identities is not None and not identities.is_file():
        raise UserError(f"no such identity file: {identities}")
    _need_detector()
    _setup_torch()
    from vae.train import TrainConfig, train

    cfg = TrainConfig(
        data=str(data),
        out=str(out),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule,
        seed=seed,
        holdout=holdout,
        identities=str(identities) if identities else None,
        denoise=denoise,
        limit=limit,
        threads=get_settings().threads,
    )
    try:
        record = train(cfg, get_settings().cache_dir, resume=resume, log=typer.echo)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    last = record["history"][-1] if record["history"] else {}
    typer.echo(
        f"wrote {out} ({record['parameters']} parameters, {record['n_train_faces']} faces, "
        f"final -ELBO {last.get('loss', float('nan')):.1f})"
    )


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

    from escrow.sample import sample_face_table, write_sample_video
    from vault.db import make_engine, session_factory
    from vault.keys import KeyStore
    from vault.models import SealedRecordRow

    _need_detector()
    _setup_torch()
    st = get_settings()
    ks = KeyStore(st.keys_dir)
    if not ks.exists():
        ks.init(datetime.now(UTC), dev=True)
        typer.echo(
            f"created an escrow authority in {ks.root} (DEVELOPMENT MODE: master key in a file)"
        )
    ring = _camera_keyring_path()
    ks.add_epochs(ks.master_from(), datetime.now(UTC), 7) if ks.info()[
        "mode"
    ] == "development" else None
    ring.write_text(json.dumps(ks.camera_keyring(), indent=1))
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
    typer.echo("faces (log RP = the paper's log reconstruction probability, before the floor):")
    typer.echo(f"\n  {'crop':<28s} {'quality':>10s} {'log RP':>10s}")
    for name, quality, log_rp in sample_face_table(_scorer(None, 10)):
        typer.echo(f"  {name:<28s} {quality:10.1f} {log_rp:10.1f}")


def _camera_keyring_path() -> Path:
    st = get_settings()
    return st.camera_keyring or st.keys_dir.parent / "camera-keyring.json"


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
):
    """Shared by `capture` and `demo`: returns (summary, histories)."""
    from tqdm import tqdm

    from escrow.agent import CaptureAgent, CaptureConfig
    from escrow.detect import FrameDetector
    from escrow.sources import Source, SourceError
    from vault.db import make_engine, session_factory, upgrade
    from vault.keys import CameraKeyring, KeyRefused, KeyStoreError

    ring_path = keyring or _camera_keyring_path()
    if not ring_path.exists():
        raise UserError(
            f"no camera keyring at {ring_path}: run `escrow keys init` and "
            "`escrow keys export-camera FILE`, then pass --keyring FILE"
        )
    try:
        ring = CameraKeyring.load(ring_path)
        source = Source(source_spec, log=lambda m: typer.echo(m, err=True))
    except (KeyStoreError, SourceError) as exc:
        raise UserError(str(exc)) from exc
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

    from policies.model import PolicyError, load_policy

    try:  # how long this camera's records are kept comes from the policy
        retention = load_policy(get_settings().policy).retention.for_camera(camera_id)
    except PolicyError as exc:
        raise UserError(str(exc)) from exc
    cfg = CaptureConfig(
        camera_id=camera_id,
        min_track_frames=min_track,
        clip_seconds=clip_seconds,
        retention=retention,
    )
    agent = CaptureAgent(
        cfg,
        FrameDetector(detect_width=detect_width),
        _scorer(None, 10),
        ring,
        session_factory(engine),
        on_frame=on_frame,
        on_sealed=on_sealed if events else None,
    )
    try:
        summary = agent.run(source)
    except KeyRefused as exc:
        raise UserError(f"capture stopped: {exc}", code=4) from exc
    finally:
        bar.close()
        if writer:
            writer.close()
        engine.dispose()
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
) -> None:
    """Keep one sealed best-quality face crop per person who passes; nothing else."""
    _need_detector()
    _setup_torch()
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
    )
    if as_json:
        typer.echo(json.dumps(summary.public()))
    else:
        typer.echo(
            f"{summary.frames} frames, {summary.fps} fps: {summary.tracks} tracks, "
            f"{summary.records} records sealed, {summary.dropped_short} short tracks dropped"
        )
    if summary.truncated:
        raise UserError(
            f"the video ended early (corrupt or truncated) after {summary.frames} frames; "
            f"the {summary.records} records from before that point are stored",
            code=3,
        )


@keys_app.command("init")
def keys_init(
    dev: Annotated[
        bool, typer.Option("--dev", help="DEVELOPMENT MODE: keep the master key in a 0600 file.")
    ] = False,
    suite: Annotated[str, typer.Option(help="HPKE suite: x25519 or mlkem768-x25519.")] = "x25519",
    epoch_hours: Annotated[int, typer.Option(min=1, help="Length of a key epoch.")] = 24,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs to create from now.")] = 7,
    threshold: Annotated[int, typer.Option(min=1, help="k: shares needed to open.")] = 2,
    trustees: Annotated[int, typer.Option(min=1, help="n: shares handed out.")] = 3,
) -> None:
    """Create the escrow authority: signing key, master key, signed epoch keys."""
    from datetime import UTC, datetime

    from vault.keys import KeyStore, KeyStoreError

    if threshold > trustees:
        raise UserError("--threshold must not exceed --trustees")
    ks = KeyStore(get_settings().keys_dir)
    try:
        shares = ks.init(
            datetime.now(UTC),
            suite=suite,
            epoch_hours=epoch_hours,
            epochs_ahead=epochs,
            k=threshold,
            n=trustees,
            dev=dev,
        )
    except (KeyStoreError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    typer.echo(f"escrow authority created in {ks.root} ({suite}, {epochs} epochs)")
    if dev:
        typer.echo("DEVELOPMENT MODE: the master key is stored in master.key (0600).")
    else:
        typer.echo(f"Master-key shares ({threshold} of {trustees} needed to open), shown ONCE:")
        for i, share in enumerate(shares, 1):
            typer.echo(f"  trustee {i}: {share}")


@keys_app.command("export-camera")
def keys_export_camera(
    out: Annotated[Path, typer.Argument(help="Camera keyring file to write (public only).")],
) -> None:
    """Write the public material a camera needs to seal: authority key + signed epoch keys."""
    from vault.keys import KeyStore, KeyStoreError

    try:
        ring = KeyStore(get_settings().keys_dir).camera_keyring()
    except KeyStoreError as exc:
        raise UserError(str(exc)) from exc
    out.write_text(json.dumps(ring, indent=1))
    typer.echo(f"wrote {out}: {len(ring['epochs'])} signed epoch public keys, no private key")


def _factory():
    from vault.db import make_engine, session_factory, upgrade

    url = get_settings().database_url
    upgrade(url)
    return session_factory(make_engine(url))


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help="camera, judge, investigator, trustee, auditor, admin")],
    name: Annotated[str, typer.Option(help="Who or what holds it.")],
) -> None:
    """Create a token and print it once; only its hash is stored."""
    from datetime import UTC, datetime

    from vault import tokens

    try:
        tid, token = tokens.create(_factory(), role, name, datetime.now(UTC))
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    typer.echo(f"token {tid} ({role}, {name}); shown once, store it now:\n{token}")


@tokens_app.command("revoke")
def tokens_revoke(token_id: str) -> None:
    """Revoke a token at once."""
    from datetime import UTC, datetime

    from vault import tokens

    if not tokens.revoke(_factory(), token_id, datetime.now(UTC)):
        raise UserError(f"no active token {token_id}", code=1)
    typer.echo(f"revoked {token_id}")


@tokens_app.command("list")
def tokens_list() -> None:
    """Token ids, roles, names and state (never the tokens)."""
    from vault import tokens

    for t in tokens.list_tokens(_factory()):
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        typer.echo(f"{t.id}  {t.role:<12s} {t.name:<24s} {state}")


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

    from policies.model import PolicyError, load_policy
    from vault.db import make_engine, upgrade
    from vault.keys import KeyStore
    from vault.retention import sweep as run_sweep

    if once == daemon:
        raise UserError("say --once or --daemon")
    try:
        pol = load_policy(policy or get_settings().policy)
    except PolicyError as exc:
        raise UserError(str(exc)) from exc
    st = get_settings()
    upgrade(st.database_url)

    def one_sweep() -> None:
        engine = make_engine(st.database_url)
        try:
            now = datetime.now(UTC)
            result = run_sweep(engine, KeyStore(st.keys_dir), now, pol.sweep.batch)
        finally:
            engine.dispose()
        typer.echo(json.dumps({"at": now.isoformat(), **result.summary()}))
        sys.stdout.flush()

    if once:
        one_sweep()
        return
    from apscheduler.schedulers.blocking import BlockingScheduler

    sched = BlockingScheduler(timezone="UTC")
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
    try:
        sched.start()
    except (KeyboardInterrupt, SystemExit):
        sched.shutdown(wait=False)


@retention_app.command("report")
def retention_report() -> None:
    """What was erased when, which keys were destroyed, and what is held and why (JSON)."""
    from datetime import UTC, datetime

    from vault.retention import report

    typer.echo(json.dumps(report(_factory(), datetime.now(UTC)), indent=1))


@policy_app.command("check")
def policy_check(
    file: Annotated[
        Path | None, typer.Argument(help="Policy TOML (default: the shipped one).")
    ] = None,
) -> None:
    """Validate a policy file and print the effective policy."""
    from policies.model import PolicyError, load_policy

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        raise UserError(str(exc)) from exc
    typer.echo(json.dumps(policy.effective(), indent=1))


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[
        str | None, typer.Option(help="A head hash recorded earlier: also catches cut tails.")
    ] = None,
) -> None:
    """Check every link of the audit trail; exit 1 at the first broken one."""
    from vault import audit
    from vault.db import make_engine, session_factory

    engine = make_engine(get_settings().database_url)
    try:
        v = audit.verify(session_factory(engine), expect_head)
    finally:
        engine.dispose()
    if not v.ok:
        raise UserError(f"audit trail BROKEN at entry {v.broken_at}: {v.reason}", code=1)
    typer.echo(f"audit trail intact: {v.entries} entries, head {v.head}")


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


def main() -> None:
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        app()
    except UserError as exc:
        _err(str(exc))
        sys.exit(exc.code)
    except OperationalError as exc:  # the database is unreachable or refused us
        _err(f"database error ({get_settings().database_url}): {exc.orig}".strip())
        sys.exit(5)
    except ArgumentError as exc:
        _err(f"bad database URL {get_settings().database_url!r}: {exc}")
        sys.exit(2)
    except CommandError as exc:  # alembic: unknown revision and the like
        _err(f"migration: {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
