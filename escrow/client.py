"""The HTTP client of the vault API, for the command line, the camera's outbox and scripts.

One typed method per operation of the API (docs/client.md), so a script gets its argument
names checked and its times sent with their zone, instead of hand-written paths and bodies.
Answers are the API's JSON as plain dicts and lists (this module is on every install, the
camera's too, and the API's schemas live in the vault's half). A refusal or an unreachable
vault is a `VaultError` carrying the status and the vault's one-line reason.

    with VaultClient("https://vault:8750", token) as vault:
        for w in vault.warrants():
            print(w["case_ref"], w["state"])
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

Json = dict[str, Any]


class VaultError(Exception):
    """The vault answered with an error (status, detail) or could not be reached (status 0)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status, self.detail = status, detail

    @property
    def retryable(self) -> bool:
        """Worth trying again later: unreachable, overloaded, or a server fault."""
        return self.status == 0 or self.status in (408, 425, 429) or self.status >= 500


def _time(t: datetime | None) -> str | None:
    """ISO 8601 with its zone; a naive time is refused here rather than guessed by the vault
    (a guess would move a warrant's window by hours)."""
    if t is None:
        return None
    if t.tzinfo is None:
        raise ValueError(f"give a time zone: {t.isoformat()} has none")
    return t.isoformat()


class VaultClient:
    """A session with the vault API under one bearer token (one role)."""

    def __init__(self, url: str, token: str, timeout: float = 30.0):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"vault URL must start with http:// or https://, not {url!r}")
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, json: Any = None, params: dict | None = None) -> Any:
        """Any operation by method and path: the typed methods below are built on it."""
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        try:
            r = self.http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise VaultError(0, f"vault unreachable at {self.http.base_url}: {exc}") from exc
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise VaultError(r.status_code, detail if isinstance(detail, str) else str(detail))
        return r.json()

    # --- cameras (camera token) -------------------------------------------------------------

    def ingest(self, records: list[Json]) -> Json:
        """Store sealed records (wire form, escrow.sealing.to_wire); idempotent by record id."""
        return self.call("POST", "/ingest", {"records": records})

    def keyring(self) -> Json:
        """This camera's signed epoch certificates from now on (public keys only)."""
        return self.call("GET", "/keyring")

    # --- warrants (judge; read by investigators, trustees, auditors) -------------------------

    def create_warrant(
        self,
        case_ref: str,
        legal_basis: str,
        cameras: list[str],
        window_start: datetime,
        window_end: datetime,
        not_after: datetime,
        not_before: datetime,
        max_records: int | None = None,
    ) -> Json:
        """Issue a warrant (judge): records of `cameras` whose best frame lies in
        [window_start, window_end), usable from not_before to not_after."""
        body = {
            "case_ref": case_ref,
            "legal_basis": legal_basis,
            "cameras": cameras,
            "window_start": _time(window_start),
            "window_end": _time(window_end),
            "not_before": _time(not_before),
            "not_after": _time(not_after),
            "max_records": max_records,
        }
        return self.call("POST", "/warrants", body)

    def warrants(self) -> list[Json]:
        return self.call("GET", "/warrants")

    def warrant(self, warrant_id: str) -> Json:
        return self.call("GET", f"/warrants/{warrant_id}")

    def revoke_warrant(self, warrant_id: str, reason: str) -> Json:
        """Revoke at once (judge); pending requests under it are closed."""
        return self.call("POST", f"/warrants/{warrant_id}/revoke", {"reason": reason})

    def warrant_records(self, warrant_id: str) -> list[Json]:
        """Metadata of the records in a warrant's scope (investigator); never an image."""
        return self.call("GET", f"/warrants/{warrant_id}/records")

    # --- opening requests --------------------------------------------------------------------

    def create_request(self, warrant_id: str, record_ids: list[str], reason: str) -> Json:
        """Ask to open records (investigator): {"request": ..., "fetch_secret": ...}; the
        secret is shown once and needed for `release`."""
        body = {"warrant_id": warrant_id, "record_ids": record_ids, "reason": reason}
        return self.call("POST", "/requests", body)

    def requests(self) -> list[Json]:
        return self.call("GET", "/requests")

    def request(self, request_id: str) -> Json:
        return self.call("GET", f"/requests/{request_id}")

    def review(self, request_id: str) -> Json:
        """What a trustee checks before approving (escrow.trustee.check and summary)."""
        return self.call("GET", f"/requests/{request_id}/review")

    def approve(self, request_id: str, approval: Json) -> Json:
        """Post a trustee's approval, made by escrow.trustee.approval_body from `review`."""
        return self.call("POST", f"/requests/{request_id}/approvals", approval)

    def release(self, request_id: str, fetch_secret: str) -> Json:
        """The crops, opened once (the requester). Until `received` is called, a second call
        answers the same crops again (an answer lost on its way); after it, 410."""
        return self.call("POST", f"/requests/{request_id}/release", {"fetch_secret": fetch_secret})

    def received(self, request_id: str) -> Json:
        """Confirm the crops arrived: the vault erases the copy it held for a lost answer."""
        return self.call("POST", f"/requests/{request_id}/received")

    # --- audit trail (auditor; checkpoints for every reader of warrants) ---------------------

    def audit(
        self,
        after: int = 0,
        limit: int = 100,
        action: str | None = None,
        actor: str | None = None,
        record: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Json]:
        """Entries with an id above `after`, oldest first, filtered; page with the last id."""
        params = {
            "after": after,
            "limit": limit,
            "action": action,
            "actor": actor,
            "record": record,
            "since": _time(since),
            "until": _time(until),
        }
        return self.call("GET", "/audit", params=params)

    def audit_verify(self, expect_head: str | None = None) -> Json:
        return self.call("GET", "/audit/verify", params={"expect_head": expect_head})

    def audit_checkpoint(self) -> Json:
        return self.call("GET", "/audit/checkpoint")

    def audit_proof(self, entry: int, size: int | None = None) -> Json:
        return self.call("GET", "/audit/proof", params={"entry": entry, "size": size})

    def audit_consistency(self, first: int, second: int | None = None) -> Json:
        return self.call("GET", "/audit/consistency", params={"first": first, "second": second})

    def retention_report(self) -> Json:
        """Erased records (camera, capture, expiry, erasure, rule, key destroyed), holds."""
        return self.call("GET", "/retention/report")

    # --- administration (admin; cameras and policy also for auditors) ------------------------

    def cameras(self) -> list[Json]:
        return self.call("GET", "/cameras")

    def add_camera(self, camera_id: str, name: str | None = None) -> Json:
        return self.call("POST", "/cameras", {"id": camera_id, "name": name})

    def tokens(self) -> list[Json]:
        return self.call("GET", "/tokens")

    def create_token(self, name: str, role: str = "camera") -> Json:
        """A camera token (the only role an admin makes through the API), shown once."""
        return self.call("POST", "/tokens", {"role": role, "name": name})

    def revoke_token(self, token_id: str) -> Json:
        return self.call("POST", f"/tokens/{token_id}/revoke")

    def policy(self) -> Json:
        return self.call("GET", "/policy")

    def health(self) -> Json:
        return self.call("GET", "/health")
