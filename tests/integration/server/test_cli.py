"""The `pyngest` command as a user runs it: flags, environment, config files, start mode, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyngest.server.store.sqlite.connection import SCHEMA_VERSION
from tests import backends
from tests.sqlite_versions import as_version_3

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


def wait_healthy(port: int, host: str = "127.0.0.1", timeout: float = 30) -> float:
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


def dev_server(tmp: Path) -> Iterator[str]:
    """A ``pyngest dev`` of its own for a test module (a fixture's body): yields its base URL,
    and fails the module if the server wrote a traceback."""
    port = free_port()
    proc = spawn(["dev", "--no-discovery", "--no-poll", "-p", str(port), "--sqlite-dir", str(tmp / "db")], tmp)
    try:
        wait_healthy(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        _, err = stop(proc)
        assert "Traceback" not in err, err[-3000:]


def test_dev_listens_on_both_loopbacks_prints_a_banner_and_stops_gracefully(tmp_path: Path) -> None:
    port = free_port()
    proc = spawn(["dev", "--no-discovery", "-p", str(port), "--sqlite-dir", str(tmp_path / "db")], tmp_path)
    try:
        wait_healthy(port)
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
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
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


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    return subprocess.run([sys.executable, "-m", "pyngest.server.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_version_is_the_installed_package_version() -> None:
    from importlib.metadata import version

    res = run_cli(["--version"])
    assert res.returncode == 0 and res.stdout.strip() == f"pyngest {version('pyngest')}"


def test_dev_help_lists_only_the_flags_that_apply_to_dev() -> None:
    start_only = ("--event-key", "--dashboard-user", "--dashboard-password")
    dev_help, start_help = run_cli(["dev", "--help"]).stdout, run_cli(["start", "--help"]).stdout
    assert "--no-discovery" in dev_help and "--no-discovery" not in start_help
    for flag in start_only:
        assert flag not in dev_help and flag in start_help, flag
    for flag in ("--postgres-uri", "--redis-uri"):  # both modes take the scale-out stores
        assert flag in dev_help and flag in start_help, flag
    refused = run_cli(["dev", "--event-key", "k"])
    assert refused.returncode == 2 and "--event-key applies to `pyngest start`" in refused.stderr


@pytest.mark.parametrize("source", ["flag", "env", "config"])
def test_postgres_and_redis_from_flag_env_or_config(tmp_path: Path, source: str) -> None:
    """`start --postgres-uri … --redis-uri …` (or INNGEST_POSTGRES_URI / INNGEST_REDIS_URI, or the
    config file's postgres-uri / redis-uri, as upstream spells them) runs on PostgreSQL."""
    schema = backends.new_schema_name()
    backends.create_schema_sync(schema)
    pg, redis = backends.postgres_uri(schema), backends.REDIS_URI
    port = free_port()
    args, env = ["start", "--signing-key", KEY, "--event-key", "k", "-p", str(port)], {}
    if source == "flag":
        args += ["--postgres-uri", pg, "--redis-uri", redis]
    elif source == "env":
        env = {"INNGEST_POSTGRES_URI": pg, "INNGEST_REDIS_URI": redis}
    else:
        (tmp_path / "inngest.toml").write_text(f'postgres-uri = "{pg}"\nredis-uri = "{redis}"\n')
        args += ["--config", str(tmp_path / "inngest.toml")]
    proc = spawn(args, tmp_path, env=env)
    try:
        wait_healthy(port, timeout=30)
        resp = httpx.post(f"http://127.0.0.1:{port}/e/k", json={"name": "pg/stored"})
        assert resp.status_code == 200
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "PostgreSQL 127.0.0.1:5432/test" in err and "wake-ups through Redis" in err, err
    assert not (tmp_path / ".inngest").exists()  # nothing went to SQLite
    stored = asyncio.run(_count_events(pg))
    assert stored == 1


async def _count_events(uri: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(uri)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE name = 'pg/stored'"))
    finally:
        await conn.close()


@pytest.mark.parametrize(("args", "message"), [
    (["--postgres-uri", "mysql://db/x"], "--postgres-uri must be a postgres:// or postgresql:// URI"),
    (["--redis-uri", "redis://127.0.0.1:6379"], "--redis-uri needs --postgres-uri"),
    (["--postgres-uri", "postgres://127.0.0.1/x", "--redis-uri", "memcache://y"], "--redis-uri must be a redis://"),
    (["--postgres-uri", "postgres://127.0.0.1:notaport/x"], "--postgres-uri: the port is not a number"),
    (["--postgres-uri", "postgres://127.0.0.1/x", "--redis-uri", "redis://127.0.0.1:70000/0"],
     "--redis-uri: the port is not a number from 0 to 65535"),
])
def test_bad_store_settings_are_refused_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    for mode in (["start", "--signing-key", KEY, "--event-key", "k"], ["dev", "--no-discovery"]):
        proc = spawn([*mode, *args], tmp_path)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 2 and message in err, err


def test_an_unreachable_postgres_is_a_clear_error(tmp_path: Path) -> None:
    dead = free_port()
    proc = spawn(["start", "--signing-key", KEY, "--event-key", "k", "-p", str(free_port()), "--postgres-uri",
                  f"postgres://127.0.0.1:{dead}/nothing"], tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and f"cannot reach PostgreSQL at postgres://127.0.0.1:{dead}/nothing" in err, err


@pytest.mark.parametrize(("uri", "message"), [
    ("postgres://127.0.0.1:5432/pyngest_no_such_db",
     'database "pyngest_no_such_db" does not exist at postgres://127.0.0.1:5432/pyngest_no_such_db: create it'),
    ("postgres://pyngest_no_such_role:secret@127.0.0.1:5432/test",
     "PostgreSQL at postgres://pyngest_no_such_role:***@127.0.0.1:5432/test refused the login: "
     'role "pyngest_no_such_role" does not exist; check the user and password'),
])
def test_a_postgres_that_refuses_us_is_a_clear_error(tmp_path: Path, uri: str, message: str) -> None:
    """A database or role that is not there: one line saying what to do (not a traceback), and
    the password kept out of it."""
    proc = spawn(["start", "--signing-key", KEY, "--event-key", "k", "-p", str(free_port()), "--postgres-uri", uri],
                 tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and f"Error: cannot open the store: {message}" in err, err
    assert "Traceback" not in err and "secret" not in err, err


def test_event_api_validation_and_partial_success(tmp_path: Path) -> None:
    """POST /e over a real socket: the first invalid event ends the request (the ones before it
    kept), each error named, the size flag."""
    port = free_port()
    proc = spawn(["dev", "--no-discovery", "-p", str(port), "--sqlite-dir", str(tmp_path / "db")], tmp_path,
                 env={"INNGEST_MAX_EVENT_SIZE": "2048"})
    try:
        wait_healthy(port)
        base = f"http://127.0.0.1:{port}"
        # As upstream: taken in order up to the first invalid event, which ends the request;
        # the events before it are stored and their ids (only) come back with a 400.
        resp = httpx.post(f"{base}/e/any", json=[
            {"name": "ok/first", "data": {"n": 1}},
            {"name": "ok/second", "ts": 1_900_000_000_000},
            {"name": "inngest/function.failed"},
            {"name": "ok/never"},
        ])
        body = resp.json()
        assert resp.status_code == 400 and body["status"] == 400
        ids = body["ids"]
        assert len(ids) == 2 and all(ids), ids
        assert body["error"] == "event 3: event name is reserved for internal use: inngest/function.failed"
        for bad, text in (({"data": {}}, "event name is empty"),
                          ({"name": "bad/data", "data": [1]}, "event 'data' must be a JSON object"),
                          ({"name": "bad/ts", "ts": 5}, "timestamp is before Jan 1, 1980"),
                          ({"name": "big/one", "data": {"x": "y" * 3000}}, "Event is over the max size: Max 2048 bytes")):
            resp = httpx.post(f"{base}/e/any", json=[bad, {"name": "ok/never"}])
            assert (resp.status_code, resp.json()["ids"]) == (400, []), resp.text
            assert resp.json()["error"].startswith(f"event 1: {text}"), resp.text
        first = httpx.get(f"{base}/v1/events/{ids[0]}").json()["data"]
        assert first["name"] == "ok/first" and first["id"] == ids[0]  # no id given: the internal ULID
        assert isinstance(first["ts"], int) and first["ts"] > 0  # filled in when absent
        assert httpx.get(f"{base}/v1/events/{ids[1]}").json()["data"]["ts"] == 1_900_000_000_000
        names = {e["name"] for e in httpx.get(f"{base}/v1/events").json()["data"]}
        assert names == {"ok/first", "ok/second"}

        one = httpx.post(f"{base}/e/any", json={"name": "ok/single", "id": "mine"})
        assert one.status_code == 200 and one.json() == {"ids": [one.json()["ids"][0]], "status": 200}
        assert httpx.get(f"{base}/v1/events/{one.json()['ids'][0]}").json()["data"]["id"] == "mine"
        # as upstream: the first 5,000 are taken, their ids answered with the error
        too_many = httpx.post(f"{base}/e/any", json=[{"name": "x/y"}] * 5001)
        assert too_many.status_code == 400
        body = too_many.json()
        assert body["error"] == "Cannot have more than 5000 events in a batch" and len(body["ids"]) == 5000
        assert httpx.post(f"{base}/e/any", json=[{"name": "x/y"}] * 5000).json()["status"] == 200
        not_events = httpx.post(f"{base}/e/any", content=b'"a string"', headers={"content-type": "application/json"})
        assert not_events.status_code == 400 and "event object or an array" in not_events.json()["error"]
    finally:
        stop(proc)


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


def test_an_older_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    db = tmp_path / "db"
    port = free_port()
    proc = spawn(["dev", "--no-discovery", "-p", str(port), "--sqlite-dir", str(db)], tmp_path)
    try:
        wait_healthy(port)
        httpx.post(f"http://127.0.0.1:{port}/e/k", json={"name": "kept/across.upgrade"})
    finally:
        stop(proc)
    with sqlite3.connect(db / "main.db") as conn:  # make it look like a version-1 database
        as_version_3(conn)
        conn.execute("DROP TABLE flow")
        conn.execute("DROP TABLE skips")
        conn.execute("DROP TABLE revoked_sessions")
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    proc = spawn(["dev", "--no-discovery", "-p", str(port), "--sqlite-dir", str(db)], tmp_path)
    try:
        wait_healthy(port)
        events = httpx.get(f"http://127.0.0.1:{port}/v1/events").json()["data"]
        assert [e["name"] for e in events] == ["kept/across.upgrade"]
    finally:
        stop(proc)
    with sqlite3.connect(db / "main.db") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert conn.execute("SELECT COUNT(*) FROM flow").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM revoked_sessions").fetchone() == (0,)


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


class _LocalApp:
    """A plain-threads HTTP app on a free loopback port; ``handle(method, body)`` returns
    (status, extra headers, JSON payload)."""

    def __init__(self, handle: Callable[[str, bytes], tuple[int, dict[str, str], Any]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                status, headers, payload = handle(self.command, self.rfile.read(int(self.headers.get("content-length") or 0)))
                body = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json", "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = _any  # noqa: N815 - http.server's naming

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/inngest"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def register(self, base: str, app_name: str, fn_id: str, event: str) -> httpx.Response:
        """POST /fn/register as an SDK does, with one function."""
        return httpx.post(f"{base}/fn/register", json={"appName": app_name, "url": self.url, "functions": [{
            "id": fn_id, "name": fn_id, "triggers": [{"event": event}],
            "steps": {"step": {"id": "step", "name": "step",
                               "runtime": {"type": "http", "url": f"{self.url}?fnId={fn_id}&stepId=step"}}}}]})

    def close(self) -> None:
        self.server.shutdown()


def test_sigterm_lets_an_in_flight_app_request_finish_and_keeps_its_result(tmp_path: Path) -> None:
    """Graceful shutdown: a step the app is still executing when SIGTERM arrives gets the grace
    period, its result is stored, and the process exits 0; after a restart the run is Completed."""
    started = threading.Event()

    def slow(method: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        started.set()
        time.sleep(2)
        return 200, {"X-Inngest-SDK": "inngest-py:v0.5.19"}, {"slow": "done"}

    app = _LocalApp(slow)
    port, db = free_port(), tmp_path / "db"
    args = ["dev", "--no-discovery", "--no-poll", "-p", str(port), "--sqlite-dir", str(db), "--shutdown-grace", "10"]
    proc = spawn(args, tmp_path)
    try:
        wait_healthy(port)
        base = f"http://127.0.0.1:{port}"
        reg = app.register(base, "grace", "grace-slow", "grace/slow")
        assert reg.status_code == 200, reg.text
        [eid] = httpx.post(f"{base}/e/k", json={"name": "grace/slow"}).json()["ids"]
        assert started.wait(10), "the app never got the request"
        code, err = stop(proc)  # SIGTERM while the app is still answering
        assert code == 0, err
        proc = spawn(args, tmp_path)
        wait_healthy(port)
        [run] = httpx.get(f"{base}/v1/events/{eid}/runs").json()["data"]
        assert run["status"] == "Completed" and run["output"] == {"slow": "done"}
    finally:
        _, err = stop(proc)
        app.close()
    # the app's URL as the server keeps it: normalized, as upstream (127.0.0.1 reads localhost)
    known = app.url.replace("127.0.0.1", "localhost")
    assert f"apps          {known}" in err, "the banner names the apps the server knows from earlier runs"


def test_apps_given_with_sdk_url_are_synced_at_start_and_re_synced_by_polling(tmp_path: Path) -> None:
    """-u: the server PUTs the app, the app registers (as SDKs do), and --poll-interval re-syncs it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    puts: list[float] = []

    def on_put(method: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        puts.append(time.monotonic())
        reg = app.register(base, "polled", "polled-fn", "polled/go")
        return reg.status_code, {}, {"message": "ok", "modified": reg.json().get("modified")}

    app = _LocalApp(on_put)
    proc = spawn(["dev", "--no-discovery", "-p", str(port), "--sqlite-dir", str(tmp_path / "db"),
                  "-u", app.url, "--poll-interval", "1"], tmp_path)
    try:
        wait_healthy(port)
        deadline = time.monotonic() + 30
        while len(puts) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        # a sync at start and re-syncs (their schedule, on the test clock: test_app_sync.py)
        assert len(puts) >= 3, f"expected a sync at start and re-syncs, got {len(puts)}"
        info = httpx.get(f"{base}/dev").json()
        [handler] = info["handlers"]
        assert handler["url"] == app.url and handler["error"] is None and handler["app_id"]
        assert [f["slug"] for f in info["functions"]] == ["polled-fn"]
    finally:
        stop(proc)
        app.close()


def test_no_poll_syncs_an_app_once_at_start(tmp_path: Path) -> None:
    """--no-poll: an app given with -u is synced at start and then left alone."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    puts: list[float] = []

    def on_put(method: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        puts.append(time.monotonic())
        reg = app.register(base, "unpolled", "unpolled-fn", "unpolled/go")
        return reg.status_code, {}, {"message": "ok", "modified": reg.json().get("modified")}

    app = _LocalApp(on_put)
    proc = spawn(["dev", "--no-discovery", "--no-poll", "--poll-interval", "1", "-p", str(port),
                  "--sqlite-dir", str(tmp_path / "db"), "-u", app.url], tmp_path)
    try:
        wait_healthy(port)
        time.sleep(3.5)  # three poll intervals
        assert len(puts) == 1, f"expected one sync at start and none after, got {len(puts)}"
        assert [f["slug"] for f in httpx.get(f"{base}/dev").json()["functions"]] == ["unpolled-fn"]
    finally:
        stop(proc)
        app.close()


def test_queue_workers_bounds_the_requests_in_flight(tmp_path: Path) -> None:
    """--queue-workers 1: one job at a time, so the app never sees two requests at once."""
    lock = threading.Lock()
    in_flight, peak, answered = [0], [0], [0]

    def slow(method: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.3)
        with lock:
            in_flight[0] -= 1
            answered[0] += 1
        return 200, {"X-Inngest-SDK": "inngest-py:v0.5.19"}, {"ok": True}

    app = _LocalApp(slow)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = spawn(["dev", "--no-discovery", "--no-poll", "--queue-workers", "1", "-p", str(port),
                  "--sqlite-dir", str(tmp_path / "db")], tmp_path)
    try:
        wait_healthy(port)
        assert app.register(base, "workers", "workers-fn", "workers/go").status_code == 200
        ids = httpx.post(f"{base}/e/k", json=[{"name": "workers/go"} for _ in range(4)]).json()["ids"]
        deadline = time.monotonic() + 20
        while answered[0] < len(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert answered[0] == len(ids)
        assert peak[0] == 1, f"{peak[0]} requests at once with one queue worker"
    finally:
        stop(proc)
        app.close()
