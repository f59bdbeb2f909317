"""The vault's schema migrations (Alembic, shipped as package data); the engine and session
factory every database access goes through are escrow.records', re-exported here.

Migrations run under a lock (`_migration_lock`): replicas of `escrow serve` started together
on an unmigrated database each run `upgrade` at start, and unserialised they race (both see
no alembic_version, both create the tables, one fails on a duplicate). With the lock the
second waits, then finds the schema at head and does nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from escrow.records import ensure_sqlite_dir, make_engine, session_factory

__all__ = ["downgrade", "make_engine", "session_factory", "upgrade"]

_MIGRATE_LOCK = 0x6B66_6D67  # "kfmg": the session-level advisory lock of migrations


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    ensure_sqlite_dir(url)
    with _migration_lock(url):
        command.upgrade(_alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    with _migration_lock(url):
        command.downgrade(_alembic_config(url), revision)


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """One migration at a time per database. PostgreSQL: a session-level advisory lock on a
    connection of its own, held around Alembic's run (Alembic's own connection cannot hold
    it: its DDL transaction would have to wait on itself). SQLite: an exclusive flock on a
    file beside the database (a BEGIN IMMEDIATE on another connection would block Alembic's
    own writes); an in-memory database has no other process to race. Other engines: none."""
    import sqlalchemy as sa

    u = sa.engine.make_url(url)
    if u.get_backend_name() == "postgresql":
        engine = sa.create_engine(u, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as c:
                c.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATE_LOCK})
                c.commit()
                try:
                    yield
                finally:
                    c.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATE_LOCK})
                    c.commit()
        finally:
            engine.dispose()
    elif u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        import fcntl

        try:
            f = open(f"{u.database}.migrate-lock", "a")  # noqa: SIM115 (closed below)
        except OSError:  # a read-only or missing folder: no migration can write there, so
            yield  # none can race; the database's own error is the one the caller reports
            return
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    else:
        yield


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
