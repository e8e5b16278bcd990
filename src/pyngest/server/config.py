"""Server settings, shared by ``pyngest dev`` and ``pyngest start``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pyngest.protocol.events import DEFAULT_MAX_EVENT_BYTES

# The largest body of one call that sends events (upstream's documented request limit is at most
# 3 MB); the largest event is allowed whatever this says.
DEFAULT_MAX_REQUEST_BYTES = 3 * 1024 * 1024

DEFAULT_PORT = 8288
# what `pyngest dev/start` give ServerConfig.spin_us unless told (--spin-us)
DEFAULT_SPIN_US = 500
DEV_DISCOVERY_PORTS = [80, 443, *range(3000, 3011), 4321, 5000, 5173, 8000, 8080, 8081, 8888,
                       *range(8910, 8916), 8787]
DEV_DISCOVERY_PATHS = ["/api/inngest", "/x/inngest", "/.netlify/functions/inngest", "/.redwood/functions/inngest"]


@dataclass
class ServerConfig:
    mode: str = "dev"  # "dev" or "start"
    host: str | None = None  # None: 127.0.0.1 and ::1
    port: int = DEFAULT_PORT
    sdk_urls: list[str] = field(default_factory=list)
    discovery: bool = True
    poll: bool = True
    poll_interval_s: float = 5.0
    signing_key: str | None = None
    signing_key_fallback: str | None = None
    event_keys: list[str] = field(default_factory=list)
    sqlite_dir: Path = Path(".inngest")
    queue_workers: int = 100
    # requests in flight to one app / for one function (None: the app's limit is --queue-workers,
    # a function's is its app's); a job over the limit waits without holding a queue worker
    app_requests: int | None = None
    function_requests: int | None = None
    connect_timeout_s: float = 10.0  # to connect to an app (TLS handshake included)
    step_timeout_s: float = 2 * 3600.0  # for an app to answer one request (upstream's maximum step duration)
    retry_interval_s: int | None = None
    tick_ms: int = 150
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    durability: str = "normal"  # "normal" survives a killed process; "full" fsyncs every commit
    # microseconds the HTTP server's loop keeps polling after answering an SDK, while few runs
    # execute (server/awake.py); 0: it sleeps at once
    spin_us: int = 0
    shutdown_grace_s: float = 30.0
    retention_ms: int = 7 * 86_400_000  # ended runs and old events are removed after this; 0 keeps all
    # a webhook's JavaScript transform: wall-clock time and V8 heap it may use per request
    webhook_timeout_ms: int = 500
    webhook_memory_bytes: int = 32 * 1024 * 1024
    log_level: str = "info"
    json_logs: bool = False
    # scale-out: PostgreSQL is the record, Redis carries wake-ups between processes
    postgres_uri: str | None = None
    redis_uri: str | None = None
    advertise_url: str | None = None  # where other processes reach this one; default http://host:port
    lease_ttl_s: float = 10.0  # a dead process's shards are taken over within about this long
    shards: int = 32  # only when the cluster's database is created
    otel_endpoint: str | None = None  # OTLP/HTTP collector for runs' traces; None: no export
    # start mode: the dashboard's sign-in (without a password, the signing key is the password)
    dashboard_user: str = "admin"
    dashboard_password: str | None = None
    # behind a TLS-terminating proxy: X-Forwarded-Proto / X-Forwarded-Host say how browsers reach us
    trust_proxy: bool = False
    # connect: the WebSocket gateway's own port (None: only on the API port, path /v0/connect)
    connect_gateway_port: int | None = None
    connect_gateway_group: str = "pyngest"

    @property
    def server_kind(self) -> str:
        return "dev" if self.mode == "dev" else "cloud"

    @property
    def app_request_limit(self) -> int:
        return self.app_requests or self.queue_workers

    @property
    def function_request_limit(self) -> int:
        return min(self.function_requests or self.app_request_limit, self.app_request_limit)

    @property
    def event_request_limit(self) -> int:
        """The largest body accepted by the routes that send events."""
        return max(self.max_request_bytes, self.max_event_bytes)

    @property
    def signing_keys(self) -> list[str]:
        return [k for k in (self.signing_key, self.signing_key_fallback) if k]

    @property
    def requires_auth(self) -> bool:
        return self.mode == "start"
