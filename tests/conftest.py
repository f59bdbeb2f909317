"""Shared fixtures. Real face data is read in place from the settings' data_dir; without it
the tests that need it skip on a user's machine and fail in CI (CI=true)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from escrow.settings import get_settings

torch.set_num_threads(2)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"shared face data missing: {path}"
        if IN_CI:
            pytest.fail(msg + " (CI=true: data tests may not skip)")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(Path(get_settings().data_dir))


@pytest.fixture(scope="session")
def celeba_dir(data_dir: Path) -> Path:
    return _require(data_dir / "celeba-10k")


@pytest.fixture(scope="session")
def celeba_identities(data_dir: Path) -> Path:
    return _require(data_dir / "celeba-10k-identity.txt")


@pytest.fixture(scope="session")
def scorer():
    from vae.score import QualityScorer

    return QualityScorer(get_settings().vae_weights)


@pytest.fixture(scope="session")
def detector():
    from vae.faces import FaceDetector

    return FaceDetector()


PG_URL = os.environ.get("ESCROW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A migrated, empty vault database on each engine; migrated back down afterwards."""
    from vault.db import downgrade, upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'vault.db'}"
    else:
        import sqlalchemy

        url = PG_URL
        try:
            with sqlalchemy.create_engine(url).connect():
                pass
        except Exception as exc:  # no server here
            msg = f"PostgreSQL not reachable at {url}: {type(exc).__name__}"
            if IN_CI:
                pytest.fail(msg + " (CI=true: PostgreSQL tests may not skip)")
            pytest.skip(msg)
        downgrade(url, "base")  # a previous run that died half-way
    upgrade(url, "head")
    yield url
    downgrade(url, "base")
