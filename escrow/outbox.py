"""Store-and-forward from camera to vault.

With `--vault-url`, the camera's local SQLite store is its outbox: records are sealed and
committed there first (so a crash or a vault outage loses nothing), and a sender posts them
to the vault's /ingest in batches, deleting each only after the vault has acknowledged it.
The outbox never holds anything but sealed records (secure_delete zeroes what it deletes).
Unreachable or overloaded vaults are retried with exponential backoff; a record the vault
refuses for good stays in the outbox and is reported, never dropped. A record the vault
answers as already erased by its retention (re-sent after a lost acknowledgement) counts as
delivered: the vault acknowledges it in `stored` and names it in `erased`. One refusal is a
delivery too: the vault holding this camera's record id under other content. Ids derive from
camera, source and track, so that is a capture restarted on the same input (after a crash,
a SIGKILL) that sealed a track again after its first sealing had reached the vault; kept,
it would wait in the outbox forever and be refused at every send.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from escrow import sealing
from escrow.client import VaultClient, VaultError
from escrow.records import KeyEpoch, SealedRecordRow, other_content, sealed_from_row
from escrow.records import delete as delete_records


@dataclass
class SendReport:
    sent: int = 0
    # acknowledged as erased by the vault's retention before (a re-send after a lost ack):
    # delivered all the same, and deleted here; not stored again there
    erased: list[str] = field(default_factory=list)
    already_held: int = 0  # sealed again by a restarted capture; the vault's copy stands
    refused: dict[str, str] = field(default_factory=dict)  # record id -> the vault's reason
    last_error: str = ""
    waiting: int = 0


class Sender:
    def __init__(
        self,
        factory: sessionmaker[Session],
        client: VaultClient,
        batch: int = 50,
        backoff: tuple[float, float] = (0.5, 60.0),
    ):
        self.factory, self.client, self.batch = factory, client, batch
        self.backoff = backoff
        self.report = SendReport()

    def waiting(self) -> int:
        with self.factory() as s:
            return len(s.scalars(select(SealedRecordRow.id)).all())

    def _next_batch(self) -> list[dict]:
        with self.factory() as s:
            rows = s.scalars(
                select(SealedRecordRow)
                .where(SealedRecordRow.id.not_in(list(self.report.refused) or [""]))
                .order_by(SealedRecordRow.created, SealedRecordRow.id)
                .limit(self.batch)
            ).all()
            keys = {
                e.id: hashlib.sha256(e.public_key).hexdigest()
                for e in s.scalars(
                    select(KeyEpoch).where(KeyEpoch.id.in_({r.epoch_id for r in rows}))
                )
            }
            return [
                sealing.to_wire(sealed_from_row(r), r.track_id, r.quality, keys[r.epoch_id])
                for r in rows
            ]

    def _post(self, records: list[dict]) -> None:
        answer = self.client.ingest(records)
        acked = set(answer["stored"]) & {r["record_id"] for r in records}
        cams = {r["record_id"]: r["camera_id"] for r in records}
        for rid in sorted(acked):
            delete_records(self.factory, [rid], cams[rid])  # only what the vault acknowledged
        self.report.sent += len(acked)
        self.report.erased += sorted(set(answer.get("erased", ())) & acked)

    def drain_once(self) -> bool:
        """Send what is waiting. True when nothing sendable is left; raises VaultError when
        the vault is unreachable or failing (worth retrying)."""
        while records := self._next_batch():
            try:
                self._post(records)
            except VaultError as exc:
                if exc.retryable:
                    raise
                for rec in records:  # isolate the record(s) the vault refuses for good
                    try:
                        self._post([rec])
                    except VaultError as one:
                        if one.retryable:
                            raise
                        if one.status == 409 and one.detail == other_content(rec["record_id"]):
                            delete_records(self.factory, [rec["record_id"]], rec["camera_id"])
                            self.report.already_held += 1
                            continue
                        self.report.refused[rec["record_id"]] = one.detail
        return True

    def run(self, stop: threading.Event, deadline: float | None = None) -> SendReport:
        """Keep draining until `stop` is set and the outbox is empty (or `deadline`, a
        time.monotonic() value, passes), backing off while the vault is away."""
        delay = self.backoff[0]
        while True:
            try:
                self.drain_once()
                delay = self.backoff[0]
                if stop.is_set():
                    break
                stop.wait(0.5)
            except VaultError as exc:
                self.report.last_error = str(exc)
                if deadline is not None and time.monotonic() + delay > deadline:
                    break
                if stop.wait(delay) and deadline is None:
                    break
                delay = min(delay * 2, self.backoff[1])
            if deadline is not None and time.monotonic() > deadline:
                break
        self.report.waiting = self.waiting()
        return self.report
