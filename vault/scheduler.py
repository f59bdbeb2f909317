"""The retention sweeper as an APScheduler job: the one scheduler that `escrow serve` runs
inside the server and `escrow sweep --daemon` runs on its own.

The first run is at start, so whatever fell due while no sweeper ran is caught up at once;
then one run per `sweep.every`. Runs never overlap in one process (max_instances=1), a run
that falls due late still runs (no misfire grace), and several sweepers on one PostgreSQL do
not sweep together (the sweep's advisory lock)."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler

from escrow.canonical import utcnow
from vault import retention

if TYPE_CHECKING:  # the CLI's sweeper needs neither the API nor FastAPI
    from sqlalchemy.engine import Engine

    from policies.schema import Policy
    from vault.api.context import VaultContext
    from vault.keys import KeyStore

log = logging.getLogger("keyframe-escrow.sweeper")


def sweep_once(
    engine: Engine, keystore: KeyStore, policy: Policy, now: datetime
) -> retention.SweepResult:
    """One sweep with the policy's batch, hold grace, request expiry and key retention."""
    return retention.sweep(
        engine,
        keystore,
        now,
        policy.sweep.batch,
        after_warrant=policy.legal_hold.after_warrant,
        unfetched_after=policy.openings.unfetched_after,
        keep_keys_for=policy.retention.for_camera,
        rule=policy.retention.rule,
    )


def run_sweep(ctx: VaultContext) -> retention.SweepResult:
    """The server's job: one sweep on the API's engine and clock, logged."""
    result = sweep_once(ctx.engine, ctx.keystore, ctx.policy, ctx.clock())
    log.info("retention sweep: %s", result.summary())
    return result


def start(job: Callable[[], object], every: timedelta) -> BackgroundScheduler:
    """Run `job` now, then every `every`, in a worker thread."""
    sched = BackgroundScheduler(timezone=UTC)
    sched.add_job(
        job,
        "interval",
        id="retention-sweep",
        seconds=every.total_seconds(),
        next_run_time=utcnow(),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )
    sched.start()
    return sched


def start_sweeper(ctx: VaultContext) -> BackgroundScheduler:
    """The sweeper inside `escrow serve`; the app's lifespan shuts it down."""
    return start(partial(run_sweep, ctx), ctx.policy.sweep.every)


def run_forever(job: Callable[[], object], every: timedelta) -> None:
    """The sweeper as a process of its own (`escrow sweep --daemon`) until SIGINT or SIGTERM.

    The jobs run in a worker thread; the main thread only waits, in short sleeps, so a stop
    signal is acted on within 0.2 s whatever the sweep interval."""

    def stop(signum, frame):  # SIGTERM (a service manager) stops it like Ctrl-C
        raise KeyboardInterrupt

    # Installed explicitly, SIGINT too: a process started with SIGINT ignored (nohup, some
    # supervisors, a parent that ignores it) inherits that, and Python then never raises
    # KeyboardInterrupt, so Ctrl-C would not stop the daemon.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    sched = start(job, every)
    try:
        while sched.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sched.shutdown(wait=False)
