"""The client: configuration, ``create_function`` and sending events (FEATURES.md §22, §23)."""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
import urllib.parse
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import orjson

from pyngest.clock import Clock, RealClock
from pyngest.httpclient import HTTPClient
from pyngest.protocol.ids import new_seed
from pyngest.protocol.signing import hash_signing_key
from pyngest.sdk import config, errors
from pyngest.sdk.checkpoint import Support
from pyngest.sdk.config import Env, ServerKind
from pyngest.sdk.function import Function, FunctionOpts, check_checkpointing
from pyngest.sdk.middleware import MiddlewareManager, UninitializedMiddleware
from pyngest.sdk.options import (
    Batch,
    Cancel,
    CheckpointingOption,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from pyngest.sdk.serializer import Serializer
from pyngest.sdk.types import EMPTY, Event, Logger, SendEventsResult, SendInput, to_events

T = TypeVar("T")

MAX_SEND_ATTEMPTS = 5
RETRY_BASE_DELAY_S = 0.1


def backoff_s(attempt: int) -> float:
    """Exponential backoff with jitter: 100 ms · 2^attempt + up to 100 ms."""
    return float(RETRY_BASE_DELAY_S * (2**attempt) + random.random() * RETRY_BASE_DELAY_S)  # noqa: S311


class Inngest:
    """The Inngest client.

    Args:
        app_id: the app's stable id (a new id means a new app).
        event_key: key for sending events (``INNGEST_EVENT_KEY``); not needed in dev mode.
        signing_key: key that signs requests between server and app (``INNGEST_SIGNING_KEY``).
        signing_key_fallback: the previous key while rotating (``INNGEST_SIGNING_KEY_FALLBACK``).
        is_production: False for dev mode (no signatures, dev-server URLs); default from
            ``INNGEST_DEV`` (production unless it is set).
        api_base_url: origin the app registers with (``INNGEST_API_BASE_URL``, then
            ``INNGEST_BASE_URL``).
        event_api_base_url: origin events are sent to (``INNGEST_EVENT_API_BASE_URL``, then
            ``INNGEST_BASE_URL``).
        env: branch environment name (``INNGEST_ENV``).
        logger: a ``logging.Logger`` or ``LoggerAdapter`` (default ``logging.getLogger(__name__)``).
        middleware: middleware classes (or factories) for every function.
        serializer: converts outputs declared with ``output_type`` (e.g. ``PydanticSerializer``).
        app_version: free-form version string sent at sync.
        request_timeout: HTTP timeout for calls to the server, ms or timedelta (default 30 s).
        checkpointing: run steps back to back in one request, reporting each to the server's
            checkpoint API (on by default where the server supports it; ``False`` turns it off,
            ``inngest.Checkpointing(max_runtime=...)`` tunes it; ``INNGEST_CHECKPOINTING=0``
            turns it off when this is not given).
    """

    def __init__(
        self,
        *,
        app_id: str | None = None,
        event_key: str | None = None,
        signing_key: str | None = None,
        signing_key_fallback: str | None = None,
        is_production: bool | None = None,
        api_base_url: str | None = None,
        event_api_base_url: str | None = None,
        env: str | None = None,
        logger: Logger | None = None,
        middleware: list[UninitializedMiddleware] | None = None,
        serializer: Serializer | None = None,
        app_version: str | None = None,
        request_timeout: int | datetime.timedelta | None = None,
        checkpointing: CheckpointingOption = None,
        id: str | None = None,  # noqa: A002 - the TS name, used by some docs pages
    ) -> None:
        app_id = app_id or id
        if not isinstance(app_id, str) or not app_id:
            raise errors.Error("app_id must be a non-empty string")
        self.app_id = app_id
        self.logger: Any = logger or logging.getLogger(__name__)
        self._mode = config.resolve_mode(is_production)
        self.is_production = self._mode is ServerKind.CLOUD
        self.middleware: list[UninitializedMiddleware] = list(middleware or [])
        self._event_key = event_key or config.getenv(Env.EVENT_KEY)
        self._signing_key = signing_key or config.getenv(Env.SIGNING_KEY)
        self._signing_key_fallback = signing_key_fallback or config.getenv(Env.SIGNING_KEY_FALLBACK)
        for what, key in (("signing_key", self._signing_key), ("signing_key_fallback", self._signing_key_fallback)):
            if key is not None:
                try:
                    hash_signing_key(key)
                except ValueError as exc:
                    raise errors.SigningKeyMissingError(
                        f"{what} is not a valid signing key: {exc}"
                    ) from None
        self._env = config.environment_name(env)
        if self._env is None and self._signing_key is not None and "branch" in self._signing_key:
            self.logger.warning(
                "the signing key is for a branch environment but no environment is set: "
                "set INNGEST_ENV or pass env= to inngest.Inngest"
            )
        self._api_origin = config.resolve_origin(api_base_url, Env.API_BASE_URL, self._mode, api=True)
        self._event_api_origin = config.resolve_origin(
            event_api_base_url, Env.EVENT_API_BASE_URL, self._mode, api=False
        )
        self._app_version = app_version
        self._serializer = serializer
        check_checkpointing(checkpointing, "Inngest")
        self.checkpointing: CheckpointingOption = checkpointing
        self._checkpoint_support = Support()
        if isinstance(request_timeout, datetime.timedelta):
            self._timeout = request_timeout.total_seconds()
        elif isinstance(request_timeout, int):
            self._timeout = request_timeout / 1000
        else:
            self._timeout = 30.0
        # Injectable for tests: time for sleep ops, and the wait between send retries.
        self._clock: Clock = RealClock()
        self._sleep_sync: Callable[[float], None] = time.sleep
        self._sleep_async: Callable[[float], Any] = asyncio.sleep
        self._monotonic: Callable[[], float] = time.monotonic  # a checkpointing request's time budget
        self._http: httpx.Client | None = None
        self._ahttp: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._cphttp: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HTTPClient] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ properties

    @property
    def api_origin(self) -> str:
        return self._api_origin

    @property
    def event_api_origin(self) -> str:
        return self._event_api_origin

    @property
    def env(self) -> str | None:
        return self._env

    @property
    def event_key(self) -> str | None:
        return self._event_key

    @property
    def signing_key(self) -> str | None:
        return self._signing_key

    @property
    def signing_key_fallback(self) -> str | None:
        return self._signing_key_fallback

    @property
    def app_version(self) -> str | None:
        return self._app_version

    @property
    def mode(self) -> ServerKind:
        return self._mode

    def add_middleware(self, middleware: UninitializedMiddleware) -> None:
        self.middleware = [*self.middleware, middleware]

    def set_logger(self, logger: Logger) -> None:
        self.logger = logger

    # ------------------------------------------------------------------ functions

    def create_function(
        self,
        *,
        fn_id: str | None = None,
        trigger: TriggerEvent | TriggerCron | list[TriggerEvent | TriggerCron] | None = None,
        event: str | None = None,
        name: str | None = None,
        batch_events: Batch | None = None,
        cancel: list[Cancel] | None = None,
        concurrency: list[Concurrency] | Concurrency | None = None,
        debounce: Debounce | None = None,
        idempotency: str | None = None,
        middleware: list[UninitializedMiddleware] | None = None,
        on_failure: Callable[..., Any] | None = None,
        output_type: object = EMPTY,
        priority: Priority | None = None,
        rate_limit: RateLimit | None = None,
        retries: int | None = None,
        throttle: Throttle | None = None,
        timeouts: Timeouts | None = None,
        singleton: Singleton | None = None,
        checkpointing: CheckpointingOption = None,
        _experimental_execution: bool = False,
        id: str | None = None,  # noqa: A002 - the TS name, used by some guide pages
    ) -> Callable[[Callable[..., Any]], Function[Any]]:
        """Decorate a handler ``(ctx)`` or ``(ctx, step)`` to make it an Inngest function.

        Args:
            fn_id: stable function id (unique in the app).
            trigger: an event or cron trigger, or a list of them.
            event: shorthand for ``trigger=TriggerEvent(event=...)``.
            name: display name (default: ``fn_id``).
            batch_events, cancel, concurrency, debounce, idempotency, priority, rate_limit,
            throttle, timeouts, singleton: flow control (FEATURES.md §6).
            retries: retries per step, 0–20 (default 4).
            on_failure: handler run after the function failed for good.
            middleware: middleware for this function only (after the client's).
            output_type: type of the return value, for the client's serializer.
            checkpointing: this function's checkpointing (None: the client's setting).
            id: another name for ``fn_id`` (some guide pages write ``id=``).
        """
        fn_id = fn_id if fn_id is not None else id
        if not isinstance(fn_id, str) or not fn_id:
            raise errors.FunctionConfigInvalidError("fn_id must be a non-empty string")
        if _experimental_execution:
            self.logger.warning(
                f"function {fn_id}: _experimental_execution (asyncio.gather over steps) is not "
                "supported by pyngest; use step.parallel(...) to run steps in parallel"
            )
        if trigger is None:
            if event is None:
                raise errors.FunctionConfigInvalidError(
                    f"function {fn_id}: pass trigger=inngest.TriggerEvent(event=...) or inngest.TriggerCron(cron=...)"
                )
            trigger = TriggerEvent(event=event)
        triggers = trigger

        def decorator(handler: Callable[..., Any]) -> Function[Any]:
            return Function(
                FunctionOpts(
                    app_id=self.app_id,
                    local_id=fn_id,
                    fully_qualified_id=f"{self.app_id}-{fn_id}",
                    name=name or fn_id,
                    batch_events=batch_events,
                    cancel=cancel,
                    concurrency=concurrency if concurrency is None or isinstance(concurrency, list) else [concurrency],
                    debounce=debounce,
                    idempotency=idempotency,
                    on_failure=on_failure,
                    priority=priority,
                    rate_limit=rate_limit,
                    retries=retries,
                    throttle=throttle,
                    timeouts=timeouts,
                    singleton=singleton,
                    checkpointing=checkpointing,
                ),
                triggers,
                handler,
                output_type,
                middleware,
            )

        return decorator

    # ------------------------------------------------------------------ HTTP

    def _http_sync(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self._timeout)
        return self._http

    def _http_async(self) -> httpx.AsyncClient:
        # An AsyncClient belongs to the loop it first ran on; keep one per loop.
        loop = asyncio.get_running_loop()
        client = self._ahttp.get(loop)
        if client is None:
            client = self._ahttp[loop] = httpx.AsyncClient(timeout=self._timeout)
        return client

    def _checkpoint_http(self) -> HTTPClient:
        # Checkpoints are the SDK's hottest call (one per step): the lean keep-alive client the
        # server sends execution requests with, not httpx (whose pool keeps only 20 idle
        # connections and costs several times the CPU per request). One per loop, as above.
        loop = asyncio.get_running_loop()
        client = self._cphttp.get(loop)
        if client is None:
            client = self._cphttp[loop] = HTTPClient(max_body=1 << 20)
        return client

    def _close_checkpoint_http(self) -> None:
        client = self._cphttp.pop(asyncio.get_running_loop(), None)
        if client is not None:
            client.close()

    def _auth_headers(self, key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {hash_signing_key(key)}"} if key else {}

    def _api_get_sync(self, path: str) -> Any:
        url = urllib.parse.urljoin(self._api_origin, path)
        headers = config.base_headers(env=self._env, framework=None, server_kind=None)
        http = self._http_sync()
        res = http.get(url, headers={**headers, **self._auth_headers(self._signing_key)})
        if res.status_code in (401, 403) and self._signing_key_fallback:
            res = http.get(url, headers={**headers, **self._auth_headers(self._signing_key_fallback)})
        return self._api_json(url, res)

    async def _api_get(self, path: str) -> Any:
        url = urllib.parse.urljoin(self._api_origin, path)
        headers = config.base_headers(env=self._env, framework=None, server_kind=None)
        http = self._http_async()
        res = await http.get(url, headers={**headers, **self._auth_headers(self._signing_key)})
        if res.status_code in (401, 403) and self._signing_key_fallback:
            res = await http.get(url, headers={**headers, **self._auth_headers(self._signing_key_fallback)})
        return self._api_json(url, res)

    @staticmethod
    def _api_json(url: str, res: httpx.Response) -> Any:
        if res.status_code >= 400:
            raise errors.Error(f"GET {url} answered HTTP {res.status_code}: {res.text[:500]}")
        return orjson.loads(res.content)

    async def _get_batch(self, run_id: str) -> list[Event]:
        data = await self._api_get(f"/v0/runs/{run_id}/batch")
        return _batch(data)

    def _get_batch_sync(self, run_id: str) -> list[Event]:
        return _batch(self._api_get_sync(f"/v0/runs/{run_id}/batch"))

    async def _get_steps(self, run_id: str) -> dict[str, Any]:
        return _steps(await self._api_get(f"/v0/runs/{run_id}/actions"))

    def _get_steps_sync(self, run_id: str) -> dict[str, Any]:
        return _steps(self._api_get_sync(f"/v0/runs/{run_id}/actions"))

    # ------------------------------------------------------------------ sending

    def _send_request(self, events: list[Event]) -> tuple[str, dict[str, str], bytes]:
        key = self._event_key
        if key is None:
            if self._mode is not ServerKind.DEV_SERVER:
                raise errors.EventKeyUnspecifiedError()
            key = config.DEV_EVENT_KEY
        url = urllib.parse.urljoin(self._event_api_origin, f"/e/{key}")
        headers = config.base_headers(env=self._env, framework=None, server_kind=None)
        # One seed for all attempts: the server derives the same event ids from it, so a
        # retry after a lost response cannot create the events twice.
        headers["x-inngest-event-id-seed"] = new_seed(self._clock.now_ms())
        body = []
        now = self._clock.now_ms()
        for ev in events:
            d = ev.to_dict()
            if d.get("id") == "":
                del d["id"]
            if d.get("ts") == 0:
                d["ts"] = now
            body.append(d)
        return url, headers, orjson.dumps(body)

    @staticmethod
    def _send_result(url: str, res: httpx.Response | None, transport_error: Exception | None) -> SendEventsResult:
        if res is None:
            raise errors.SendEventsError(
                f"could not reach the event API at {url}: {transport_error}", []
            )
        try:
            data = orjson.loads(res.content)
        except orjson.JSONDecodeError:
            raise errors.SendEventsError(
                f"the event API at {url} answered HTTP {res.status_code} with a non-JSON body: {res.text[:300]!r}",
                [],
            ) from None
        if not isinstance(data, dict):
            raise errors.SendEventsError(f"the event API at {url} answered {data!r}", [])
        ids = data.get("ids") or []
        error = data.get("error")
        if error is None and res.status_code >= 400:
            error = f"HTTP {res.status_code}"
        return SendEventsResult(ids=[i for i in ids if isinstance(i, str)], error=error if error else None)

    async def send(
        self,
        events: SendInput = None,
        *,
        skip_middleware: bool = False,
        **event_fields: Any,
    ) -> list[str]:
        """Send one or more events; returns their ids. Retries 5xx and network errors.

        Events are ``inngest.Event`` objects (or dicts with the same keys); ``send(name=...,
        data=...)`` sends one.
        """
        batch = to_events(events, event_fields)
        mw = None
        if not skip_middleware:
            mw = MiddlewareManager.from_client(self, None)
            await mw.call("before_send_events", batch)
        url, headers, body = self._send_request(batch)
        http = self._http_async()
        res: httpx.Response | None = None
        terr: Exception | None = None
        for attempt in range(MAX_SEND_ATTEMPTS):
            try:
                res = await http.post(url, headers=headers, content=body)
            except httpx.RequestError as exc:
                terr = exc
            if res is not None and res.status_code < 500:
                break
            if attempt + 1 < MAX_SEND_ATTEMPTS:
                await self._sleep_async(backoff_s(attempt))
        result = self._send_result(url, res, terr)
        if mw is not None:
            await mw.call("after_send_events", result)
        if result.error is not None:
            raise errors.SendEventsError(result.error, result.ids)
        return result.ids

    def send_sync(
        self,
        events: SendInput = None,
        *,
        skip_middleware: bool = False,
        **event_fields: Any,
    ) -> list[str]:
        """Blocking ``send``."""
        batch = to_events(events, event_fields)
        mw = None
        if not skip_middleware:
            mw = MiddlewareManager.from_client(self, None)
            mw.call_sync("before_send_events", batch)
        url, headers, body = self._send_request(batch)
        http = self._http_sync()
        res: httpx.Response | None = None
        terr: Exception | None = None
        for attempt in range(MAX_SEND_ATTEMPTS):
            try:
                res = http.post(url, headers=headers, content=body)
            except httpx.RequestError as exc:
                terr = exc
            if res is not None and res.status_code < 500:
                break
            if attempt + 1 < MAX_SEND_ATTEMPTS:
                self._sleep_sync(backoff_s(attempt))
        result = self._send_result(url, res, terr)
        if mw is not None:
            mw.call_sync("after_send_events", result)
        if result.error is not None:
            raise errors.SendEventsError(result.error, result.ids)
        return result.ids

    # ------------------------------------------------------------------ serialization

    def _serialize(self, obj: object, typ: object) -> object:
        if self._serializer is None or typ is EMPTY:
            return obj
        return self._serializer.serialize(obj, typ)

    def _deserialize(self, obj: object, typ: object) -> object:
        if self._serializer is None or typ is EMPTY:
            return obj
        return self._serializer.deserialize(obj, typ)


def _batch(data: Any) -> list[Event]:
    if not isinstance(data, list):
        raise errors.BodyInvalidError("the run's batch from the API is not an array")
    return [Event.from_wire(e) for e in data]


def _steps(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise errors.BodyInvalidError("the run's step data from the API is not an object")
    return data
