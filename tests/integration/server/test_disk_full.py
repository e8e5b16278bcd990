"""A full disk under the SQLite store: the Event API answers 503, loses nothing, and recovers.

The data directory is a small tmpfs; a filler file takes the rest of its space. Mounting needs
root (or CAP_SYS_ADMIN): without it the test is skipped, saying so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import backends
from tests.integration.server.harness import Call, Harness, done, function_config

pytestmark = pytest.mark.skipif(backends.BACKEND != "sqlite", reason="a full disk under the SQLite store")


@contextlib.contextmanager
def _small_filesystem(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                                 capture_output=True, text=True, check=False)
    except FileNotFoundError:
        pytest.skip("no mount command: cannot make a small filesystem for the data directory")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no space left."""
    chunk = b"\0" * (256 * 1024)
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        with contextlib.suppress(OSError):
            os.fsync(f.fileno())
    # the last bytes of a page cache: make sure nothing is left at all
    with path.open("ab", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError:
                    break


async def test_full_disk_refuses_events_with_503_keeps_committed_ones_and_recovers(tmp_path: Path) -> None:
    with _small_filesystem(tmp_path / "data", "24m") as data:
        harness = Harness(data / "db")
        await harness.start()
        try:
            async def script(call: Call) -> tuple:
                return done(call.body["event"]["data"]["n"])

            harness.app.script = script
            await harness.register(function_config(harness.app, "echo"))
            http = harness.http
            assert http is not None
            stored = await harness.send({"name": "test/echo", "data": {"n": 0}})
            await harness.run_ended(stored[0])

            _fill(data / "filler")
            padding = "x" * 200_000  # each event needs fresh pages: the disk fills up fast
            refused = None
            for n in range(1, 200):
                resp = await http.post("/e/key", json={"name": "test/other", "data": {"n": n, "pad": padding}})
                if resp.status_code == 200:
                    stored += resp.json()["ids"]  # there was still room somewhere (the WAL, free pages)
                    continue
                refused = resp
                break
            assert refused is not None, "the disk never filled up"
            assert refused.status_code == 503, refused.text
            body = refused.json()
            assert body["ids"] == []
            assert "not stored" in body["error"] and "full" in body["error"]

            # everything acknowledged is there
            for iid in stored:
                assert await harness.service.store.get_event(iid) is not None, iid

            # space comes back: the same server, not restarted, stores and runs again
            (data / "filler").unlink()
            resp = await http.post("/e/key", json={"name": "test/echo", "data": {"n": 99}})
            assert resp.status_code == 200, resp.text
            [again] = resp.json()["ids"]
            [run] = await harness.run_ended(again, timeout=10)
            assert run["status"] == "Completed" and run["output"] == 99
        finally:
            await harness.stop()

        # after a restart too, nothing acknowledged is missing
        harness = Harness(data / "db")
        await harness.start()
        try:
            for iid in [*stored, again]:
                assert await harness.service.store.get_event(iid) is not None, iid
        finally:
            await harness.stop()
