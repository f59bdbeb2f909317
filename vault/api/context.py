"""What every request of the API needs, built once by `escrow serve` (or by a test)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from escrow.canonical import utcnow
from escrow.sealing import KeyStoreError
from policies.schema import Policy
from vault.anchor import CheckpointKey
from vault.db import session_factory
from vault.keys import KeyStore


@dataclass
class VaultContext:
    engine: Engine
    keystore: KeyStore
    policy: Policy
    clock: Callable[[], datetime] = utcnow
    # Whole request bodies above this are refused (413) before they are read.
    max_body_bytes: int = 32 * 1024 * 1024
    max_ciphertext_bytes: int = 8 * 1024 * 1024
    max_records_per_ingest: int = 200
    # A request body that sends nothing for this long is cut (408) and its connection closed.
    body_timeout_s: float = 30.0
    # Run the retention sweeper (APScheduler) inside the server.
    sweeper: bool = False
    # How long a console sign-in lasts: a browser left open is signed out soon.
    console_session: timedelta = timedelta(minutes=15)
    # The escrow authority's public key: judge, trustee and auditor tokens must carry its
    # signature. None: the key store's (authority.json); no authority, no such token is
    # honoured (the vault cannot tell a forged one).
    authority_key: ed25519.Ed25519PublicKey | None = None
    factory: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.factory = session_factory(self.engine)
        if self.authority_key is None:
            with contextlib.suppress(KeyStoreError):
                self.authority_key = self.keystore.authority_public()

    @cached_property
    def warrant_signer(self) -> ed25519.Ed25519PrivateKey:
        return self.keystore.warrant_signer()

    @cached_property
    def warrant_key(self) -> ed25519.Ed25519PublicKey:
        return self.warrant_signer.public_key()

    @cached_property
    def checkpoint_key(self) -> CheckpointKey:
        """Signs the audit trail's checkpoints; a file in the key store, never in the DB."""
        return CheckpointKey(self.keystore.root)

    @property
    def required_approvals(self) -> int:
        """k: the policy's threshold, never below the one the shares were split with."""
        return max(self.policy.openings.threshold, self.keystore.info()["threshold"])
