"""The vault's record store: the shared put/get/delete (escrow.records, the same rows a
camera's outbox holds) and what only a vault does with them (listing by time, marking a
shredded epoch, folding SQLite's log after secrets were wiped)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from escrow.records import (
    StoreError,
    delete,
    ensure_camera,
    expires_at,
    get,
    other_content,
    put,
    register_epochs,
    row_from_sealed,
    sealed_from_row,
)
from vault.models import KeyEpoch, SealedRecordRow

__all__ = [
    "StoreError",
    "checkpoint_wal",
    "delete",
    "ensure_camera",
    "expires_at",
    "get",
    "ingest_stats",
    "list_ids",
    "mark_epoch_destroyed",
    "other_content",
    "put",
    "register_epochs",
    "row_from_sealed",
    "sealed_from_row",
]


def list_ids(
    factory: sessionmaker[Session], camera_id: str, start: datetime, end: datetime
) -> list[str]:
    """Record ids of one camera whose best frame lies in [start, end): index only."""
    with factory() as s:
        q = (
            select(SealedRecordRow.id)
            .where(SealedRecordRow.camera_id == camera_id)
            .where(SealedRecordRow.best_time >= start, SealedRecordRow.best_time < end)
            .order_by(SealedRecordRow.best_time)
        )
        return list(s.scalars(q))


def checkpoint_wal(engine) -> None:
    """SQLite keeps overwritten pages in its write-ahead log until a checkpoint: after wiping
    secrets (sealed shares), fold the log into the (secure_delete) file and truncate it."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def mark_epoch_destroyed(factory: sessionmaker[Session], epoch_id: str, now: datetime) -> None:
    """Record in the index that an epoch's key was shredded (vault.keys.KeyStore.shred)."""
    with factory.begin() as s:
        epoch = s.get(KeyEpoch, epoch_id)
        if epoch is None:
            raise StoreError(f"no such epoch: {epoch_id}")
        epoch.destroyed_at = now


def ingest_stats(s: Session, now: datetime, window: timedelta = timedelta(hours=24)) -> list[dict]:
    """Per camera, over the last `window`: records received, the rate per hour, and the
    outbox lag (received - the track's last frame: how long records waited on the camera),
    median and worst; and when the camera last delivered."""
    from escrow.canonical import as_utc

    since = now - window
    rows = s.execute(
        select(SealedRecordRow.camera_id, SealedRecordRow.created, SealedRecordRow.last_seen)
    ).all()
    out: dict[str, dict] = {}
    for cam, created, last_seen in rows:
        d = out.setdefault(cam, {"camera": cam, "lags": [], "last": None, "total": 0})
        created = as_utc(created)
        d["total"] += 1
        d["last"] = max(d["last"], created) if d["last"] else created
        if created >= since:
            d["lags"].append((created - as_utc(last_seen)).total_seconds())
    result = []
    for d in sorted(out.values(), key=lambda d: d["camera"]):
        lags = sorted(d.pop("lags"))
        hours = window.total_seconds() / 3600
        result.append(
            {
                **d,
                "recent": len(lags),
                "per_hour": len(lags) / hours,
                "lag_median_s": lags[len(lags) // 2] if lags else None,
                "lag_max_s": lags[-1] if lags else None,
            }
        )
    return result
