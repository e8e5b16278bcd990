"""Processes under test: start them, wait until they answer, read their memory and CPU."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent.parent
ROOT = BENCH_DIR.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scratch_dir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=f"pyngest-bench-{prefix}-")


class Proc:
    """A child process with its output in a log file (shown when it fails to start)."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.name = name
        self.log_path = Path(scratch_dir("log")) / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            list(argv), stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
            cwd=str(cwd) if cwd else None, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()


def python(*args: str) -> list[str]:
    """argv for this interpreter (the project's venv when run as documented)."""
    return [sys.executable, *args]


async def wait_http(url: str, proc: Proc | None = None, timeout: float = 60.0,
                    method: str = "GET", ok: Sequence[int] = (200,)) -> None:
    """Until ``url`` answers with one of ``ok`` (any status when ``ok`` is empty)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            if proc is not None:
                proc.check_alive()
            try:
                async with http.request(method, url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if not ok or r.status in ok:
                        return
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            if time.monotonic() > deadline:
                tail = proc.log_tail() if proc else ""
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s\n{tail}")
            await asyncio.sleep(0.1)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident memory of the given processes and their descendants."""
    total = 0
    for root in pids:
        for p in tree(root):
            try:
                with open(f"/proc/{p}/statm") as f:
                    total += int(f.read().split()[1]) * PAGE
            except OSError:
                pass
    return total


def machine_ticks() -> tuple[int, int]:
    """(stolen, total) CPU ticks of the whole machine so far, from ``/proc/stat``: on a virtual
    machine, time the host gave to someone else while a vCPU wanted to run. Two readings around a
    measurement say how much of it the host took, the main reason one repeat differs from the
    next here."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    # user nice system idle iowait irq softirq steal [guest guest_nice, already in user and nice]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / total, 1) if total > 0 else 0.0


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of the given processes and their descendants."""
    total = 0.0
    for root in pids:
        for p in tree(root):
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / TICKS
            except (OSError, IndexError, ValueError):
                pass
    return total
