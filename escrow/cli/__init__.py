"""The `escrow` command line: one Typer app, each sub-command a thin call into a package.

Errors a user can cause (a missing file, a bad weights file, a broken install) end as one
plain line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import sys

from escrow.cli import audit_cmds, camera, client_cmds, erc, faces, retention, serve, vault_cmds  # noqa: F401  (register commands)
from escrow.cli.app import UserError, app, err
from escrow.settings import get_settings

__all__ = ["app", "main"]


def main() -> None:
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        app()
    except UserError as exc:
        err(str(exc))
        sys.exit(exc.code)
    except OperationalError as exc:  # the database is unreachable or refused us
        err(f"database error ({get_settings().database_url}): {exc.orig}".strip())
        sys.exit(5)
    except ArgumentError as exc:
        err(f"bad database URL {get_settings().database_url!r}: {exc}")
        sys.exit(2)
    except CommandError as exc:  # alembic: unknown revision and the like
        err(f"migration: {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        err("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
