"""Requests the server makes on a run's behalf: ``step.fetch`` (Gateway) and ``step.ai.infer``
(AIGateway). The result becomes the step's output (PROTOCOL.md §4.2)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from pyngest.protocol import jcs
from pyngest.protocol.opcodes import MAX_STEP_OUTPUT_BYTES
from pyngest.server.executor.backoff import next_retry_ms
from pyngest.server.model import Batch, DeleteJob, Enqueue, Job

if TYPE_CHECKING:
    from pyngest.server.executor.executor import Executor

_TIMEOUT = aiohttp.ClientTimeout(total=15 * 60, sock_connect=30)
# The largest answer read for a step.fetch / step.ai.infer: its result becomes the step's output,
# which may be no larger (upstream's gateway limit was not found in its source; this is ours).
MAX_RESPONSE_BYTES = MAX_STEP_OUTPUT_BYTES


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def canonical_header(name: str) -> str:
    """A header name as Go's HTTP client sends it (``textproto.CanonicalMIMEHeaderKey``):
    ``x-api-key`` -> ``X-Api-Key``. Upstream makes these requests with Go, so providers and
    mocks that look at raw header names see the same ones. A name with a character that is not
    an HTTP token is left alone, as Go does."""
    if not name or any(c not in _TOKEN for c in name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _headers(raw: Any) -> dict[str, str]:
    return {canonical_header(str(k)): str(v) for k, v in (raw or {}).items()}


class GatewayFailure(Exception):
    def __init__(self, message: str, status: int | None = None, body: str | None = None, *,
                 retry: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.retry = retry


async def _read_capped(resp: aiohttp.ClientResponse, url: str) -> str:
    """The answer's body as text, read as it streams in; over MAX_RESPONSE_BYTES, a step error
    (not retried: the same request would bring the same answer) with at most that much read."""
    declared = resp.content_length
    too_large = GatewayFailure(
        f"the response from {url} is larger than {MAX_RESPONSE_BYTES} bytes, the most a step.fetch or "
        "step.ai.infer answer may be (the limit of a step's output)", resp.status, retry=False)
    if declared is not None and declared > MAX_RESPONSE_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks).decode(resp.get_encoding() if resp.charset else "utf-8", errors="replace")


async def fetch(session: aiohttp.ClientSession, opts: dict[str, Any]) -> dict[str, Any]:
    """step.fetch: any method, any status; transport errors fail."""
    url = opts.get("url")
    if not isinstance(url, str) or not url:
        raise GatewayFailure("step.fetch needs a url")
    method = str(opts.get("method") or "GET").upper()
    headers = _headers(opts.get("headers"))
    body = opts.get("body")
    data = body.encode() if isinstance(body, str) else (orjson.dumps(body) if body is not None else None)
    try:
        async with session.request(method, url, headers=headers, data=data, timeout=_TIMEOUT) as resp:
            text = await _read_capped(resp, url)
            merged: dict[str, str] = {}
            for k, v in resp.headers.items():
                key = k.lower()
                merged[key] = f"{merged[key]},{v}" if key in merged else v
            return {"url": str(resp.url), "headers": merged, "body": text, "status_code": resp.status}
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise GatewayFailure(f"request to {url} failed: {exc.__class__.__name__}: {exc}") from exc


async def infer(session: aiohttp.ClientSession, opts: dict[str, Any]) -> Any:
    """step.ai.infer: POST the body to the provider; a non-2xx answer is an error."""
    url = opts.get("url")
    if not isinstance(url, str) or not url:
        raise GatewayFailure("step.ai.infer needs a url")
    headers = _headers(opts.get("headers"))
    headers.setdefault("Content-Type", "application/json")
    key = opts.get("auth_key") or ""
    fmt = str(opts.get("format") or "")
    if key:
        if fmt == "gemini":
            url = f"{url}{'&' if '?' in url else '?'}key={key}"
        elif fmt == "anthropic":
            headers["X-Api-Key"] = key
        elif fmt == "bedrock":
            headers["Authorization"] = key
        else:
            headers["Authorization"] = f"Bearer {key}"
    body = opts.get("body")
    try:
        async with session.post(url, headers=headers, data=orjson.dumps(body), timeout=_TIMEOUT) as resp:
            text = await _read_capped(resp, url)
            if resp.status >= 300:
                raise GatewayFailure(f"the AI provider answered HTTP {resp.status}", resp.status, text)
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise GatewayFailure("the AI provider's answer is not JSON", resp.status, text) from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise GatewayFailure(f"request to {url} failed: {exc.__class__.__name__}: {exc}") from exc


class GatewayRunner:
    def __init__(self, executor: Executor) -> None:
        self.x = executor

    async def run(self, job: Job) -> None:
        x = self.x
        assert job.run_id is not None
        payload = job.payload or {}
        kind = payload.get("op")
        opts = payload.get("opts") or {}
        run = await x.state.runs.get(job.run_id)
        if run is None or run.ended:
            await x.state.commit(Batch([DeleteJob(job.id)]))
            return
        fn = x.function_for(run)
        max_attempts = fn.max_attempts if fn else 1
        error_name = "AIGatewayError" if kind == "AIGateway" else "GatewayError"
        try:
            if kind == "AIGateway":
                value = jcs.dumps({"data": await infer(x.driver.session, opts)})
            else:
                value = jcs.dumps({"data": await fetch(x.driver.session, opts)})
        except GatewayFailure as exc:
            if exc.retry and job.attempt + 1 < max_attempts:
                due = next_retry_ms(job.attempt, x.clock.now_ms(), fixed_interval_s=x.config.retry_interval_s)
                await x.state.commit(Batch([DeleteJob(job.id), Enqueue(replace(job, attempt=job.attempt + 1, due_ms=due))]))
                return
            err: dict[str, Any] = {"name": error_name, "message": str(exc)}
            if exc.status is not None:
                err["status"] = exc.status
            if exc.body is not None:
                err["body"] = exc.body[:10_000]
            value = jcs.dumps({"error": err})
        await x.control.complete_step(
            job.run_id, job.step_id, value, [DeleteJob(job.id)], str(payload.get("name") or ""),
            "StepCompleted", bool(payload.get("race")),
        )
