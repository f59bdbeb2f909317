"""The pattern every endpoint that acts shares: the request's time, one transaction, the
domain call, and the action's audit entry in that same transaction, so nothing is done
unrecorded and nothing is recorded undone (a refusal rolls both back; errors.py audits it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from vault import audit
from vault.api.context import VaultContext
from vault.api.deps import Caller


@dataclass(frozen=True)
class Action:
    s: Session
    now: datetime
    actor: str

    def audit(self, action: str, detail: dict) -> None:
        audit.append(self.s, self.actor, action, detail, self.now)


@contextmanager
def act(ctx: VaultContext, caller: Caller) -> Iterator[Action]:
    """`with act(ctx, caller) as a:` a transaction at the context's clock, for `caller`.
    The trail's writer lock is taken first, before any row: every action ends by appending
    to the trail, and the sweeper takes that lock before the rows it closes or erases, so an
    action that locked a row (a request, a warrant) first and then waited for the trail
    could deadlock with it, or with another action (a release against a revocation)."""
    now = ctx.clock()
    with ctx.factory.begin() as s:
        audit.lock(s)
        yield Action(s, now, caller.actor)
