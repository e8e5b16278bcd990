"""Session-wide checks and clean-up.

The whole suite leaves the work tree as it found it: no tracked file is rewritten by a test.

The controlling pytest process (not each xdist worker) records ``git diff`` of the tracked files
when the session starts and compares it when it ends; a difference fails the run, naming the
files. Outside a git checkout (an sdist) there is nothing to compare. And the schemas tests
made in PostgreSQL (tests/backends.py) are dropped at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import backends

ROOT = Path(__file__).resolve().parents[1]
_BEFORE = pytest.StashKey[tuple[str, str] | None]()


def _tracked_state() -> tuple[str, str] | None:
    """(names of tracked files that differ from the index, a digest of those differences)."""
    try:
        names = subprocess.run(["git", "diff", "--name-only"], cwd=ROOT, capture_output=True, text=True,
                               check=True, timeout=60).stdout
        diff = subprocess.run(["git", "diff", "--binary"], cwd=ROOT, capture_output=True, check=True,
                              timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return names, hashlib.sha256(diff).hexdigest()


def _controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput") and os.environ.get("PYTEST_XDIST_WORKER") is None


def pytest_sessionstart(session: pytest.Session) -> None:
    if _controller(session.config):
        session.config.stash[_BEFORE] = _tracked_state()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _controller(session.config):
        return
    before = session.config.stash.get(_BEFORE, None)
    after = _tracked_state()
    if before is None or after is None or before == after:
        return
    changed = sorted(set(after[0].split()) ^ set(before[0].split())) or after[0].split()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"the test run rewrote tracked files: {', '.join(changed)}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def _drop_test_schemas() -> Iterator[None]:
    yield
    if backends.created and not os.environ.get("PYNGEST_KEEP_TEST_SCHEMAS"):  # kept: to look into a failure
        asyncio.run(backends.drop_created())
