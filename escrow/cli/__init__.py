"""The `escrow` command line: one Typer app, each sub-command a thin call into a package.

Errors a user can cause (a missing file, a bad weights file, a broken install) end as one
plain line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import sys

from escrow.cli import admin, camera, client, oversight, quality  # noqa: F401  (register commands)
from escrow.cli.app import UserError, app, err
from escrow.settings import get_settings

__all__ = ["app", "main"]


def _known_failure(exc: Exception) -> tuple[str, int] | None:
    """Database and migration failures as (one line, exit code). SQLAlchemy and Alembic are
    looked up only here: a client-only or camera-only install may lack one or both."""
    try:
        from sqlalchemy.exc import ArgumentError, OperationalError
    except ImportError:
        return None
    if isinstance(exc, OperationalError):  # the database is unreachable or refused us
        return f"database error ({get_settings().database_url}): {exc.orig}".strip(), 5
    if isinstance(exc, ArgumentError):
        return f"bad database URL {get_settings().database_url!r}: {exc}", 2
    try:
        from alembic.util.exc import CommandError
    except ImportError:
        return None
    if isinstance(exc, CommandError):  # alembic: unknown revision and the like
        return f"migration: {exc}", 2
    return None


def main() -> None:
    try:
        app()
    except UserError as exc:
        err(str(exc))
        sys.exit(exc.code)
    except KeyboardInterrupt:
        err("interrupted")
        sys.exit(130)
    except Exception as exc:
        known = _known_failure(exc)
        if known is None:
            raise
        err(known[0])
        sys.exit(known[1])


if __name__ == "__main__":
    main()
