"""A small HTTP client of the vault API, for the command line and the camera's outbox."""

from __future__ import annotations

from typing import Any

import httpx


class VaultError(Exception):
    """The vault answered with an error (status, detail) or could not be reached (status 0)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status, self.detail = status, detail

    @property
    def retryable(self) -> bool:
        """Worth trying again later: unreachable, overloaded, or a server fault."""
        return self.status == 0 or self.status in (408, 425, 429) or self.status >= 500


class VaultClient:
    def __init__(self, url: str, token: str, timeout: float = 30.0):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"vault URL must start with http:// or https://, not {url!r}")
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def call(self, method: str, path: str, json: Any = None, params: dict | None = None) -> Any:
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

    def close(self) -> None:
        self.http.close()
