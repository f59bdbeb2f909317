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
