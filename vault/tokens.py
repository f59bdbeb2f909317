"""Bearer tokens with exactly one role each, stored only as SHA-256 hashes.

Tokens are 256 random bits, so a plain (unsalted) hash is enough: there is nothing to guess,
and lookup by hash keeps authentication a single indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vault.models import ApiToken

ROLES = ("camera", "judge", "investigator", "trustee", "auditor", "admin")
PREFIX = "kfe_"


class Unauthorized(Exception):
    """Unknown or revoked token (HTTP 401)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(
    factory: sessionmaker[Session],
    role: str,
    name: str,
    now: datetime,
    trustee_index: int | None = None,
) -> tuple[str, str]:
    """-> (token id, the token itself: shown once, never stored)."""
    with factory.begin() as s:
        return add(s, role, name, now, trustee_index)


def add(
    s: Session, role: str, name: str, now: datetime, trustee_index: int | None = None
) -> tuple[str, str]:
    """Like create(), inside the caller's transaction (so its audit entry commits with it)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    token = PREFIX + secrets.token_urlsafe(32)
    tid = str(uuid.uuid4())
    if (role == "trustee") != (trustee_index is not None):
        raise ValueError("a trustee token names its trustee key (1..n); no other role does")
    s.add(
        ApiToken(
            id=tid,
            name=name,
            role=role,
            token_sha256=_digest(token),
            created=now,
            trustee_index=trustee_index,
        )
    )
    s.flush()
    return tid, token


def authenticate(factory: sessionmaker[Session], token: str) -> ApiToken:
    with factory() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(token)))
    if row is None or row.revoked_at is not None:
        raise Unauthorized("unknown or revoked token")
    return row


def revoke(factory: sessionmaker[Session], token_id: str, now: datetime) -> bool:
    with factory.begin() as s:
        row = s.get(ApiToken, token_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = now
        return True


def list_tokens(factory: sessionmaker[Session]) -> list[ApiToken]:
    with factory() as s:
        return list(s.scalars(select(ApiToken).order_by(ApiToken.created)))
