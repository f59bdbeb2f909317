"""The byte forms that get signed, hashed or bound as associated data, and UTC time.

Camera, trustee and vault must produce the same bytes for the same thing, or a signature, a
hash chain or an AEAD tag stops verifying; so there is one function for each form, here.

Why not RFC 8785 (JCS): every form below is already in signatures, audit chains and sealed
records in the field. JCS escapes no non-ASCII and writes numbers differently, so switching
would break what exists; these forms are "sorted keys, ASCII-escaped, Python's `json`",
which is deterministic for the str/int/bool/None/list/dict values we sign.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime


def canonical_json(obj: object, *, spaced: bool = False) -> bytes:
    """Sorted keys, compact separators. `spaced=True` keeps `json`'s default ", " and ": "
    for the three forms first signed that way (warrants, epoch certificates, request
    digests): their signatures and digests exist and must keep verifying."""
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(obj, sort_keys=True, separators=separators).encode()


def as_utc(d: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


def iso_utc(d: datetime) -> str:
    """A time as signed and hashed: UTC, microseconds always written."""
    return as_utc(d).isoformat(timespec="microseconds")


def parse_time(s: str) -> datetime:
    """ISO 8601 with `Z` accepted (Python 3.11 reads it, older peers wrote `+00:00`)."""
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def utcnow() -> datetime:
    return datetime.now(UTC)
