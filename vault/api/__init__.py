"""The warrant-gated vault API (FastAPI): one router per resource, schemas apart from the
SQLAlchemy models, one context object holding what every request needs."""

from vault.api.app import create_app
from vault.api.context import VaultContext

__all__ = ["VaultContext", "create_app"]
