"""Bearer tokens: one role each, stored only as hashes, revocable at once."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from vault import tokens
from vault.db import make_engine, session_factory

T = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_create_authenticate_revoke(db_url):
    eng = make_engine(db_url)
    factory = session_factory(eng)
    tid, tok = tokens.create(factory, "judge", "Judge Rinder", T)
    assert tokens.authenticate(factory, tok).role == "judge"
    with pytest.raises(tokens.Unauthorized):
        tokens.authenticate(factory, tok + "x")
    with pytest.raises(ValueError, match="unknown role"):
        tokens.create(factory, "root", "x", T)
    with eng.connect() as c:  # only the hash is at rest
        rows = [tuple(map(str, r)) for r in c.execute(sa.text("SELECT * FROM api_tokens"))]
    assert rows and not any(tok in v or tok[4:] in v for r in rows for v in r)
    assert tokens.revoke(factory, tid, T) and not tokens.revoke(factory, tid, T)
    with pytest.raises(tokens.Unauthorized):
        tokens.authenticate(factory, tok)
    eng.dispose()


def test_models_match_migrations(db_url):
    """Every table and column of vault.models exists through Alembic migrations alone."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from vault.models import Base

    eng = make_engine(db_url)
    with eng.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    eng.dispose()
    assert diff == []


def test_tokens_cli(tmp_path):
    env = {**os.environ, "ESCROW_DATABASE_URL": f"sqlite:///{tmp_path / 'v.db'}"}

    def run(*args):
        cmd = [sys.executable, "-m", "escrow.cli", "tokens", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env)

    r = run("create", "--role", "auditor", "--name", "DPO")
    assert r.returncode == 0
    tid, tok = r.stdout.split()[1], r.stdout.strip().splitlines()[-1]
    assert tok.startswith("kfe_")
    listed = run("list").stdout
    assert tid in listed and "auditor" in listed and tok not in listed
    assert run("revoke", tid).returncode == 0
    assert "revoked" in run("list").stdout
    bad = run("create", "--role", "god", "--name", "x")
    assert bad.returncode == 2 and "unknown role" in bad.stderr
