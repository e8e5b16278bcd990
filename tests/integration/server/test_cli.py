"""The `pyngest` command as a user runs it: flags, environment, config files, start mode, shutdown."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

KEY = "signkey-test-" + "12" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "pyngest.server.cli", *args], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_healthy(port: int, host: str = "127.0.0.1", timeout: float = 10) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if httpx.get(f"http://{host}:{port}/health", timeout=0.5).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"server on {host}:{port} not healthy in {timeout}s")


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def test_dev_listens_on_both_loopbacks_prints_a_banner_and_stops_gracefully(tmp_path: Path) -> None:
    port = free_port()
    proc = spawn(["dev", "--no-discovery", "-p", str(port), "--sqlite-dir", str(tmp_path / "db")], tmp_path)
    try:
        took = wait_healthy(port)
        assert took < 5
        assert httpx.get(f"http://[::1]:{port}/health").json() == {"status": 200, "message": "OK"}
        resp = httpx.get(f"http://127.0.0.1:{port}/dev")
        assert resp.status_code == 200 and resp.headers["x-inngest-server-kind"] == "dev"
        sent = httpx.post(f"http://127.0.0.1:{port}/e/anything", json={"name": "cli/test"})
        assert sent.json()["status"] == 200
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert f"http://127.0.0.1:{port}" in err and "ready in" in err and "stopped" in err
    with sqlite3.connect(tmp_path / "db" / "main.db") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)


def test_environment_and_config_file_walked_up_from_the_working_directory(tmp_path: Path) -> None:
    port, env_port = free_port(), free_port()
    (tmp_path / "inngest.yaml").write_text(f"port: {port}\nno-discovery: true\nsqlite-dir: {tmp_path / 'db'}\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    proc = spawn(["dev"], nested)
    try:
        wait_healthy(port)
    finally:
        stop(proc)
    proc = spawn(["dev"], nested, env={"INNGEST_PORT": str(env_port)})  # env beats the file
    try:
        wait_healthy(env_port)
    finally:
        stop(proc)


@pytest.mark.parametrize("flag", ["--redis-uri", "--postgres-uri"])
def test_external_stores_are_refused_clearly(tmp_path: Path, flag: str) -> None:
    proc = spawn(["start", "--signing-key", KEY, "--event-key", "k", flag, "x://y"], tmp_path)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "not supported yet" in err


def test_start_requires_keys_and_enforces_them(tmp_path: Path) -> None:
    proc = spawn(["start", "--event-key", "k"], tmp_path)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "signing key" in err

    port = free_port()
    proc = spawn(["start", "-p", str(port), "--sqlite-dir", str(tmp_path / "db")], tmp_path,
                 env={"INNGEST_SIGNING_KEY": KEY, "INNGEST_EVENT_KEY": "good,also-good"})
    try:
        wait_healthy(port)
        base = f"http://127.0.0.1:{port}"
        bad = httpx.post(f"{base}/e/wrong", json={"name": "x/y"})
        assert bad.status_code == 401 and "Event key not found" in bad.json()["error"]
        assert httpx.post(f"{base}/e/also-good", json={"name": "x/y"}).json()["status"] == 200
        assert httpx.get(f"{base}/v1/events").status_code == 401
        from pyngest.protocol.signing import hash_signing_key

        ok = httpx.get(f"{base}/v1/events", headers={"Authorization": f"Bearer {hash_signing_key(KEY)}"})
        assert ok.status_code == 200 and len(ok.json()["data"]) == 1
        assert httpx.get(f"{base}/dev").status_code == 404
        assert httpx.get(f"{base}/health").headers["x-inngest-server-kind"] == "cloud"
        reg = httpx.post(f"{base}/fn/register", json={"appName": "a", "functions": []},
                         headers={"Authorization": "Bearer nope"})
        assert reg.status_code == 401
    finally:
        stop(proc)


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    with sqlite3.connect(db / "main.db") as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    port = free_port()
    proc = spawn(["dev", "--no-discovery", "-p", str(port), "--sqlite-dir", str(db)], tmp_path)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode != 0 and "schema version 99" in err
