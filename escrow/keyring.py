"""The camera's keyring, kept fresh from the vault.

A camera is configured with its authority's key (pinned by fingerprint, or taken from a
keyring file the operator installed) and fetches its own signed epoch certificates from the
vault with its token (GET /keyring). It refreshes before they run out, and every certificate
is checked against the pinned authority key before a crop is sealed to it: a vault, or
anyone in between, can withhold keys (the camera then stops, exit 4) but cannot make the
camera seal to a key the authority did not sign.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from vault.keys import CameraKeyring, KeyStoreError, SealingKey


class FreshKeyring:
    def __init__(
        self,
        ring: CameraKeyring,
        camera_id: str,
        fetch: Callable[[], dict] | None = None,
        refresh_before: timedelta = timedelta(days=7),
        log: Callable[[str], None] = lambda m: None,
        retry_after: float = 300.0,
    ):
        self.ring, self.camera_id, self.fetch = ring, camera_id, fetch
        self.refresh_before, self.log, self.retry_after = refresh_before, log, retry_after
        self.pinned = ring.authority_fingerprint
        self._next_try = 0.0  # time.monotonic() before which no refresh is tried again

    @property
    def certs(self):
        return self.ring.certs

    def valid_until(self, t: datetime) -> datetime | None:
        return self.ring.valid_until(t, self.camera_id)

    def refresh(self) -> None:
        """Fetch this camera's certificates; keep the old ones if the vault is away or
        answers with another authority's key."""
        if self.fetch is None or time.monotonic() < self._next_try:
            return
        try:
            new = CameraKeyring.from_dict(self.fetch())
        except (KeyStoreError, Exception) as exc:  # noqa: BLE001 - the vault may be away
            # not on every record while the vault is away: a dropped network blocks each try
            self._next_try = time.monotonic() + self.retry_after
            self.log(f"keyring refresh failed: {exc} (next try in {self.retry_after:.0f} s)")
            return
        if new.authority_fingerprint != self.pinned:
            self._next_try = time.monotonic() + self.retry_after
            self.log(
                f"keyring refresh refused: authority {new.authority_fingerprint[:16]} is not "
                f"the pinned {self.pinned[:16]}"
            )
            return
        known = {c.epoch_id for c in self.ring.certs}
        self.ring = CameraKeyring(
            self.ring.authority_raw,
            self.ring.certs + [c for c in new.certs if c.epoch_id not in known],
            self.camera_id,
        )

    def key_for(self, t: datetime) -> SealingKey:
        until = self.valid_until(t)
        if until is None or until - t < self.refresh_before:
            self.refresh()
        return self.ring.key_for(t, self.camera_id)
