"""Running commands the way a newcomer types them: in a directory of their own, with no
activated virtualenv and no INNGEST_ variables, servers in the background."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.first_hour.readme import ROOT


def clean_env() -> dict[str, str]:
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("INNGEST_")}


def checkout_copy(dest: Path) -> Path:
    """The project's tracked files, as a fresh clone has them (work-tree contents)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, names.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def port_free(port: int) -> bool:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno != 99:  # "cannot assign address": no IPv6 here, not a busy port
                    return False
    return True


def run(command: str, cwd: Path, *, timeout: float = 900, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(["bash", "-c", command], cwd=cwd, env=env or clean_env(), capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, f"`{command}` failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@contextmanager
def background(command: str, cwd: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running in its own process group; stopped (that group only) on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env or clean_env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            res = httpx.get(url, timeout=2)
            if res.status_code < 500:
                return res
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer in {timeout:.0f}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
