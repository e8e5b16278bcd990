"""The framework-agnostic serve handler: GET introspection, POST execution, PUT sync.

Framework adapters (``pyngest.fast_api``, ``pyngest.flask``, ...) turn their request into a
:class:`Request`, call :meth:`CommHandler.handle` (or ``handle_sync``) and turn the
:class:`Response` back. Everything protocol-related happens here (PROTOCOL.md §2–§3).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from pyngest.protocol import jcs, signing
from pyngest.sdk import config, errors
from pyngest.sdk.config import Env, ServerKind, Streaming
from pyngest.sdk.execute import ExecRequest, parse_request, serve_async, serve_sync
from pyngest.sdk.function import Function
from pyngest.sdk.replay import CallResult, dumps, error_data, is_serializable
from pyngest.sdk.steps import to_iso_utc
from pyngest.sdk.types import EMPTY, Event

if TYPE_CHECKING:
    from pyngest.sdk.client import Inngest

SCHEMA_VERSION = "2024-05-24"
# What this SDK can do beyond plain out-of-band sync (the official SDK also claims "connect").
CAPABILITIES = {"in_band_sync": "v1", "trust_probe": "v1"}
STREAM_KEEPALIVE_S = 3.0


@dataclass
class Request:
    """An incoming HTTP request, framework-neutral. Header names are matched lower-case."""

    method: str
    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str]
    url: str
    raw_request: object = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # A streaming response (status 201) yields keep-alive bytes, then the real response.
    stream: Callable[[], AsyncIterator[bytes]] | None = None


def lower_headers(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


class _Unauthorized(Exception):
    pass


class CommHandler:
    """Serves a list of functions for one client."""

    def __init__(
        self,
        *,
        client: Inngest,
        framework: str,
        functions: list[Function[Any]],
        streaming: Streaming | None = None,
        enable_unauthed_sync: bool | None = None,
        public_path: str | None = None,
        serve_origin: str | None = None,
        serve_path: str | None = None,
        signing_key: str | None = None,
    ) -> None:
        for fn in functions:
            if not isinstance(fn, Function):
                raise errors.Error(
                    f"serve() takes functions made with @client.create_function, got {type(fn).__name__}"
                )
        self._client = client
        self._framework = framework
        self._mode = client.mode
        self._fns: dict[str, Function[Any]] = {}
        for fn in functions:
            if fn.id in self._fns:
                raise errors.FunctionConfigInvalidError(f"two functions have the id {fn.local_id!r}")
            self._fns[fn.id] = fn
            if fn.on_failure_fn_id:
                self._fns[fn.on_failure_fn_id] = fn
        self._function_count = len(functions)
        self._functions = list(functions)
        self._public_path = public_path
        self._serve_origin = serve_origin
        self._serve_path = serve_path
        self._streaming = streaming or config.env_streaming() or Streaming.DISABLE
        if self._mode is ServerKind.DEV_SERVER:
            self._unauthed_sync = True
        elif enable_unauthed_sync is None:
            self._unauthed_sync = not config.env_is_false(Env.ENABLE_UNAUTHED_SYNC)
        else:
            self._unauthed_sync = enable_unauthed_sync
        self._signing_key = signing_key or client.signing_key
        self._signing_key_fallback = client.signing_key_fallback
        if self._mode is ServerKind.CLOUD and not self._signing_key:
            raise errors.SigningKeyMissingError()
        workers = config.env_int(Env.THREAD_POOL_MAX_WORKERS)
        self._pool_workers = workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.now_s: Callable[[], float] = time.time  # injectable for signature-age tests

    # ------------------------------------------------------------------ entry points

    async def handle(self, req: Request) -> Response:
        """Handle a request in an async framework."""
        method = req.method.upper()
        key = self._verify(req)
        if method == "POST":
            if isinstance(key, Exception):
                return self._unauthorized(key)
            res = await self._post(req, key)
        elif method == "PUT":
            res = await self._put(req, key)
        elif method == "GET":
            if isinstance(key, Exception):
                return self._unauthorized(key)
            res = self._get(req, key)
        else:
            res = self._error(errors.Error(f"method {method} is not supported: use GET, POST or PUT"), 405)
        return self._finish(res, key)

    def handle_sync(self, req: Request) -> Response:
        """Handle a request in a sync framework (WSGI)."""
        method = req.method.upper()
        key = self._verify(req)
        if method == "POST":
            if isinstance(key, Exception):
                return self._unauthorized(key)
            res = self._post_sync(req, key)
        elif method == "PUT":
            res = self._put_sync(req, key)
        elif method == "GET":
            if isinstance(key, Exception):
                return self._unauthorized(key)
            res = self._get(req, key)
        else:
            res = self._error(errors.Error(f"method {method} is not supported: use GET, POST or PUT"), 405)
        return self._finish(res, key)

    # ------------------------------------------------------------------ auth

    def _verify(self, req: Request) -> str | None | Exception:
        """The key that signed the request, None in dev mode, or why verification failed."""
        if self._mode is ServerKind.DEV_SERVER:
            return None
        header = req.header("x-inngest-signature")
        if not header:
            return errors.HeaderMissingError(
                "cannot validate signature in production mode without a x-inngest-signature header"
            )
        keys = [k for k in (self._signing_key, self._signing_key_fallback) if k]
        if not keys:
            return errors.SigningKeyMissingError()
        now = self.now_s()
        try:
            # Servers send canonical JSON, so the raw bytes usually verify as they are; only
            # otherwise pay for canonicalizing (which is what the signature covers).
            return signing.verify(req.body, header, keys, now_s=now)
        except signing.SignatureError as first:
            if "timestamp" in str(first) or not req.body:
                return errors.SigVerificationFailedError(str(first))
            try:
                canonical = jcs.canonicalize(req.body)
            except (orjson.JSONDecodeError, TypeError, ValueError):
                return errors.SigVerificationFailedError(str(first))
            if canonical == req.body:
                return errors.SigVerificationFailedError(str(first))
            try:
                return signing.verify(canonical, header, keys, now_s=now)
            except signing.SignatureError as exc:
                return errors.SigVerificationFailedError(str(exc))

    def _unauthorized(self, err: Exception) -> Response:
        if not errors.is_quiet(err):
            self._client.logger.error(f"unauthorized: {err}")
        return Response(
            401,
            {"content-type": "application/json", "x-inngest-sdk-handled": "true"},
            b'{"message":"Unauthorized"}',
        )

    def _finish(self, res: Response, key: str | None | Exception) -> Response:
        res.headers.update(
            config.base_headers(env=self._client.env, framework=self._framework, server_kind=self._mode)
        )
        res.headers["x-inngest-sdk-handled"] = "true"
        if isinstance(key, str) and res.stream is None:
            res.headers["x-inngest-signature"] = signing.sign(res.body, key, int(self.now_s()))
        return res

    def _error(self, err: Exception, status: int = 500) -> Response:
        code = err.code.value if isinstance(err, errors.Error) else errors.ErrorCode.UNKNOWN.value
        if not errors.is_quiet(err):
            self._client.logger.error(f"{code}: {err}")
        body = {"code": code, "message": str(err), "name": type(err).__name__}
        return Response(status, {"content-type": "application/json"}, orjson.dumps(body))

    def _server_kind(self, req: Request) -> ServerKind | None:
        value = req.header("x-inngest-server-kind")
        if value is None:
            return None
        try:
            return ServerKind(value)
        except ValueError:
            self._client.logger.error(f"invalid server kind: {value}")
            return None

    # ------------------------------------------------------------------ POST

    def _lookup(self, req: Request) -> tuple[Function[Any], str, str | None, ExecRequest] | Response:
        fn_id = req.query.get("fnId")
        probe = req.query.get("probe")
        if probe:
            if probe == "trust":
                return Response(200, body=b"null")
            return self._error(errors.Error(f"unsupported probe: {probe}"))
        try:
            body = orjson.loads(req.body)
            exec_req = parse_request(body)
        except orjson.JSONDecodeError as exc:
            return self._error(errors.BodyInvalidError(f"the execution request is not JSON: {exc}"))
        except errors.BodyInvalidError as exc:
            return self._error(exc)
        if not fn_id:
            return self._error(
                errors.QueryParamMissingError("fnId: the execution request has no fnId query parameter")
            )
        fn = self._fns.get(fn_id) or self._fns.get(f"{self._client.app_id}-{fn_id}")
        if fn is None:
            known = ", ".join(sorted(self._fns)) or "none"
            return self._error(
                errors.FunctionNotFoundError(
                    f"function {fn_id} not found (served here: {known}); sync the app again if "
                    "functions were renamed"
                )
            )
        if fn.handler_for(fn_id) is None:
            fn_id = f"{self._client.app_id}-{fn_id}"
        step_id = req.query.get("stepId")
        target = None if step_id in (None, "", "step") else step_id
        return fn, fn_id, target, exec_req

    async def _post(self, req: Request, key: str | None) -> Response:
        found = self._lookup(req)
        if isinstance(found, Response):
            return found
        fn, fn_id, target, ereq = found
        server_kind = self._server_kind(req)
        try:
            events, steps = await self._state(ereq)
        except Exception as exc:
            return self._error(exc)
        if fn.is_handler_async:
            run = serve_async(self._client, fn, fn_id, ereq, events, steps, target, req.raw_request, dict(req.headers))
            if self._streaming is Streaming.FORCE:
                return self._streaming_response(asyncio.ensure_future(run), server_kind)
            call_res = await run  # awaited in place: a task per request would cost a loop turn
        else:
            call = functools.partial(
                serve_sync, self._client, fn, fn_id, ereq, events, steps, target, req.raw_request, dict(req.headers)
            )
            if self._pool_workers == 0:
                call_res = call()
            else:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self._pool_workers)
                call_res = await asyncio.get_running_loop().run_in_executor(self._pool, call)
        return self._from_call_result(call_res, server_kind)

    def _post_sync(self, req: Request, key: str | None) -> Response:
        found = self._lookup(req)
        if isinstance(found, Response):
            return found
        fn, fn_id, target, ereq = found
        try:
            events, steps = self._state_sync(ereq)
        except Exception as exc:
            return self._error(exc)
        if fn.is_handler_async:
            call_res = asyncio.run(self._serve_on_own_loop(
                serve_async(self._client, fn, fn_id, ereq, events, steps, target, req.raw_request, dict(req.headers))
            ))
        else:
            call_res = serve_sync(
                self._client, fn, fn_id, ereq, events, steps, target, req.raw_request, dict(req.headers)
            )
        return self._from_call_result(call_res, self._server_kind(req))

    async def _serve_on_own_loop(self, serving: Awaitable[CallResult]) -> CallResult:
        """An async function in a sync framework runs on a loop of its own, which ends with the
        request: the checkpoint connections it opened end with it."""
        try:
            return await serving
        finally:
            self._client._close_checkpoint_http()

    async def _state(self, ereq: ExecRequest) -> tuple[list[Event], dict[str, Any]]:
        if ereq.use_api:
            # The state was too large to send; fetch it (PROTOCOL.md §9.1).
            events, steps = await asyncio.gather(
                self._client._get_batch(ereq.run_id), self._client._get_steps(ereq.run_id)
            )
            return events, steps
        if ereq.events is None:
            raise errors.BodyInvalidError("invalid execution request: 'events' is missing and use_api is false")
        return ereq.events, ereq.steps

    def _state_sync(self, ereq: ExecRequest) -> tuple[list[Event], dict[str, Any]]:
        if ereq.use_api:
            return self._client._get_batch_sync(ereq.run_id), self._client._get_steps_sync(ereq.run_id)
        if ereq.events is None:
            raise errors.BodyInvalidError("invalid execution request: 'events' is missing and use_api is false")
        return ereq.events, ereq.steps

    def _from_call_result(self, res: CallResult, server_kind: ServerKind | None) -> Response:
        headers = config.base_headers(env=self._client.env, framework=self._framework, server_kind=server_kind)
        try:
            if res.multi is not None:
                items = []
                for item in res.multi:
                    items.append(_prep(item))
                    if item.error is not None and not errors.is_retriable(item.error):
                        headers["x-inngest-no-retry"] = "true"
                return Response(206, headers, dumps(items))
            body = dumps(_prep(res))
        except errors.OutputUnserializableError:
            return self._error(_unserializable(res))
        status = 200
        if res.error is not None:
            status = 500
            if not errors.is_quiet(res.error):
                self._client.logger.error(f"function error: {type(res.error).__name__}: {res.error}")
            if not errors.is_retriable(res.error):
                headers["x-inngest-no-retry"] = "true"
            if isinstance(res.error, errors.RetryAfterError):
                headers["retry-after"] = to_iso_utc(res.error.retry_after)
        return Response(status, headers, body)

    def _streaming_response(self, task: asyncio.Future[CallResult], server_kind: ServerKind | None) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            while not task.done():
                yield b" "
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), timeout=STREAM_KEEPALIVE_S)
            inner = self._from_call_result(task.result(), server_kind)
            yield orjson.dumps({"body": inner.body.decode(), "headers": inner.headers, "status": inner.status})

        headers = config.base_headers(env=self._client.env, framework=self._framework, server_kind=server_kind)
        return Response(201, headers, stream=stream)

    # ------------------------------------------------------------------ GET

    def _inspection(self, req: Request, key: str | None) -> dict[str, Any]:
        base = {
            "has_event_key": self._client.event_key is not None,
            "has_signing_key": self._signing_key is not None,
            "has_signing_key_fallback": self._signing_key_fallback is not None,
            "mode": self._mode.value,
        }
        if not isinstance(key, str):
            return {"schema_version": SCHEMA_VERSION, "function_count": self._function_count, **base}
        ek = self._client.event_key
        return {
            "schema_version": SCHEMA_VERSION,
            "api_origin": self._client.api_origin,
            "app_id": self._client.app_id,
            "authentication_succeeded": True,
            "capabilities": dict(CAPABILITIES),
            "env": self._client.env,
            "event_api_origin": self._client.event_api_origin,
            "event_key_hash": signing.hash_event_key(ek) if ek else None,
            "framework": self._framework,
            "function_count": self._function_count,
            **base,
            "sdk_language": config.LANGUAGE,
            "sdk_version": config.VERSION,
            "serve_origin": self._serve_origin,
            "serve_path": self._serve_path,
            "signing_key_fallback_hash": (
                signing.hash_signing_key(self._signing_key_fallback) if self._signing_key_fallback else None
            ),
            "signing_key_hash": signing.hash_signing_key(self._signing_key) if self._signing_key else None,
        }

    def _get(self, req: Request, key: str | None) -> Response:
        kind = self._server_kind(req)
        if kind is not None and kind is not self._mode:
            return Response(403, {}, b"{}")
        return Response(200, {}, orjson.dumps(self._inspection(req, key)))

    # ------------------------------------------------------------------ PUT (sync)

    def _app_url(self, req: Request, url: str | None = None) -> str:
        return config.serve_url(
            request_url=url or req.url, public_path=self._public_path, origin=self._serve_origin, path=self._serve_path
        )

    def _configs(self, app_url: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for fn in self._functions:
            out.extend(fn.get_config(app_url))
        return out

    def _put_precheck(self, req: Request, key: str | None | Exception) -> Response | None:
        if self._mode is ServerKind.CLOUD and req.header("x-inngest-sync-kind") == "in_band":
            if not isinstance(key, str):
                return self._unauthorized(key if isinstance(key, Exception) else Exception("in-band sync must be signed"))
            return self._in_band(req, key)
        if not self._unauthed_sync and not isinstance(key, str):
            err = key if isinstance(key, Exception) else errors.HeaderMissingError(
                "request must be signed when unauthenticated sync is disabled"
            )
            return self._unauthorized(err)
        kind = self._server_kind(req)
        if kind is not None and kind is not self._mode:
            if kind is ServerKind.DEV_SERVER:
                msg = ("Sync rejected since it's from a Dev Server but expected Cloud: set INNGEST_DEV=1 "
                       "(or is_production=False) to sync with a dev server")
            else:
                msg = ("Sync rejected since it's from Cloud but expected Dev Server: unset INNGEST_DEV "
                       "to sync with a production server")
            self._client.logger.error(msg)
            body = {"code": errors.ErrorCode.SERVER_KIND_MISMATCH.value, "message": msg}
            return Response(400, {}, orjson.dumps(body))
        return None

    def _in_band(self, req: Request, key: str) -> Response:
        try:
            body = orjson.loads(req.body)
            url = body["url"]
            if not isinstance(url, str):
                raise TypeError
        except Exception:
            return self._error(errors.BodyInvalidError("in-band sync body must be {\"url\": <string>}"))
        app_url = self._app_url(req, url)
        out = {
            "app_id": self._client.app_id,
            "appVersion": self._client.app_version,
            "env": self._client.env,
            "framework": self._framework,
            "functions": self._configs(app_url),
            "inspection": self._inspection(req, key),
            "platform": None,
            "sdk_author": "pyngest",
            "sdk_language": config.LANGUAGE,
            "sdk_version": config.VERSION,
            "url": app_url,
        }
        return Response(200, {"x-inngest-sync-kind": "in_band"}, orjson.dumps(_strip_none(out)))

    def _register_request(self, req: Request) -> tuple[str, dict[str, str], dict[str, str], bytes]:
        app_url = self._app_url(req)
        body: dict[str, Any] = {
            "appname": self._client.app_id,
            "appVersion": self._client.app_version,
            "capabilities": dict(CAPABILITIES),
            "deploy_type": "ping",
            "framework": self._framework,
            "functions": self._configs(app_url),
            "sdk": config.SDK_REGISTER,
            "url": app_url,
            "v": "0.1",
        }
        url = urllib.parse.urljoin(self._client.api_origin, "/fn/register")
        headers = config.base_headers(
            env=self._client.env, framework=self._framework, server_kind=self._server_kind(req)
        )
        params = {"deployId": req.query["deployId"]} if req.query.get("deployId") else {}
        return url, headers, params, orjson.dumps(_strip_none(body))

    def _register_response(self, url: str, res: httpx.Response) -> Response:
        try:
            data = orjson.loads(res.content)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return self._error(errors.RegistrationFailedError(
                f"{url} answered HTTP {res.status_code} with an unexpected body: {res.text[:300]!r}"
            ))
        headers = {"x-inngest-sync-kind": "out_of_band"}
        if res.status_code >= 400:
            msg = data.get("error") if isinstance(data.get("error"), str) else "registration failed"
            msg = f"{url} refused the sync (HTTP {res.status_code}): {str(msg).strip()}"
            self._client.logger.error(msg)
            body = {**data, "code": errors.ErrorCode.REGISTRATION_FAILED.value, "message": msg}
            return Response(res.status_code, headers, orjson.dumps(body))
        return Response(200, headers, orjson.dumps(data))

    def _auth(self, key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {signing.hash_signing_key(key)}"} if key else {}

    async def _put(self, req: Request, key: str | None | Exception) -> Response:
        pre = self._put_precheck(req, key)
        if pre is not None:
            return pre
        url, headers, params, body = self._register_request(req)
        http = self._client._http_async()
        try:
            res = await http.post(url, params=params, headers={**headers, **self._auth(self._signing_key)}, content=body)
            if res.status_code in (401, 403) and self._signing_key_fallback:
                res = await http.post(
                    url, params=params, headers={**headers, **self._auth(self._signing_key_fallback)}, content=body
                )
        except httpx.HTTPError as exc:
            return self._error(errors.RegistrationFailedError(f"could not reach {url} to sync: {exc}"))
        return self._register_response(url, res)

    def _put_sync(self, req: Request, key: str | None | Exception) -> Response:
        pre = self._put_precheck(req, key)
        if pre is not None:
            return pre
        url, headers, params, body = self._register_request(req)
        http = self._client._http_sync()
        try:
            res = http.post(url, params=params, headers={**headers, **self._auth(self._signing_key)}, content=body)
            if res.status_code in (401, 403) and self._signing_key_fallback:
                res = http.post(
                    url, params=params, headers={**headers, **self._auth(self._signing_key_fallback)}, content=body
                )
        except httpx.HTTPError as exc:
            return self._error(errors.RegistrationFailedError(f"could not reach {url} to sync: {exc}"))
        return self._register_response(url, res)


def _prep(res: CallResult) -> Any:
    """A CallResult as JSON-ready data: an op object, or a function's output or error."""
    d: dict[str, Any] = res.step.to_wire() if res.step is not None else {}
    if res.error is not None:
        d["error"] = error_data(res.error)
    if res.output is not EMPTY:
        d["data"] = res.output
    if res.step is None:
        return d.get("error") or d.get("data")
    return d


def _unserializable(res: CallResult) -> errors.OutputUnserializableError:
    """Name the step whose output could not be serialized (checked only after a failure)."""
    for item in res.multi or [res]:
        if item.output is not EMPTY and not is_serializable(item.output):
            if item.step is not None:
                return errors.OutputUnserializableError(f'"{item.step.display_name}" returned unserializable data')
            break
    return errors.OutputUnserializableError("returned unserializable data")


def _strip_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_strip_none(v) for v in obj if v is not None]
    return obj
