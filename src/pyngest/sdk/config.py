"""Configuration from arguments and environment variables (FEATURES.md §22).

Precedence follows the official Python SDK: constructor argument, then
``INNGEST_API_BASE_URL`` / ``INNGEST_EVENT_API_BASE_URL``, then ``INNGEST_BASE_URL`` (one URL
for a self-hosted server), then an ``INNGEST_DEV`` URL, then the dev-server or cloud default.
"""

from __future__ import annotations

import enum
import importlib.metadata
import os
import urllib.parse

from pyngest.sdk import errors

LANGUAGE = "py"
try:
    VERSION = importlib.metadata.version("pyngest")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0.0.0"
# Same form as the official "inngest-py:v0.5.19": <sdk>-<language>:v<version>.
SDK_HEADER = f"pyngest-{LANGUAGE}:v{VERSION}"
# Registration's `sdk` field, split by the server into language and version.
SDK_REGISTER = f"{LANGUAGE}:v{VERSION}"
PREFERRED_EXECUTION_VERSION = "2"
DEFAULT_API_ORIGIN = "https://api.inngest.com/"
DEFAULT_EVENT_API_ORIGIN = "https://inn.gs/"
DEV_SERVER_ORIGIN = "http://127.0.0.1:8288/"
DEFAULT_SERVE_PATH = "/api/inngest"
DEV_EVENT_KEY = "NO_EVENT_KEY_SET"


class Env(enum.StrEnum):
    API_BASE_URL = "INNGEST_API_BASE_URL"
    BASE_URL = "INNGEST_BASE_URL"
    CHECKPOINTING = "INNGEST_CHECKPOINTING"
    DEV = "INNGEST_DEV"
    EVENT_API_BASE_URL = "INNGEST_EVENT_API_BASE_URL"
    EVENT_KEY = "INNGEST_EVENT_KEY"
    ENABLE_UNAUTHED_SYNC = "INNGEST_ENABLE_UNAUTHED_SYNC"
    ENV = "INNGEST_ENV"
    THREAD_POOL_MAX_WORKERS = "INNGEST_THREAD_POOL_MAX_WORKERS"
    SERVE_ORIGIN = "INNGEST_SERVE_ORIGIN"
    SERVE_HOST = "INNGEST_SERVE_HOST"
    SERVE_PATH = "INNGEST_SERVE_PATH"
    SIGNING_KEY = "INNGEST_SIGNING_KEY"
    SIGNING_KEY_FALLBACK = "INNGEST_SIGNING_KEY_FALLBACK"
    STREAMING = "INNGEST_STREAMING"
    RAILWAY_GIT_BRANCH = "RAILWAY_GIT_BRANCH"
    RENDER_GIT_BRANCH = "RENDER_GIT_BRANCH"
    VERCEL_GIT_BRANCH = "VERCEL_GIT_COMMIT_REF"


class ServerKind(enum.StrEnum):
    CLOUD = "cloud"
    DEV_SERVER = "dev"


class Streaming(enum.Enum):
    """Whether to send keep-alive bytes until the response is ready (status 201 envelope)."""

    DISABLE = "disable"
    FORCE = "force"


def getenv(key: Env) -> str | None:
    return os.environ.get(key.value)


def env_is_truthy(key: Env) -> bool:
    val = getenv(key)
    return val is not None and val.strip().lower() not in ("false", "0", "")


def env_is_false(key: Env) -> bool:
    val = getenv(key)
    return val is not None and val.strip().lower() in ("false", "0")


def env_int(key: Env) -> int | None:
    val = getenv(key)
    try:
        return int(val) if val is not None else None
    except ValueError:
        return None


def env_streaming() -> Streaming | None:
    val = getenv(Env.STREAMING)
    if val is None:
        return None
    val = val.strip().lower()
    if val in ("allow", "force"):  # "allow" is the TS SDK's word; treated as force
        return Streaming.FORCE
    if val in ("disable", "false", "0", ""):
        return Streaming.DISABLE
    return None


def resolve_mode(is_production: bool | None) -> ServerKind:
    if is_production is not None:
        return ServerKind.CLOUD if is_production else ServerKind.DEV_SERVER
    if env_is_truthy(Env.DEV):
        return ServerKind.DEV_SERVER
    return ServerKind.CLOUD


def environment_name(explicit: str | None) -> str | None:
    return (
        explicit
        or getenv(Env.ENV)
        or getenv(Env.RAILWAY_GIT_BRANCH)
        or getenv(Env.RENDER_GIT_BRANCH)
        or getenv(Env.VERCEL_GIT_BRANCH)
    )


def parse_url(url: str, mode: ServerKind) -> str:
    """Validate an origin; a bare ``host:port`` gets ``http://`` (dev) or ``https://`` (cloud)."""
    url = url.strip()
    if "://" not in url:
        url = ("https://" if mode is ServerKind.CLOUD else "http://") + url
    parsed = urllib.parse.urlparse(url)
    host = parsed.netloc
    # "1" in INNGEST_DEV=1 is a flag, not a host: a host needs a dot, a port or be localhost.
    if parsed.scheme not in ("http", "https") or not (
        "." in host or ":" in host or host.split("@")[-1].startswith("localhost")
    ):
        raise errors.URLInvalidError(f"invalid URL {url!r}: expected an origin like http://localhost:8288")
    return parsed.geturl()


def _env_url(key: Env, mode: ServerKind) -> str | None:
    val = getenv(key)
    if val is None or not val.strip():
        return None
    try:
        return parse_url(val, mode)
    except errors.URLInvalidError:
        # INNGEST_DEV=1 is a flag, not a URL; other junk is ignored as upstream does.
        return None


def resolve_origin(explicit: str | None, specific: Env, mode: ServerKind, *, api: bool) -> str:
    origin = (
        explicit
        or _env_url(specific, mode)
        or _env_url(Env.BASE_URL, mode)
        or _env_url(Env.DEV, mode)
    )
    if origin is None:
        if mode is ServerKind.DEV_SERVER:
            origin = DEV_SERVER_ORIGIN
        else:
            origin = DEFAULT_API_ORIGIN if api else DEFAULT_EVENT_API_ORIGIN
    return parse_url(origin, mode)


def serve_origin(explicit: str | None) -> str | None:
    if explicit is not None:
        return explicit
    return getenv(Env.SERVE_ORIGIN) or getenv(Env.SERVE_HOST) or None


def serve_path(explicit: str | None) -> str | None:
    if explicit is not None:
        return explicit
    return getenv(Env.SERVE_PATH) or None


def serve_url(
    *, request_url: str, public_path: str | None, origin: str | None, path: str | None
) -> str:
    """The URL the server should call, from the request URL and the user's overrides."""
    origin = serve_origin(origin)
    path = serve_path(path)
    parsed = urllib.parse.urlparse(request_url)
    scheme, netloc, new_path = parsed.scheme, parsed.netloc, parsed.path
    if origin is not None:
        if "://" in origin:
            p = urllib.parse.urlparse(origin)
            scheme = p.scheme or scheme
            netloc = p.netloc or netloc
        else:
            scheme, netloc = "https", origin
    if path is not None:
        new_path = path
    if public_path is not None:
        new_path = public_path
    return urllib.parse.urlunparse((scheme, netloc, new_path, "", "", ""))


def base_headers(
    *, env: str | None, framework: str | None, server_kind: ServerKind | None
) -> dict[str, str]:
    """Headers on every request and response the SDK sends."""
    headers = {
        "content-type": "application/json",
        "x-inngest-sdk": SDK_HEADER,
        "x-inngest-req-version": PREFERRED_EXECUTION_VERSION,
        "user-agent": SDK_HEADER,
    }
    if env is not None:
        headers["x-inngest-env"] = env
    if framework is not None:
        headers["x-inngest-framework"] = framework
    if server_kind is not None:
        headers["x-inngest-expected-server-kind"] = server_kind.value
    return headers
