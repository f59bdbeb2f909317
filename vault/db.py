"""Engine and the one session factory every database access goes through."""

from __future__ import annotations

from pathlib import Path

from escrow.records import ensure_sqlite_dir, make_engine, session_factory

__all__ = ["downgrade", "make_engine", "session_factory", "upgrade"]


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    ensure_sqlite_dir(url)
    command.upgrade(_alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(_alembic_config(url), revision)


def _alembic_config(url: str):
    from alembic.config import Config

    root = Path(__file__).resolve().parents[1]
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ini interpolation
    return cfg
