"""The vault's Alembic migrations, shipped as package data: `vault.db.upgrade` finds them
through `importlib.resources`, so an installed vault migrates without a checkout."""
