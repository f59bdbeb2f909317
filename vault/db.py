"""The vault's schema migrations (Alembic, shipped as package data); the engine and session
factory every database access goes through are escrow.records', re-exported here."""

from __future__ import annotations

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
    """Alembic's configuration, made here rather than read from alembic.ini (which only a
    checkout has; it stays for developers who run `alembic` there): the scripts are the
    `migrations` package's files, wherever it is installed."""
    from importlib.resources import files

    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(files("migrations")))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ini interpolation
    return cfg
