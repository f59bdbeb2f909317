"""The retention sweeper as an APScheduler job inside `escrow serve`.

The first run is at start, so whatever fell due while no server ran is caught up at once;
then one run per `sweep.every`. Runs never overlap in one process (max_instances=1), and
several servers on one PostgreSQL do not sweep together (the sweep's advisory lock)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from vault import retention
from vault.api.context import VaultContext

log = logging.getLogger("keyframe-escrow.sweeper")


def run_sweep(ctx: VaultContext) -> retention.SweepResult:
    result = retention.sweep(
        ctx.engine,
        ctx.keystore,
        ctx.clock(),
        ctx.policy.sweep.batch,
        after_warrant=ctx.policy.legal_hold.after_warrant,
        unfetched_after=ctx.policy.openings.unfetched_after,
        keep_keys_for=ctx.policy.retention.for_camera,
    )
    log.info("retention sweep: %s", result.summary())
    return result


def start_sweeper(ctx: VaultContext) -> BackgroundScheduler:
    sched = BackgroundScheduler(timezone=UTC)
    sched.add_job(
        run_sweep,
        "interval",
        args=[ctx],
        id="retention-sweep",
        seconds=ctx.policy.sweep.every.total_seconds(),
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )
    sched.start()
    return sched
