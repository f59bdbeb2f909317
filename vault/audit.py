"""The append-only, hash-chained audit trail.

Entry n carries hash_n = SHA-256(hash_{n-1} || canonical(n, time, actor, action, detail)).
Ids are explicit and consecutive, so editing, deleting, inserting or reordering entries breaks
a link that `verify` reports. Appends happen inside the caller's transaction: if the entry
cannot be written, the action it records fails with it (fail closed). Concurrent appenders are
serialised by a writer lock held to the end of the transaction (an advisory lock on
PostgreSQL, SQLite's own write lock there), and the primary key still refuses a second entry
n should anything slip past (the loser retries on the new head).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from escrow.canonical import canonical_json, iso_utc
from vault.models import AuditEntry

GENESIS = "0" * 64
_LOCK_KEY = 0x6B66_6573  # "kfes"


def entry_hash(prev_hash: str, n: int, at: datetime, actor: str, action: str, detail: str) -> str:
    body = canonical_json([n, iso_utc(at), actor, action, detail])
    return hashlib.sha256(prev_hash.encode() + b"\x00" + body).hexdigest()


def lock(s: Session) -> None:
    """Take the trail's writer lock now, held to the end of the transaction.
    An action that reads, then writes what it read about, takes it first, so that two such
    actions run one after the other instead of racing: they will queue on it anyway.

    On SQLite the driver opens a transaction only at the first write, so the head read by
    `append` was read outside it, and under load a writer could lose the race for entry n
    time after time (CI saw one lose 20 in a row). A write that touches no row starts the
    transaction and takes SQLite's write lock (waiting out the busy timeout like any writer),
    so the read that follows sees the true head."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    elif dialect == "sqlite":
        s.execute(text("UPDATE audit_log SET id = id WHERE 0"))


def append(s: Session, actor: str, action: str, detail: dict, now: datetime) -> AuditEntry:
    """Add an entry in the caller's transaction (flushes, so a conflict surfaces here)."""
    lock(s)
    head = s.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).scalar()
    n = (head.id + 1) if head else 1
    prev = head.hash if head else GENESIS
    body = canonical_json(detail).decode()
    e = AuditEntry(
        id=n,
        at=now,
        actor=actor,
        action=action,
        detail=body,
        prev_hash=prev,
        hash=entry_hash(prev, n, now, actor, action, body),
    )
    s.add(e)
    s.flush()
    return e


def record(
    factory: sessionmaker[Session],
    actor: str,
    action: str,
    detail: dict,
    now: datetime,
    attempts: int = 20,
) -> int:
    """Append one entry in its own transaction, retrying if another writer got there first."""
    for _ in range(attempts):
        try:
            with factory.begin() as s:
                return append(s, actor, action, detail, now).id
        except IntegrityError:
            continue
    raise RuntimeError("could not append to the audit trail (contention)")


@dataclass
class Verdict:
    ok: bool
    entries: int
    head: str
    broken_at: int | None = None
    reason: str = ""


def verify(factory: sessionmaker[Session], expect_head: str | None = None) -> Verdict:
    """Walk the chain from the start; report the first broken link. Deleting entries at the
    end leaves a shorter but valid chain: pass a head hash recorded earlier (printed by
    `escrow audit verify`, kept by an auditor) to detect that too."""
    prev_hash, expected, count, seen_head = GENESIS, 1, 0, expect_head is None
    with factory() as s:
        for e in s.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars():
            count += 1
            if e.id != expected:
                return Verdict(False, count, prev_hash, expected, f"entry {expected} is missing")
            if e.prev_hash != prev_hash:
                return Verdict(False, count, prev_hash, e.id, "does not link to the entry before")
            if e.hash != entry_hash(prev_hash, e.id, e.at, e.actor, e.action, e.detail):
                return Verdict(False, count, prev_hash, e.id, "content does not match its hash")
            prev_hash, expected = e.hash, expected + 1
            seen_head = seen_head or e.hash == expect_head
    if not seen_head:
        return Verdict(False, count, prev_hash, expected, "entries at the end were removed")
    return Verdict(True, count, prev_hash)


def _filtered(
    q,
    action: str | None,
    actor: str | None,
    record: str | None,
    since: datetime | None,
    until: datetime | None,
):
    """The auditor's filters. `action` matches exactly or as a prefix ending in '.'
    ('request.' for every request action); `actor` exactly ('judge:Judge Ito') or by role
    ('judge'); `record` any entry whose detail names that id (ingest, request, release,
    erasure); `since` inclusive, `until` exclusive."""
    if action:
        q = q.where(
            AuditEntry.action.startswith(action, autoescape=True)
            if action.endswith(".")
            else AuditEntry.action == action
        )
    if actor:
        q = q.where(
            (AuditEntry.actor == actor) | AuditEntry.actor.startswith(f"{actor}:", autoescape=True)
        )
    if record:
        q = q.where(AuditEntry.detail.contains(f'"{record}"', autoescape=True))
    if since:
        q = q.where(AuditEntry.at >= since)
    if until:
        q = q.where(AuditEntry.at < until)
    return q


def entries(
    s: Session,
    after: int = 0,
    limit: int = 100,
    action: str | None = None,
    actor: str | None = None,
    record: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AuditEntry]:
    """Entries above id `after`, oldest first, at most `limit`: the auditor's reading of the
    trail through the API (filters as `_filtered`)."""
    q = _filtered(
        select(AuditEntry).where(AuditEntry.id > after), action, actor, record, since, until
    )
    return list(s.scalars(q.order_by(AuditEntry.id).limit(limit)))


def find(
    s: Session,
    *,
    action: str | None = None,
    actor: str | None = None,
    record: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> list[AuditEntry]:
    """The same filters, newest first: the console's view of the trail."""
    q = _filtered(select(AuditEntry), action, actor, record, since, until)
    return list(s.scalars(q.order_by(AuditEntry.id.desc()).limit(limit)))


def actions(s: Session) -> list[str]:
    """Every action the trail holds, for a filter's choices."""
    return list(s.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))
