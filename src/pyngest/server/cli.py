"""``pyngest dev`` and ``pyngest start``.

Every flag can also come from an ``INNGEST_<FLAG>`` environment variable and from a config file
(``inngest.json|yaml|yml|toml``: found by walking up from the working directory for ``dev``,
given with ``--config`` for ``start``). Precedence: flag, environment, config file, default.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import socket
import sqlite3
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
import yaml

from pyngest.protocol import signing
from pyngest.protocol.durations import DurationError, parse_ms
from pyngest.protocol.sync import app_url_problem
from pyngest.server.config import DEFAULT_PORT, DEFAULT_SPIN_US, ServerConfig

log = logging.getLogger("pyngest")

CONFIG_NAMES = ("inngest.json", "inngest.yaml", "inngest.yml", "inngest.toml")


def find_config(start: Path) -> Path | None:
    for directory in [start, *start.parents]:
        for name in CONFIG_NAMES:
            candidate = directory / name
            if candidate.is_file():
                return candidate
    return None


def read_config(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise click.UsageError(f"cannot read the config file {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise click.UsageError(f"the config file {path} must hold a mapping of flag names to values")
    return {str(k).replace("_", "-").lower(): v for k, v in data.items()}


def apply_config(ctx: click.Context, params: dict[str, Any], file_values: dict[str, Any]) -> None:
    """Fill options the user did not set (by flag or environment) from the config file."""
    aliases = {"urls": "sdk-url", "sdk-url": "sdk-url"}
    for key, value in file_values.items():
        name = aliases.get(key, key).replace("-", "_")
        if name not in params:
            continue
        source = ctx.get_parameter_source(name)
        if source in (click.core.ParameterSource.DEFAULT, None):
            if isinstance(params[name], tuple):
                value = tuple(value) if isinstance(value, list) else (value,)
            params[name] = value


def _env(name: str) -> str:
    return f"INNGEST_{name.upper().replace('-', '_')}"


# Flags of `start` that `dev` does not list: dev takes any event key and has no sign-in. dev
# still reads them (hidden) so that it refuses them on its command line instead of ignoring
# them (from the environment they are ignored: an app's INNGEST_EVENT_KEY may be set there).
START_ONLY = ("dashboard_user", "dashboard_password", "event_key")
# stopping: how long realtime subscribers get to receive their ``closing`` message before the
# HTTP server ends their connections (a reader that stopped reading is not waited for longer)
EXIT_NOTICE_S = 2.0


def common_options(fn: Any, *, dev: bool) -> Any:
    options = [
        click.option("-p", "--port", type=int, default=DEFAULT_PORT, envvar=_env("port"), show_default=True,
                     help="Port for the Event API, SDK APIs, REST, GraphQL and dashboard."),
        click.option("--host", default=None, envvar=_env("host"),
                     help="Interface to listen on (default: 127.0.0.1 and ::1)."),
        click.option("-u", "--sdk-url", multiple=True, envvar=_env("sdk_url"),
                     help="An app's serve URL to sync, e.g. http://localhost:3000/api/inngest (repeatable)."),
        click.option("--poll-interval", type=float, default=None, envvar=_env("poll_interval"),
                     help="Seconds between re-syncs of known apps."),
        click.option("--retry-interval", type=click.IntRange(min=1), default=None, envvar=_env("retry_interval"),
                     help="Retry failed steps after this many seconds instead of the backoff table."),
        click.option("--queue-workers", type=click.IntRange(min=1), default=100, envvar=_env("queue_workers"),
                     show_default=True, help="How many jobs may execute at once (requests to apps wait "
                                             "for their app's slots without holding one)."),
        click.option("--app-requests", type=click.IntRange(min=1), default=None, envvar=_env("app_requests"),
                     help="Most requests in flight to one app (default: --queue-workers)."),
        click.option("--function-requests", type=click.IntRange(min=1), default=None,
                     envvar=_env("function_requests"),
                     help="Most requests in flight for one function (default: its app's limit)."),
        click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=10.0,
                     envvar=_env("connect_timeout"), show_default=True,
                     help="Seconds to connect to an app before the request fails (and is retried)."),
        click.option("--step-timeout", type=click.FloatRange(min=1, max=7200), default=7200.0,
                     envvar=_env("step_timeout"), show_default=True,
                     help="Seconds an app has to answer one request (at most 2 hours, upstream's maximum step duration)."),
        click.option("--tick", type=click.IntRange(min=1), default=150, envvar=_env("tick"),
                     help="Accepted for compatibility: pyngest wakes on due jobs and does not poll."),
        click.option("--sqlite-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     envvar=_env("sqlite_dir"), help="Where the SQLite database lives."),
        click.option("--max-event-size", type=click.IntRange(min=1024), default=None, envvar=_env("max_event_size"),
                     help="Largest accepted event, in bytes (default 3 MiB)."),
        click.option("--max-request-size", type=click.IntRange(min=1024), default=None,
                     envvar=_env("max_request_size"),
                     help="Largest body of a call that sends events, in bytes (default 3 MiB; never "
                          "below --max-event-size)."),
        click.option("--webhook-timeout", type=click.IntRange(min=10, max=30_000), default=500,
                     envvar=_env("webhook_timeout"), show_default=True,
                     help="Milliseconds a webhook's transform may run for one request."),
        click.option("--webhook-memory", type=click.IntRange(min=4, max=1024), default=32,
                     envvar=_env("webhook_memory"), show_default=True,
                     help="MiB of JavaScript heap a webhook's transform may use for one request."),
        click.option("--durability", type=click.Choice(["normal", "full"]), default="normal",
                     envvar=_env("durability"),
                     help="'normal' survives a killed process; 'full' also fsyncs every commit (power loss)."),
        click.option("--spin-us", type=click.IntRange(min=0, max=10_000), default=DEFAULT_SPIN_US,
                     envvar=_env("spin_us"), show_default=True,
                     help="Microseconds the server keeps polling after answering an SDK while at most "
                          "two runs execute, instead of sleeping (lower step latency on machines whose "
                          "idle CPUs are slow to wake); 0 turns it off."),
        click.option("--shutdown-grace", type=float, default=30.0, envvar=_env("shutdown_grace"),
                     help="Seconds in-flight app requests get to finish on shutdown."),
        click.option("--retention", default="7d", envvar=_env("retention"), show_default=True,
                     help="How long ended runs and old events are kept (e.g. 3d, 12h); 0 keeps everything."),
        click.option("-l", "--log-level", type=click.Choice(["trace", "debug", "info", "warn", "error"]),
                     default="info", envvar=_env("log_level")),
        click.option("--json", "json_logs", is_flag=True, default=None, envvar=_env("json"),
                     help="JSON logs (default when stdout is not a terminal)."),
        click.option("-v", "--verbose", is_flag=True, envvar=_env("verbose"), help="Verbose logging."),
        click.option("--otel-endpoint", default=None, envvar=[_env("otel_endpoint"), "OTEL_EXPORTER_OTLP_ENDPOINT"],
                     help="Export a trace per run to this OTLP/HTTP collector, e.g. http://localhost:4318 "
                          "(needs pyngest[otel])."),
        click.option("--signing-key", default=None, envvar=_env("signing_key"),
                     help="Sign requests to apps and require it from them (hex, optionally signkey-<env>-)."),
        click.option("--signing-key-fallback", default=None, envvar=_env("signing_key_fallback"),
                     help="A second accepted signing key, for rotation."),
        click.option("--dashboard-user", default="admin", envvar=_env("dashboard_user"), show_default=True,
                     hidden=dev, help="The user name that signs in to the dashboard."),
        click.option("--dashboard-password", default=None, envvar=_env("dashboard_password"), hidden=dev,
                     help="The dashboard's password (default: the signing key)."),
        click.option("--trust-proxy", is_flag=True, default=False, envvar=_env("trust_proxy"),
                     help="Behind a TLS-terminating reverse proxy: believe its X-Forwarded-Proto, -Host and -For "
                          "(Secure session cookie, same-origin checks, sign-in rate limits per client)."),
        click.option("--event-key", multiple=True, envvar=_env("event_key"), hidden=dev,
                     help="An accepted event key (repeatable)."),
        click.option("--postgres-uri", default=None, envvar=_env("postgres_uri"),
                     help="Keep everything in PostgreSQL (postgres://…) instead of SQLite: run several "
                          "processes, on one machine or many, on the same database."),
        click.option("--redis-uri", default=None, envvar=_env("redis_uri"),
                     help="With --postgres-uri: Redis (redis://…) for instant wake-ups between processes "
                          "(without it they poll PostgreSQL)."),
        click.option("--advertise-url", default=None, envvar=_env("advertise_url"),
                     help="With --postgres-uri: this process's URL as the other processes reach it "
                          "(default http://<host>:<port>)."),
        click.option("--connect-gateway-port", type=click.IntRange(min=0, max=65535), default=None,
                     envvar=_env("connect_gateway_port"),
                     help="Port of the connect WebSocket gateway (default: --port + 1; 0: only on "
                          "--port, path /v0/connect)."),
        click.option("--lease-ttl", type=click.FloatRange(min=1.0), default=10.0, envvar=_env("lease_ttl"),
                     show_default=True,
                     help="With --postgres-uri: seconds after which a dead process's work is taken over."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pyngest", prog_name="pyngest", message="%(prog)s %(version)s")
def main() -> None:
    """pyngest: a durable-functions server compatible with Inngest's SDKs."""


def _dev_options(fn: Any) -> Any:
    return common_options(fn, dev=True)


def _start_options(fn: Any) -> Any:
    return common_options(fn, dev=False)


@main.command()
@_dev_options
@click.option("--no-discovery", is_flag=True, envvar=_env("no_discovery"), help="Do not scan local ports for apps.")
@click.option("--no-poll", is_flag=True, envvar=_env("no_poll"), help="Do not re-sync apps periodically.")
@click.pass_context
def dev(ctx: click.Context, /, **params: Any) -> None:
    """Run the local development server (any event key works, no signing needed)."""
    for name in START_ONLY:
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(
                f"--{name.replace('_', '-')} applies to `pyngest start`; the dev server takes any event key "
                "and has no sign-in"
            )
    path = find_config(Path.cwd())
    if path is not None:
        apply_config(ctx, params, read_config(path))
    cfg = _build(params, mode="dev")
    cfg.discovery = not params["no_discovery"]
    cfg.poll = not params["no_poll"]
    _run(cfg, path)


@main.command()
@_start_options
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar=_env("config"), help="A config file (YAML, JSON or TOML).")
@click.pass_context
def start(ctx: click.Context, /, config_path: Path | None, **params: Any) -> None:
    """Run the self-hosted server (event keys and a signing key required)."""
    if config_path is not None:
        if not config_path.is_file():
            raise click.UsageError(f"config file {config_path} does not exist")
        apply_config(ctx, params, read_config(config_path))
    cfg = _build(params, mode="start")
    cfg.discovery = False
    cfg.poll = params["poll_interval"] is not None
    if not cfg.signing_key:
        raise click.UsageError(
            "pyngest start needs a signing key: pass --signing-key <hex> (or set INNGEST_SIGNING_KEY); "
            "generate one with: openssl rand -hex 32"
        )
    if not cfg.event_keys:
        raise click.UsageError(
            "pyngest start needs at least one event key: pass --event-key <key> (or set INNGEST_EVENT_KEY)"
        )
    _run(cfg, config_path)


def _port_ok(flag: str, uri: Any) -> None:
    """A URI's port, if it names one, is a number in range (else the drivers fail deep inside)."""
    if uri is None:
        return
    from urllib.parse import urlsplit

    try:
        _ = urlsplit(str(uri)).port  # raises for a port that is not a number in range
    except ValueError as exc:
        raise click.UsageError(f"{flag}: the port is not a number from 0 to 65535 ({exc})") from exc


def _build(params: dict[str, Any], *, mode: str) -> ServerConfig:
    postgres, redis = params.get("postgres_uri") or None, params.get("redis_uri") or None
    if postgres is not None and not str(postgres).startswith(("postgres://", "postgresql://")):
        raise click.UsageError("--postgres-uri must be a postgres:// or postgresql:// URI, "
                               "e.g. postgres://user:password@db.example:5432/inngest")
    _port_ok("--postgres-uri", postgres)
    if redis is not None:
        if not str(redis).startswith(("redis://", "rediss://", "unix://")):
            raise click.UsageError("--redis-uri must be a redis://, rediss:// or unix:// URI, "
                                   "e.g. redis://cache.example:6379/0")
        _port_ok("--redis-uri", redis)
        if postgres is None:
            raise click.UsageError("--redis-uri needs --postgres-uri: pyngest keeps its record in PostgreSQL and "
                                   "uses Redis only to wake the other processes sharing it")
    for key in ("signing_key", "signing_key_fallback"):
        if params.get(key):
            try:
                signing.validate_signing_key(params[key])
            except ValueError as exc:
                raise click.UsageError(f"--{key.replace('_', '-')}: {exc}") from exc
    cfg = ServerConfig(mode=mode)
    cfg.port = int(params["port"])
    cfg.host = params["host"]
    cfg.sdk_urls = [u for value in params["sdk_url"] for u in _split(value)]
    for url in cfg.sdk_urls:
        if (problem := app_url_problem(url)) is not None:
            raise click.UsageError(f"--sdk-url {url[:100]}: the URL {problem}")
    if params["poll_interval"] is not None:
        cfg.poll_interval_s = float(params["poll_interval"])
    cfg.retry_interval_s = params["retry_interval"]
    cfg.queue_workers = int(params["queue_workers"])
    cfg.app_requests = params["app_requests"]
    cfg.function_requests = params["function_requests"]
    cfg.connect_timeout_s = float(params["connect_timeout"])
    cfg.step_timeout_s = float(params["step_timeout"])
    cfg.tick_ms = int(params["tick"])
    cfg.sqlite_dir = Path(params["sqlite_dir"]) if params["sqlite_dir"] else Path(".inngest")
    if params["max_event_size"]:
        cfg.max_event_bytes = int(params["max_event_size"])
    if params["max_request_size"]:
        cfg.max_request_bytes = int(params["max_request_size"])
    cfg.durability = params["durability"]
    cfg.spin_us = int(params["spin_us"])
    cfg.webhook_timeout_ms = int(params["webhook_timeout"])
    cfg.webhook_memory_bytes = int(params["webhook_memory"]) * 1024 * 1024
    cfg.shutdown_grace_s = float(params["shutdown_grace"])
    try:
        cfg.retention_ms = parse_ms(str(params["retention"]))
    except DurationError as exc:
        raise click.UsageError(f"--retention: {exc}") from exc
    cfg.signing_key = params["signing_key"]
    cfg.signing_key_fallback = params["signing_key_fallback"]
    cfg.event_keys = [k for value in params["event_key"] for k in _split(value)]
    cfg.dashboard_user = params["dashboard_user"] or "admin"
    cfg.dashboard_password = params["dashboard_password"] or None
    cfg.trust_proxy = bool(params["trust_proxy"])
    cfg.postgres_uri, cfg.redis_uri = postgres, redis
    cfg.advertise_url = params.get("advertise_url") or None
    cfg.lease_ttl_s = float(params.get("lease_ttl") or 10.0)
    cfg.log_level = "debug" if params["verbose"] else params["log_level"]
    cfg.json_logs = params["json_logs"] if params["json_logs"] is not None else not sys.stdout.isatty()
    cfg.otel_endpoint = params["otel_endpoint"] or None
    gateway_port = params.get("connect_gateway_port")
    if gateway_port is None:  # beside the API port, as upstream's 8289 beside 8288
        gateway_port = cfg.port + 1 if 0 < cfg.port < 65535 else 0
    cfg.connect_gateway_port = gateway_port or None
    return cfg


def _split(value: str) -> list[str]:
    # environment variables may carry several values separated by commas
    return [v.strip() for v in str(value).split(",") if v.strip()]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": round(record.created, 3), "level": record.levelname.lower(), "caller": record.name,
               "msg": record.getMessage()}
        fields = getattr(record, "fields", None)  # run_id, fn, app... of run events (run_log.py)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _setup_logging(cfg: ServerConfig) -> None:
    level = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
             "error": logging.ERROR}[cfg.log_level]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if cfg.json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s > %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _sockets(cfg: ServerConfig) -> list[socket.socket]:
    hosts = [cfg.host] if cfg.host else ["127.0.0.1", "::1"]
    out = []
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((host, cfg.port))
        except OSError as exc:
            sock.close()
            if cfg.host is None and family == socket.AF_INET6:
                continue  # no IPv6 on this machine: serve IPv4 only
            raise click.ClickException(f"cannot listen on {host}:{cfg.port}: {exc.strerror}") from exc
        sock.listen(2048)
        sock.setblocking(False)
        out.append(sock)
    return out


def _run(cfg: ServerConfig, config_file: Path | None) -> None:
    _setup_logging(cfg)
    sockets = _sockets(cfg)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(_serve(cfg, sockets, config_file))
    else:
        uvloop.run(_serve(cfg, sockets, config_file))


# gc's first threshold in the server's process (see _serve)
YOUNG_COLLECTION_THRESHOLD = 10_000


async def _serve(cfg: ServerConfig, sockets: list[socket.socket], config_file: Path | None) -> None:
    import uvicorn

    from pyngest.server.api.app import build_app
    from pyngest.server.api.lane import lane_protocol
    from pyngest.server.service import Service
    from pyngest.server.store.base import StoreUnavailable
    from pyngest.server.store.postgres.migrate import SchemaError
    from pyngest.server.store.sqlite.connection import StoreError

    t0 = time.monotonic()
    service = Service(cfg)
    exporter = _observe(service, cfg)
    try:
        await service.start(sync_apps=False)
    except (StoreUnavailable, SchemaError) as exc:
        raise click.ClickException(f"cannot open the store: {exc}") from exc
    except (StoreError, sqlite3.Error, OSError) as exc:
        where = "PostgreSQL" if cfg.postgres_uri else str(cfg.sqlite_dir)
        raise click.ClickException(f"cannot open the store in {where}: {exc}") from exc
    # What exists now (modules, the registry, the pause index rebuilt from the store: a million
    # objects with a million pending waits) lives long and is freed by reference counting when
    # it goes; freezing it keeps every later full collection from walking all of it again.
    gc.freeze()
    # A young collection is due whenever tracked objects outnumber those freed since the last by
    # 700 (CPython's default). Under load the objects of requests in flight swing by more than
    # that, so the collector ran every few milliseconds, found nothing to free (almost nothing
    # here is freed by it rather than by reference counting) and took 6-7 % of the server's CPU
    # (issue 16). At 10,000 it runs when something has really grown.
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
    app = build_app(service)
    server = _Server(uvicorn.Config(
        app, http=lane_protocol(app, service.keep_awake), lifespan="off", access_log=False, log_level="warning",
        timeout_graceful_shutdown=int(cfg.shutdown_grace_s), timeout_keep_alive=30,
    ))
    # realtime subscriptions are open-ended: end them when stopping begins, not after the grace,
    # and let their closing messages out before the HTTP server cuts open WebSockets (1012)
    server.before_exit.append(lambda: service.realtime.tell_subscribers(service.clock.now_ms(), EXIT_NOTICE_S))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_exit, sig)
    serving = asyncio.create_task(server.serve(sockets=sockets))
    gateway = _connect_gateway(cfg, service)
    gateway_serving = asyncio.create_task(gateway.serve(sockets=gateway.sockets)) if gateway else None
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    await service.syncer.start()
    known = [rec.url for rec in service.syncer.urls.values()]
    _banner(cfg, sockets, config_file, time.monotonic() - t0, known, _storage(service))
    try:
        await serving
    finally:
        log.info("shutting down: finishing in-flight work (up to %.0f s)", cfg.shutdown_grace_s)
        await service.stop()
        if gateway is not None and gateway_serving is not None:
            gateway.request_exit(signal.SIGTERM)
            await gateway_serving
        if exporter is not None:
            await exporter.close()
        log.info("stopped")


def _connect_gateway(cfg: ServerConfig, service: Any) -> Any:
    """The connect WebSocket gateway on its own port (upstream's 8289 beside 8288). A port that
    cannot be bound leaves the gateway on the API port only; workers are told where it is."""
    import uvicorn
    from starlette.applications import Starlette

    from pyngest.server.api.connect import ConnectAPI

    if not cfg.connect_gateway_port:
        return None
    gw = ServerConfig(mode=cfg.mode, host=cfg.host, port=cfg.connect_gateway_port)
    try:
        sockets = _sockets(gw)
    except click.ClickException as exc:
        log.warning("connect gateway: %s; workers connect on the API port instead", exc.message)
        cfg.connect_gateway_port = None
        return None
    api = ConnectAPI(service)
    app = Starlette(routes=[r for r in api.routes() if getattr(r, "path", "") == "/v0/connect"])
    server = _Server(uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning",
                                   timeout_graceful_shutdown=1))
    server.sockets = sockets
    return server


def _observe(service: Any, cfg: ServerConfig) -> Any:
    """Run events in the log, and (with --otel-endpoint) runs' traces over OTLP. Returns the
    trace exporter, to be closed (flushed) after the service."""
    from pyngest.server.run_log import RunLog, describer

    service.state.observers.append(RunLog(describer(service)).observe)
    if not cfg.otel_endpoint:
        return None
    try:
        from pyngest.server.otel import RunExporter
    except ImportError as exc:
        raise click.ClickException(
            f"--otel-endpoint needs the OpenTelemetry SDK: pip install 'pyngest[otel]' ({exc})"
        ) from exc
    exporter = RunExporter(service, cfg.otel_endpoint)
    service.state.observers.append(exporter.observe)
    log.info("exporting runs' traces to %s", cfg.otel_endpoint)
    return exporter


class _Server:
    """uvicorn's server without its signal handling: we stop the HTTP side first, then the
    service (workers finish in-flight requests, the store is flushed), then exit."""

    def __init__(self, config: Any) -> None:
        import contextlib

        import uvicorn

        class Quiet(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Any:
                yield

        self._server = Quiet(config)
        self.sockets: list[socket.socket] = []
        # awaited when stopping begins, before the HTTP server stops (each bounds its own wait)
        self.before_exit: list[Callable[[], Awaitable[None]]] = []
        self._exiting: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def request_exit(self, sig: int) -> None:
        log.info("received %s: shutting down", signal.Signals(sig).name)
        if self._exiting is not None:  # a second signal: don't wait any more
            self._server.should_exit = True
            self._server.force_exit = True
            return
        self._exiting = asyncio.ensure_future(self._exit())

    async def _exit(self) -> None:
        try:
            for hook in self.before_exit:
                try:
                    await hook()
                except Exception:
                    log.exception("stopping: a step before the HTTP server stops failed; stopping anyway")
        finally:
            self._server.should_exit = True

    async def serve(self, sockets: list[socket.socket]) -> None:
        await self._server.serve(sockets=sockets)


def _storage(service: Any) -> str:
    cfg = service.config
    if service.cluster is None:
        return f"{cfg.sqlite_dir / 'main.db'} (SQLite)"
    from urllib.parse import urlsplit

    pg = urlsplit(cfg.postgres_uri)
    where = f"{pg.hostname or 'localhost'}:{pg.port or 5432}{pg.path or ''}"
    cluster = service.cluster
    text = (f"PostgreSQL {where} (cluster {cluster.store.cluster_id}, {cluster.shards.count} shards, "
            f"{len(cluster.shards.owned)} here)")
    if cfg.redis_uri:
        rd = urlsplit(cfg.redis_uri)
        text += f", wake-ups through Redis {rd.hostname or 'localhost'}:{rd.port or 6379}"
    return text


def _banner(cfg: ServerConfig, sockets: list[socket.socket], config_file: Path | None, took: float,
            known: list[str], storage: str) -> None:
    """``known``: the app URLs the server syncs (flags and config, and those stored by earlier runs)."""
    addrs = []
    for s in sockets:
        host, port = s.getsockname()[:2]
        addrs.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
    lines = [
        f"pyngest {'dev server' if cfg.mode == 'dev' else 'server'} ready in {took:.2f}s",
        f"  listening on  {', '.join(addrs)}",
        f"  event API     POST {addrs[0]}/e/<event key>",
        f"  dashboard     {addrs[0]}/" + (" (sign in as " + cfg.dashboard_user + ")" if cfg.mode == "start" else ""),
        f"  storage       {storage}",
    ]
    gateway = addrs[0].replace("http://", "ws://", 1)
    if cfg.connect_gateway_port:
        gateway = gateway.rsplit(":", 1)[0] + f":{cfg.connect_gateway_port}"
    lines.append(f"  connect       {gateway}/v0/connect (workers start at POST /v0/connect/start)")
    if config_file is not None:
        lines.append(f"  config        {config_file}")
    scanning = cfg.mode == "dev" and cfg.discovery
    if known:
        lines.append(f"  apps          {', '.join(known)}" + (" (and scanning local ports for more)" if scanning else ""))
    elif scanning:
        lines.append("  apps          scanning local ports for serve endpoints "
                     "(disable with --no-discovery, add apps with -u <url>)")
    else:
        lines.append("  apps          none yet: add one with -u <url> or PUT your app's serve endpoint")
    print("\n".join(lines), file=sys.stderr, flush=True)


if __name__ == "__main__":  # pragma: no cover
    main()
