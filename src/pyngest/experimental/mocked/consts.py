from __future__ import annotations

import enum


class Status(enum.Enum):
    """How a mocked run ended."""

    COMPLETED = "Completed"
    FAILED = "Failed"


class _Timeout:
    def __repr__(self) -> str:
        return "mocked.Timeout"


Timeout: object = _Timeout()
"""Stub value that makes ``step.wait_for_event`` time out (return None)."""
