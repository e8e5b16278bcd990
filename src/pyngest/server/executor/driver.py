"""The HTTP driver: POST an execution request to an app and read what it says (PROTOCOL.md §3).

Only this module (and the gateway) speaks HTTP to apps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiohttp
import orjson

from pyngest.httpclient import HTTPClient, HTTPError, ResponseTooLarge
from pyngest.protocol import headers as H
from pyngest.protocol import jcs, signing
from pyngest.protocol.ids import new_ulid
from pyngest.protocol.opcodes import MAX_SDK_RESPONSE_BYTES
from pyngest.server.executor.backoff import parse_retry_after

MAX_FUNCTION_TIMEOUT_S = 2 * 3600
NOT_AN_SDK = "The response did not come from an Inngest SDK"
CONNECT_URL_PREFIX = "ws://connect/"  # a connect app's step URL (server/connect/hub.py)


@dataclass(slots=True)
class DriverResponse:
    status: int  # 0 when the request failed before a response
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    sdk: str | None = None
    request_version: int | None = None
    no_retry: bool = False
    retry_at: int | None = None
    transport_error: str | None = None
    started_ms: int = 0
    ended_ms: int = 0

    @property
    def is_sdk(self) -> bool:
        return self.sdk is not None

    def json(self) -> Any:
        return orjson.loads(self.body)


_URL_BASES: dict[str, str] = {}


def with_step_id(url: str, step_id: str) -> str:
    """The registered URL already carries ``fnId=<slug>&stepId=step``; set ``stepId``.

    The URL without ``stepId`` is worked out once per function URL; step ids are hex digests
    or "step", safe in a query as they are.
    """
    base = _URL_BASES.get(url)
    if base is None:
        parts = urlsplit(url)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "stepId"])
        base = urlunsplit((parts.scheme, parts.netloc, parts.path, query + ("&" if query else "") + "stepId=", ""))
        if len(_URL_BASES) > 10_000:
            _URL_BASES.clear()
        _URL_BASES[url] = base
    if step_id.isalnum():
        return base + step_id
    return base + quote(step_id, safe="")


def _retry_decision(status: int, hdrs: dict[str, str]) -> bool:
    """True when the response says *not* to retry."""
    value = hdrs.get(H.NO_RETRY)
    if value is not None:
        return value.strip().lower() == "true"
    return False


def _unwrap_stream(body: bytes, hdrs: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A 201 streaming response: keep-alive whitespace, then ``{"status","headers","body"}``."""
    envelope = orjson.loads(body.strip())
    if not isinstance(envelope, dict) or "status" not in envelope:
        raise ValueError("streaming response without a status envelope")
    inner_headers = {str(k).lower(): str(v) for k, v in (envelope.get("headers") or {}).items()}
    merged = {**hdrs, **inner_headers}
    inner = envelope.get("body")
    if isinstance(inner, str):
        try:
            orjson.loads(inner)
            raw = inner.encode()
        except orjson.JSONDecodeError:
            raw = orjson.dumps(inner)
    else:
        raw = orjson.dumps(inner)
    return int(envelope["status"]), merged, raw


class Driver:
    def __init__(self, *, signing_key: str | None, clock_ms: Any, timeout_s: float = MAX_FUNCTION_TIMEOUT_S,
                 connect_timeout_s: float = 10.0) -> None:
        self.signing_key = signing_key
        self._now = clock_ms
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        # execution requests: the hot path, on our own lean client (see http.py)
        self._http = HTTPClient(max_body=MAX_SDK_RESPONSE_BYTES, connect_timeout=connect_timeout_s)
        # connect apps: their requests go to a live worker connection (server/connect/hub.py)
        self.connect: Any = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, skip_auto_headers=("User-Agent",),
            auto_decompress=True,
        )

    async def close(self) -> None:
        self._http.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "driver not started"
        return self._session

    async def execute(
        self, *, url: str, step_id: str, body: bytes, run_id: str, job_id: str,
        request_version: int, generation: int = 0, signing_key: str | None = None,
        env_id: str | None = None,
    ) -> DriverResponse:
        if self.connect is not None and url.startswith(CONNECT_URL_PREFIX):
            # a connect app's step goes to a worker connected in the run's environment
            connected: DriverResponse = await self.connect.execute(
                url=url, step_id=step_id, body=body, run_id=run_id, job_id=job_id,
                **({"env_id": env_id} if env_id else {}))
            return connected
        hdrs = {
            "Content-Type": "application/json",
            "x-inngest-req-version": str(request_version),
            "X-Inngest-Step-ID": step_id,
            "X-Run-ID": run_id,
            "x-request-id": new_ulid(),
            "x-inngest-job-id": job_id,
            "User-Agent": "pyngest",
        }
        if generation:
            hdrs["x-inngest-generation-id"] = str(generation)
        key = signing_key or self.signing_key  # the run's environment's key, or the server's
        if key:
            hdrs["X-Inngest-Signature"] = signing.sign(body, key, int(time.time()))
        started = self._now()
        target = with_step_id(url, step_id)
        try:
            resp = await self._http.post(target, hdrs, body, timeout=self._timeout_s)
        except ResponseTooLarge:
            return DriverResponse(
                status=0, transport_error="output_too_large: the SDK's response is larger than "
                f"{MAX_SDK_RESPONSE_BYTES} bytes", started_ms=started, ended_ms=self._now(),
            )
        except HTTPError as exc:
            return DriverResponse(
                status=0, transport_error=f"request to the app at {target} failed: {exc}",
                started_ms=started, ended_ms=self._now(),
            )
        status, rh, raw = resp.status, resp.headers, resp.body
        if status == 201:
            try:
                status, rh, raw = _unwrap_stream(raw, rh)
            except (ValueError, orjson.JSONDecodeError) as exc:
                return DriverResponse(
                    status=0, headers=rh, body=raw, sdk=rh.get(H.SDK),
                    transport_error=f"invalid streaming response: {exc}", started_ms=started,
                    ended_ms=self._now(),
                )
        ended = self._now()
        out = DriverResponse(
            status=status, headers=rh, body=raw, sdk=rh.get(H.SDK), started_ms=started, ended_ms=ended,
        )
        v = rh.get(H.REQ_VERSION)
        if v is not None:
            try:
                out.request_version = int(v)
            except ValueError:
                out.request_version = None
        out.no_retry = _retry_decision(status, rh)
        out.retry_at = parse_retry_after(rh.get(H.RETRY_AFTER), ended)
        return out


def sdk_error_output(resp: DriverResponse) -> bytes | None:
    """A failed run's output as upstream reports it: the error object the SDK answered with,
    exactly (``stack: null`` kept, ``code`` and any other key too), in canonical JSON.

    None when the answer is not an SDK's JSON object (a proxy's HTML page, a refused
    connection): the run's output is then the server's standard error object.
    """
    if not resp.is_sdk or not resp.body or resp.transport_error is not None:
        return None
    try:
        obj = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        return None
    return jcs.dumps(obj) if isinstance(obj, dict) else None


def standard_error(resp: DriverResponse) -> dict[str, Any]:
    """The error object a failed response describes (upstream's DriverResponse.StandardError)."""
    if resp.transport_error is not None and not resp.body:
        name = "Error"
        message = resp.transport_error
        return {"error": f"{name}: {message}", "name": name, "message": message}
    try:
        obj = orjson.loads(resp.body) if resp.body else None
    except orjson.JSONDecodeError:
        obj = None
    name, message, stack, cause = "Error", "", None, None
    if isinstance(obj, dict):
        inner = obj
        if isinstance(obj.get("error"), dict):
            inner = obj["error"]
        elif isinstance(obj.get("body"), dict):
            inner = obj["body"]
        name = str(inner.get("name") or "Error")
        msg = inner.get("message")
        if msg is None and isinstance(obj.get("error"), str):
            msg = obj["error"]
        message = str(msg) if msg is not None else ""
        if isinstance(inner.get("stack"), str):
            stack = inner["stack"]
        cause = inner.get("cause")
    elif isinstance(obj, str):
        message = obj
    elif resp.body:
        message = resp.body.decode("utf-8", "replace")[:10_000]
    if not message:
        if resp.transport_error:
            message = resp.transport_error
        elif not resp.is_sdk and resp.status:
            message = NOT_AN_SDK
        else:
            message = f"the app answered with HTTP {resp.status}"
    out: dict[str, Any] = {"error": f"{name}: {message}", "name": name, "message": message}
    if stack is not None:
        out["stack"] = stack
    if cause is not None:
        out["cause"] = cause
    return out
