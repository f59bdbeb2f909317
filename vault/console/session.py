"""Console sessions: a role's token is exchanged once for a short-lived cookie, so the token
itself never sits in the browser. The cookie is a Fernet token (AES-CBC + HMAC, from
`cryptography`) over {session id, token id, expiry}: unreadable and unforgeable without the
console key, a file in the key store (shared by replicas, never in the database).

Every request re-reads the token's row (tokens.authenticate_id): revoking or expiring a token
ends its sessions at once. Forms carry a CSRF token, an HMAC of the session id under the same
key; the login form, before any session exists, a double-submit cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from vault import keys

COOKIE = "kfe_session"
LOGIN_COOKIE = "kfe_login"
KEY_FILE = "console-session.key"


class ConsoleKey:
    """The console's secret, created 0600 on first use in the key store's folder."""

    def __init__(self, keys_dir: Path):
        self.path = Path(keys_dir) / KEY_FILE

    def raw(self) -> bytes:
        if not self.path.exists():  # another replica may be making it now: its wins, whole
            keys.create_once(self.path, Fernet.generate_key())
        return self.path.read_bytes().strip()

    def fernet(self) -> Fernet:
        return Fernet(self.raw())

    def mac(self, purpose: str, value: str) -> str:
        k = hashlib.sha256(b"keyframe-escrow console " + purpose.encode() + self.raw()).digest()
        return hmac.new(k, value.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Session:
    sid: str
    token_id: str
    expires: datetime

    def csrf(self, key: ConsoleKey) -> str:
        return key.mac("csrf", self.sid)


def open_session(
    key: ConsoleKey, token_id: str, now: datetime, lifetime: timedelta
) -> tuple[Session, str]:
    """A new session for `token_id`, and its cookie value."""
    sess = Session(secrets.token_urlsafe(16), token_id, now + lifetime)
    body = {"sid": sess.sid, "tid": token_id, "exp": sess.expires.timestamp()}
    return sess, key.fernet().encrypt(json.dumps(body).encode()).decode()


def read_session(key: ConsoleKey, cookie: str | None, now: datetime) -> Session | None:
    """The session a cookie carries if it is genuine and not expired at `now`; else None."""
    if not cookie:
        return None
    try:
        body = json.loads(key.fernet().decrypt(cookie.encode()))
        expires = datetime.fromtimestamp(float(body["exp"]), tz=now.tzinfo)
        sess = Session(str(body["sid"]), str(body["tid"]), expires)
    except (InvalidToken, ValueError, KeyError, TypeError):
        return None
    return sess if now < sess.expires else None


def check_csrf(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


def login_nonce() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()
