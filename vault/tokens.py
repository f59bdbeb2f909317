"""Bearer tokens with exactly one role each, stored only as SHA-256 hashes.

Tokens are 256 random bits, so a plain (unsalted) hash is enough: there is nothing to guess,
and lookup by hash keeps authentication a single indexed query.

Every token expires (a camera's after a year, any other after 90 days unless told otherwise),
so a token that leaked and was never revoked stops working on its own.

Separation of duties: a judge, trustee or auditor token is only honoured if its row carries
the escrow authority's Ed25519 signature over what makes it that token (id, role, name,
trustee index, expiry, hash). Whoever can write the database (an admin with a connection or
a copy) can insert a row with a hash of their own, but cannot sign it, so cannot make
themselves a judge who issues warrants, a trustee who approves openings, or the auditor.
Cameras, investigators and admins need no signature: what they may do is checked elsewhere
(a warrant, k trustee approvals) or cannot open anything.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from escrow.canonical import as_utc, canonical_json, iso_utc
from vault.models import ApiToken

ROLES = ("camera", "judge", "investigator", "trustee", "auditor", "admin")
# Roles whose tokens only the escrow authority can issue (signed), never the API's admin.
PRIVILEGED = ("judge", "trustee", "auditor")
# How long a token lives unless told otherwise: cameras sit on a pole for a year; a person's
# token is renewed each quarter, so one forgotten on a departed person's laptop dies soon.
LIFETIME = {"camera": timedelta(days=365)}
DEFAULT_LIFETIME = timedelta(days=90)
# Shamir shares are points over GF(256): there are never more than 255 trustees.
MAX_TRUSTEES = 255
PREFIX = "kfe_"
# How finely a token's last use is kept (tokens.touch).
LAST_USE_STEP = timedelta(minutes=1)
SIGNING_CONTEXT = b"keyframe-escrow api-token v1\x00"


class Unauthorized(Exception):
    """Unknown, revoked, expired or unsigned token (HTTP 401). `token_id` names the row, if
    one was found, for the audit trail (never the token itself)."""

    def __init__(self, message: str, token_id: str | None = None):
        super().__init__(message)
        self.token_id = token_id


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def lifetime(role: str) -> timedelta:
    """The default lifetime of a new token of `role`."""
    return LIFETIME.get(role, DEFAULT_LIFETIME)


def expiry(row: ApiToken) -> datetime:
    """When `row` stops working. A row from before expiries were recorded lives its role's
    default lifetime from its creation, not for ever."""
    if row.expires_at is not None:
        return as_utc(row.expires_at)
    return as_utc(row.created) + lifetime(row.role)


def check(role: str, trustee_index: int | None, trustees: int | None = None) -> None:
    """Refuse (ValueError) a token that must not be made: an unknown role, a trustee without
    their share's index (1..n, n = `trustees` when known), an index on any other role."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if role != "trustee":
        if trustee_index is not None:
            raise ValueError("only a trustee token carries a trustee index")
        return
    top = min(trustees or MAX_TRUSTEES, MAX_TRUSTEES)
    if trustee_index is None:
        raise ValueError(f"a trustee token needs its trustee index (1..{top})")
    if not 1 <= trustee_index <= top:
        raise ValueError(f"trustee index {trustee_index} is not one of 1..{top}")


def signed_bytes(
    token_id: str,
    role: str,
    name: str,
    trustee_index: int | None,
    expires_at: datetime | None,
    token_sha256: str,
) -> bytes:
    """The canonical encoding the authority signs: a fixed context, then sorted, compact JSON
    (times in UTC to the microsecond, as both engines store them)."""
    body = {
        "id": token_id,
        "role": role,
        "name": name,
        "trustee_index": trustee_index,
        "expires_at": iso_utc(expires_at) if expires_at is not None else None,
        "token_sha256": token_sha256,
    }
    return SIGNING_CONTEXT + canonical_json(body)


def _row_bytes(row: ApiToken) -> bytes:
    return signed_bytes(
        row.id, row.role, row.name, row.trustee_index, row.expires_at, row.token_sha256
    )


def issued_by_authority(row: ApiToken, authority_key: Ed25519PublicKey | None) -> bool:
    """Whether `row` carries a valid signature of the escrow authority (False without a key:
    a vault that cannot check cannot honour a privileged token)."""
    if authority_key is None or not row.signature:
        return False
    try:
        authority_key.verify(bytes(row.signature), _row_bytes(row))
    except InvalidSignature:
        return False
    return True


def create(
    factory: sessionmaker[Session], role: str, name: str, now: datetime, **options
) -> tuple[str, str]:
    """-> (token id, the token itself: shown once, never stored), in a transaction of its
    own. `options`: add()'s (expires, trustee_index, signer, trustees)."""
    with factory.begin() as s:
        return add(s, role, name, now, **options)


def add(
    s: Session,
    role: str,
    name: str,
    now: datetime,
    *,
    expires: timedelta | None = None,
    trustee_index: int | None = None,
    signer: Ed25519PrivateKey | None = None,
    trustees: int | None = None,
) -> tuple[str, str]:
    """Like create(), inside the caller's transaction (so its audit entry commits with it).

    `expires`: lifetime from `now` (default: lifetime(role)). `signer`: the escrow
    authority's signing key, required for judge, trustee and auditor tokens (ValueError
    without it). `trustee_index`: a trustee's share index, required for trustees only;
    `trustees` (n), when given, bounds it."""
    check(role, trustee_index, trustees)
    if role in PRIVILEGED and signer is None:
        raise ValueError(f"a {role} token is issued by the escrow authority only (its signing key)")
    life = lifetime(role) if expires is None else expires
    if life <= timedelta(0):
        raise ValueError("a token's lifetime must be positive")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        id=str(uuid.uuid4()),
        name=name,
        role=role,
        token_sha256=_digest(token),
        created=now,
        expires_at=as_utc(now + life),
        trustee_index=trustee_index,
    )
    if signer is not None:
        row.signature = signer.sign(_row_bytes(row))
    s.add(row)
    s.flush()
    return row.id, token


def authenticate(
    factory: sessionmaker[Session],
    token: str,
    now: datetime,
    authority_key: Ed25519PublicKey | None,
) -> ApiToken:
    """The token's row, if it may be used at `now`; else Unauthorized. A judge, trustee or
    auditor token must carry the signature of `authority_key` (none: such tokens are refused),
    checked before the expiry, which the signature covers."""
    with factory() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(token)))
    return touch(factory, _usable(row, now, authority_key), now)


def authenticate_id(
    factory: sessionmaker[Session],
    token_id: str,
    now: datetime,
    authority_key: Ed25519PublicKey | None,
) -> ApiToken:
    """As `authenticate`, by the row's id: the console's session names the token it was
    opened with, so a revoked or expired token ends its sessions at their next request."""
    with factory() as s:
        row = s.get(ApiToken, token_id)
    return touch(factory, _usable(row, now, authority_key), now)


def touch(factory: sessionmaker[Session], row: ApiToken, now: datetime) -> ApiToken:
    """Record that `row` was used at `now`, at most once a LAST_USE_STEP: a camera posting
    every second must not turn each of its requests into a write."""
    last = as_utc(row.last_used_at) if row.last_used_at is not None else None
    if last is None or now - last >= LAST_USE_STEP:
        with factory.begin() as s:
            s.execute(
                update(ApiToken)
                .where(
                    ApiToken.id == row.id,
                    or_(
                        ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - LAST_USE_STEP
                    ),
                )
                .values(last_used_at=now)
            )
        row.last_used_at = now
    return row


def _usable(
    row: ApiToken | None, now: datetime, authority_key: Ed25519PublicKey | None
) -> ApiToken:
    if row is None or row.revoked_at is not None:
        raise Unauthorized("unknown or revoked token", row.id if row else None)
    if row.role in PRIVILEGED and not issued_by_authority(row, authority_key):
        raise Unauthorized("token not issued by the escrow authority", row.id)
    if now >= expiry(row):
        raise Unauthorized("token expired", row.id)
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
