"""Processes and HTTP helpers for the conformance suite.

A test module gets one real ``pyngest`` server process (``dev`` or ``start`` mode) and the apps
it asks for, each a real process running an official Inngest SDK or pyngest's own. Tests send events with
``POST /e/<key>`` and watch runs through the server's read APIs (``/v1`` REST and ``/v0/gql``),
and read what the apps observed from the apps' JSON-lines logs.

Nothing here sleeps for a fixed time where it can poll: ``poll`` retries a probe every
``interval`` seconds until it returns something truthy or ``timeout`` passes. Timeouts are
generous (the suite runs with ``-n auto`` on two busy cores); a passing test never waits for
them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

from tests import backends

from .apps.common import blob, digest

HERE = Path(__file__).resolve().parent
APPS_DIR = HERE / "apps"
JS_DIR = HERE / "js"

# The official SDKs, then pyngest's own (``import pyngest as inngest``) on three frameworks, with
# its checkpointing on (the default), and on FastAPI once more with it off.
APP_KINDS = ("py_fastapi", "py_flask", "js", "pyngest_fastapi", "pyngest_flask", "pyngest_django",
             "pyngest_fastapi_classic")
# Connect workers (they dial the server's WebSocket gateway; no HTTP endpoint to sync).
CONNECT_KINDS = ("py_connect", "js_connect", "pyngest_connect")
TERMINAL = ("Completed", "Failed", "Cancelled")

# Seconds. Long enough for two loaded cores; a healthy run never waits this long.
RUN_TIMEOUT = float(os.environ.get("CONFORMANCE_RUN_TIMEOUT", "90"))
START_TIMEOUT = float(os.environ.get("CONFORMANCE_START_TIMEOUT", "60"))

T = TypeVar("T")


class PollTimeout(AssertionError):
    pass


def poll(
    probe: Callable[[], T],
    *,
    timeout: float = RUN_TIMEOUT,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns a truthy value; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    last_error: BaseException | None = None
    while True:
        try:
            last = probe()
            last_error = None
            if last:
                return last
        except (requests.RequestException, ValueError) as err:
            last_error = err
        if time.monotonic() >= deadline:
            detail = f"last error: {last_error!r}" if last_error else f"last value: {last!r}"
            raise PollTimeout(f"timed out after {timeout:.0f}s waiting for {what}; {detail}")
        time.sleep(interval)


PORT_TRIES = 3  # starts of a server whose port, picked free, was taken before it bound it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hashed_signing_key(key: str) -> str:
    """The Bearer token SDKs send: sha256 hex of the hex-decoded key (prefix stripped)."""
    raw = key.split("-", 2)[2] if key.startswith("signkey-") else key
    return hashlib.sha256(bytes.fromhex(raw)).hexdigest()


def new_tag() -> str:
    return uuid.uuid4().hex[:12]


def large_state_digests(size: int, count: int) -> list[dict[str, Any]]:
    """What the `large-state` function returns when its pieces reached its last step intact."""
    return [{"len": size, "sha256": digest(blob(i, size))} for i in range(count)]


# ---------------------------------------------------------------------------------------------
# processes


class Proc:
    """A child process whose output goes to a file, stopped by its own pid only."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, out: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.out = out
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.out, "ab") as sink:
            sink.write(f"\n===== start {self.name}: {' '.join(self.argv)}\n".encode())
            sink.flush()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.out.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def listening(self, port: int) -> bool:
        """Once something answered on ``port``: whether it is this process (it listens there)
        rather than another one that holds the port (this one then exits, unable to bind it)."""
        def listening_or_gone() -> str | None:
            if not self.alive():
                return "gone"
            return "listening" if _listens(self.pid, port) else None

        return poll(listening_or_gone, timeout=START_TIMEOUT, interval=0.05,
                    what=f"{self.name} to listen on {port}") == "listening"

    def ensure_alive(self) -> None:
        if not self.alive():
            code = self.popen.returncode if self.popen else None
            raise AssertionError(f"{self.name} exited ({code}); output:\n{self.tail()}")


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def server_command() -> list[str]:
    """How to run the ``pyngest`` CLI: the console script next to this Python, or ``-c``."""
    script = Path(sys.executable).with_name("pyngest")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pyngest.server.cli import main; main()"]


_HELP_CACHE: dict[str, str] = {}


def server_supports(mode: str, flag: str) -> bool:
    if mode not in _HELP_CACHE:
        res = subprocess.run(
            [*server_command(), mode, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env=_child_env({}),
        )
        _HELP_CACHE[mode] = res.stdout + res.stderr
    return flag in _HELP_CACHE[mode]


@dataclass
class Server:
    """One ``pyngest dev`` or ``pyngest start`` process, restartable on the same port and data."""

    workdir: Path
    mode: str = "dev"
    signing_key: str | None = None
    event_key: str | None = None
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sqlite_dir(self) -> Path:
        return self.workdir / "data"

    def argv(self) -> list[str]:
        argv = [*server_command(), self.mode, "-p", str(self.port), "--retry-interval", "1"]
        if self.mode == "dev":
            argv.append("--no-discovery")
        if server_supports(self.mode, "--sqlite-dir"):
            argv += ["--sqlite-dir", str(self.sqlite_dir)]
        if backends.BACKEND == "postgres":  # the same data across restarts: a schema per workdir
            argv += ["--postgres-uri", backends.postgres_uri(backends.schema_for(self.workdir)),
                     "--redis-uri", backends.REDIS_URI]
        if self.signing_key:
            argv += ["--signing-key", self.signing_key]
        if self.event_key:
            argv += ["--event-key", self.event_key]
        if "--connect-gateway-port" not in self.extra_args and server_supports(self.mode, "--connect-gateway-port"):
            argv += ["--connect-gateway-port", "0"]  # no second port (--port + 1) that may be another test's
        return argv + self.extra_args + shlex.split(os.environ.get("CONFORMANCE_SERVER_ARGS", ""))

    def start(self) -> None:
        self.sqlite_dir.mkdir(parents=True, exist_ok=True)
        if backends.BACKEND == "postgres":
            backends.create_schema_sync(backends.schema_for(self.workdir))
        first = self.proc is None
        for attempt in range(1, PORT_TRIES + 1):
            self.proc = Proc(
                f"pyngest {self.mode}",
                self.argv(),
                _child_env({}),
                self.workdir,
                self.workdir / "server.log",
            )
            self.proc.start()
            try:
                self.wait_healthy()
                if self.proc.listening(self.port):  # not another test's server on that port
                    return
            except AssertionError:  # it exited, or never answered (PollTimeout)
                if self.proc.alive():
                    raise
            # A port picked free is bound by the server a moment later, and another test's
            # socket can take it in between: a first start then tries another port (a restart
            # keeps its port, which apps and tests already point at).
            if not first or attempt == PORT_TRIES or not self._port_was_taken():
                raise AssertionError(f"pyngest {self.mode} exited; output:\n{self.proc.tail()}")
            self.port = free_port()

    def log_text(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")

    def _port_was_taken(self) -> bool:
        assert self.proc is not None
        tail = self.proc.tail()
        return "cannot listen on" in tail and "in use" in tail  # 127.0.0.1 or ::1

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        def healthy() -> bool:
            assert self.proc is not None
            self.proc.ensure_alive()
            res = requests.get(f"{self.url}/health", timeout=2)
            return res.status_code == 200

        poll(healthy, timeout=timeout, interval=0.1, what=f"{self.url}/health")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill9()

    def restart(self) -> None:
        self.kill9()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    @classmethod
    @contextmanager
    def running(cls, workdir: Path, **options: Any) -> Iterator[Server]:
        """A fresh server in ``workdir`` (made here), stopped afterwards."""
        srv = cls(workdir, **options)
        srv.workdir.mkdir()
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()

    def api(self) -> Api:
        return Api(self.url, self.event_key or "test-event-key", self.signing_key)


@dataclass
class App:
    """One conformance app (an official SDK, or pyngest's) as a process."""

    kind: str
    workdir: Path
    server_url: str
    signing_key: str | None = None
    event_key: str | None = None
    app_id: str | None = None
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)  # more variables for the app's process
    proc: Proc | None = None

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/inngest"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def prefix(self) -> str:
        return self.env.get("CONFORMANCE_PREFIX") or f"{self.kind}-{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.kind}-{self.port}.jsonl"

    @property
    def id(self) -> str:
        return self.app_id or f"conformance-{self.kind}"

    @property
    def connect(self) -> bool:
        return self.kind in CONNECT_KINDS

    @property
    def instance(self) -> str:
        """A connect worker's instance id."""
        return self.env.get("CONNECT_INSTANCE_ID") or f"{self.kind}-{self.port}"

    def slug(self, fn: str) -> str:
        return f"{self.id}-{fn}"

    def event(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def start(self) -> None:
        first = self.proc is None
        for attempt in range(1, PORT_TRIES + 1):
            self._spawn()
            assert self.proc is not None
            if self.connect:
                poll(self.connected, timeout=START_TIMEOUT, interval=0.1,
                     what=f"{self.kind} worker {self.instance} to connect")
                return
            try:
                poll(self._answers, timeout=START_TIMEOUT, interval=0.1, what=f"{self.kind} app to serve")
                # What answered may be another test's app that holds the port picked for this
                # one (picked free, bound by the app a moment later): it must be this process.
                if self.proc.listening(self.port):
                    return
            except AssertionError:
                if self.proc.alive():
                    raise
            tail = self.proc.tail()
            if not first or attempt == PORT_TRIES or not any(t in tail for t in ("in use", "EADDRINUSE")):
                raise AssertionError(f"{self.kind} app exited; output:\n{tail}")
            self.port = free_port()

    def _spawn(self) -> None:
        env: dict[str, str] = {
            "PORT": str(self.port),
            "CONFORMANCE_LOG": str(self.log_path),
            "CONFORMANCE_PREFIX": self.prefix,
            "CONFORMANCE_APP_ID": self.id,
            "INNGEST_BASE_URL": self.server_url,
        }
        if self.signing_key:
            env["INNGEST_DEV"] = "0"
            env["INNGEST_SIGNING_KEY"] = self.signing_key
        else:
            env["INNGEST_DEV"] = self.server_url
        if self.event_key:
            env["INNGEST_EVENT_KEY"] = self.event_key
        if self.connect:
            env["CONNECT_INSTANCE_ID"] = self.instance
        env.update(self.env)
        if self.kind in ("js", "js_connect"):
            if not (JS_DIR / "node_modules" / "inngest").is_dir():
                raise AssertionError(
                    "tests/conformance/js/node_modules is missing: run `npm ci` there "
                    "(scripts/test does it)"
                )
            node = shutil.which("node")
            if node is None:
                raise AssertionError("node is not installed")
            argv, cwd = [node, "app.mjs"], JS_DIR
            if self.kind == "js_connect":
                env["CONFORMANCE_CONNECT"] = "1"
                if _node_major(node) < 22:  # WebSocket is global from Node 22 on
                    argv.insert(1, "--experimental-websocket")
                    # the SDK's worker thread does not get the flag: run the connection in-thread
                    env["INNGEST_CONNECT_ISOLATE_EXECUTION"] = "false"
        else:
            argv, cwd = [sys.executable, str(APPS_DIR / f"{self.kind}.py")], APPS_DIR
        self.proc = Proc(
            self.kind, argv, _child_env(env), cwd, self.workdir / f"{self.kind}-{self.port}.out"
        )
        self.proc.start()

    def connections(self) -> list[dict[str, Any]]:
        """The server's live connect connections of this app."""
        headers = {}
        if self.signing_key:
            headers["Authorization"] = f"Bearer {hashed_signing_key(self.signing_key)}"
        # the worker's environment: its branch (INNGEST_ENV) or the default one (by name)
        env = self.env.get("INNGEST_ENV") or "Production"
        res = requests.get(f"{self.server_url}/v0/connect/envs/{env}/conns", params={"app": self.id},
                           headers=headers, timeout=5)
        res.raise_for_status()
        return list(res.json()["data"])

    def connected(self) -> bool:
        assert self.proc is not None
        self.proc.ensure_alive()
        return any(c["instance_id"] == self.instance for c in self.connections())

    def _answers(self) -> bool:
        assert self.proc is not None
        self.proc.ensure_alive()
        res = requests.get(self.serve_url, timeout=5)
        if self.signing_key:
            # Cloud mode: an unsigned GET is refused, by the SDK (not by a bare 401 of the stack).
            return res.status_code == 401 and "x-inngest-sdk-handled" in res.headers
        return res.status_code == 200 and "x-inngest-sdk" in res.headers

    def sync(self) -> requests.Response:
        """Ask the SDK to register with the server (it POSTs /fn/register), as a user's curl does."""
        return requests.put(self.serve_url, timeout=60)

    def sync_error(self) -> str | None:
        """Sync; return why it failed, or None if the server accepted the registration.

        The status of the PUT is not enough: Python 0.5.19 answers 200 whatever the server said
        and relays the server's reply as the body, so a refusal shows only there (``status`` /
        ``ok`` of the server's JSON). JS answers with the server's status. A connect worker's
        handshake synced it: start() waited for its connection."""
        if self.connect:
            return None
        res = self.sync()
        try:
            body = res.json()
        except ValueError:
            body = None
        refused = isinstance(body, dict) and (
            body.get("ok") is False
            or (isinstance(body.get("status"), int) and body["status"] >= 400)
        )
        if res.status_code != 200 or refused:
            return f"PUT {self.serve_url} answered {res.status_code}: {res.text[:500]}"
        return None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def observations(self, **match: Any) -> list[dict[str, Any]]:
        """The app's log lines, in the order they were written, whose fields equal ``match``."""
        try:
            text = self.log_path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            if not line.endswith("}"):
                continue  # a line still being written
            entry = json.loads(line)
            if all(entry.get(k) == v for k, v in match.items()):
                out.append(entry)
        return out


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` (or a child of it) has a socket listening on ``port`` (Linux's
    /proc: the listening sockets' inodes, then the process's file descriptors)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    for p in pids:
        try:
            fds = list(Path(f"/proc/{p}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    return True
            except OSError:
                continue
    return False


def _node_major(node: str) -> int:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    return int(out.strip().lstrip("v").split(".")[0])


# ---------------------------------------------------------------------------------------------
# the server's HTTP APIs


class Api:
    def __init__(self, url: str, event_key: str, signing_key: str | None):
        self.url = url
        self.event_key = event_key
        self.session = requests.Session()
        if signing_key:
            self.session.headers["Authorization"] = f"Bearer {hashed_signing_key(signing_key)}"
        self.env_headers: dict[str, str] = {}  # on events too (in_env)

    def in_env(self, env: str) -> Api:
        """The same API, about environment ``env`` (``x-inngest-env`` on events and reads)."""
        other = Api(self.url, self.event_key, None)
        other.session.headers.update(self.session.headers)
        other.env_headers = {"x-inngest-env": env}
        other.session.headers.update(other.env_headers)
        return other

    # events -------------------------------------------------------------------------------
    def send_raw(
        self, events: Any, *, key: str | None = None, headers: dict[str, str] | None = None
    ) -> requests.Response:
        return requests.post(
            f"{self.url}/e/{key or self.event_key}", json=events, headers={**self.env_headers, **(headers or {})},
            timeout=30,
        )

    def send(self, name: str, data: dict[str, Any] | None = None, **fields: Any) -> str:
        """Send one event; return the server's id for it."""
        res = self.send_raw({"name": name, "data": data or {}, **fields})
        assert res.status_code == 200, f"POST /e answered {res.status_code}: {res.text}"
        body = res.json()
        assert body.get("status") == 200 and len(body.get("ids", [])) == 1, body
        return str(body["ids"][0])

    # runs ---------------------------------------------------------------------------------
    def event_runs(self, event_id: str) -> list[dict[str, Any]]:
        res = self.session.get(f"{self.url}/v1/events/{event_id}/runs", timeout=10)
        if res.status_code == 404:
            return []
        res.raise_for_status()
        return list(res.json().get("data") or [])

    def run(self, run_id: str) -> dict[str, Any]:
        res = self.session.get(f"{self.url}/v1/runs/{run_id}", timeout=10)
        res.raise_for_status()
        return dict(res.json()["data"])

    def wait_runs(
        self, event_id: str, count: int = 1, timeout: float = RUN_TIMEOUT
    ) -> list[dict[str, Any]]:
        """Wait until the event has started ``count`` runs; return them."""
        return poll(
            lambda: (runs := self.event_runs(event_id)) and len(runs) >= count and runs,
            timeout=timeout,
            what=f"{count} run(s) of event {event_id}",
        )

    def wait_run(self, event_id: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """The single run the event started, once it has ended."""
        runs = self.wait_runs(event_id, 1, timeout)
        assert len(runs) == 1, f"event {event_id} started {len(runs)} runs: {runs}"
        return self.wait_ended(runs[0]["run_id"], timeout)

    def wait_ended(self, run_id: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        return poll(
            lambda: (run := self.run(run_id)) and run.get("status") in TERMINAL and run,
            timeout=timeout,
            what=f"run {run_id} to end",
        )

    def gql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        res = self.session.post(
            f"{self.url}/v0/gql", json={"query": query, "variables": variables}, timeout=10
        )
        res.raise_for_status()
        body = res.json()
        assert not body.get("errors"), body
        return dict(body["data"])
