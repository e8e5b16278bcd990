"""Session-wide fixtures: the schemas tests made in PostgreSQL are dropped at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests import backends


@pytest.fixture(scope="session", autouse=True)
def _drop_test_schemas() -> Iterator[None]:
    yield
    if backends.created:
        asyncio.run(backends.drop_created())
