"""One exception for "the vault says no": the API answers it with its status and writes it
to the audit trail. Subclasses only name where the refusal came from."""

from __future__ import annotations


class Refused(Exception):
    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status
