"""One settings object for the whole project (environment variables prefixed ESCROW_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

CHECKOUT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESCROW_")

    # Face data is read in place from ../shared/data beside the checkout, never copied.
    data_dir: Path = CHECKOUT.parent / "shared" / "data"
    # Derived, non-secret artefacts (MTCNN crops of public training sets, embeddings).
    cache_dir: Path = Path.home() / ".cache" / "keyframe-escrow"
    # None: the weights shipped in vae/weights/.
    vae_weights: Path | None = None
    # The vault's SQL index (SQLite by default; PostgreSQL via postgresql+psycopg://...).
    database_url: str = (
        f"sqlite:///{Path.home() / '.local' / 'share' / 'keyframe-escrow' / 'vault.db'}"
    )
    # The escrow authority's key store: kept apart from the database (see vault/keys.py).
    keys_dir: Path = Path.home() / ".local" / "share" / "keyframe-escrow" / "keys"
    # The camera's public keyring (escrow keys export-camera);
    # None: camera-keyring.json beside the key store.
    camera_keyring: Path | None = None
    # The policy file (retention, epochs, k-of-n, sweeps); None: policies/default.toml.
    policy: Path | None = None
    # The vault API for the command-line client and for cameras sending records.
    vault_url: str = "http://127.0.0.1:8750"
    # The caller's bearer token (printed once by `escrow tokens create`).
    token: str | None = None
    # Where `escrow request create` keeps fetch secrets (0600 files) until the fetch.
    requests_dir: Path = Path.home() / ".local" / "share" / "keyframe-escrow" / "requests"
    # Torch intra-op threads; None leaves torch's default.
    threads: int | None = None


@lru_cache
def get_settings() -> Settings:
    return Settings()
