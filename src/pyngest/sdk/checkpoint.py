"""Checkpointing: a function's steps run back to back in one request (PROTOCOL.md §3.8, §9.3).

Without it every ``step.run`` costs a round trip: the SDK answers 206 with the step's output, the
server stores it and sends the next request, which replays the handler up to the next step.
With it, when a request's answer would be the output of exactly one ``step.run``, the SDK goes
on in the same request as if the server had sent the next request itself: the step's output
becomes a memo (in the form the server would send it back) and the handler replays from the
top. Every request-level behaviour (middleware hooks per request, memo decoding,
``ctx.logger`` muting, determinism warnings) is therefore the classic protocol's, only without
the trip through the server's queue.

The step is reported to the server's checkpoint API (``POST /v1/checkpoint/{runId}/async``,
what the npm SDK v4 calls async checkpointing) before the next step's code runs (a gate in
``step.run``), and the server answers 2xx only once it has stored it: the npm SDK's guarantee
with its default ``bufferedSteps: 1`` (the function's own code between two steps may run
first, as there). When the function returns right after a step, that step rides with the
return in one answer, ``206 [StepRun, RunComplete]``. Anything else — sleeps, waits, invokes,
parallel steps, a step's error, a retry attempt, a request that has used its time budget, a
checkpoint the server refuses — ends the request with the classic answer for that point
(after storing the step before it), which the server treats as it would without checkpointing.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from pyngest.httpclient import HTTPClient, HTTPError, Prepared
from pyngest.protocol import jcs
from pyngest.protocol.opcodes import MAX_STEP_OUTPUT_BYTES, Opcode
from pyngest.protocol.signing import hash_signing_key
from pyngest.protocol.step_ids import hash_step_id
from pyngest.sdk import config, errors
from pyngest.sdk.config import Env
from pyngest.sdk.options import Checkpointing, CheckpointingOption, to_ms
from pyngest.sdk.replay import CallResult, CheckpointRefused, StepInfo, dumps, is_serializable
from pyngest.sdk.types import EMPTY

if TYPE_CHECKING:
    from pyngest.sdk.client import Inngest
    from pyngest.sdk.execute import ExecRequest
    from pyngest.sdk.function import Function

# Network errors and 5xx answers are retried like the npm SDK does (5 tries, 100 ms base).
ATTEMPTS = 5
# After a server says it has no checkpoint API (404/405), don't ask it again for a while.
UNSUPPORTED_FOR_S = 60.0


def settings(fn_option: CheckpointingOption, client_option: CheckpointingOption) -> Checkpointing | None:
    """The function's option, else the client's, else ``INNGEST_CHECKPOINTING`` (``0`` turns it
    off), else on with the defaults."""
    for option in (fn_option, client_option):
        if option is False:
            return None
        if option is True:
            return _DEFAULTS
        if isinstance(option, Checkpointing):
            return option
    if config.env_is_false(Env.CHECKPOINTING):
        return None
    return _DEFAULTS


_DEFAULTS = Checkpointing()  # frozen: one for every request that takes the defaults


class API:
    """Where a client's checkpoints go and the heads they carry (one set of headers per signing
    key to try): the same for all its runs but the run id in the path, so rendered once."""

    __slots__ = ("key", "origin", "prefix", "headers", "rendered")

    def __init__(self, client: Inngest) -> None:
        self.key = _api_key(client)
        self.origin = client.api_origin
        self.prefix = urllib.parse.urljoin(self.origin, "/v1/checkpoint/")
        base = config.base_headers(env=client.env, framework=None, server_kind=None)
        base["content-type"] = "application/json"
        keys: list[str | None] = [k for k in (client.signing_key, client.signing_key_fallback) if k]
        self.headers = [{**base, **_auth(key)} for key in keys or [None]]
        self.rendered = [Prepared.render(self.prefix, h) for h in self.headers]

    def for_run(self, run_id: str) -> tuple[str, list[Prepared]]:
        """The run's checkpoint URL and its rendered heads."""
        quoted = urllib.parse.quote(run_id)
        if not quoted or "/" in quoted or "." in quoted:
            # urljoin would drop empty and dot segments from such a path: let it
            url = urllib.parse.urljoin(self.origin, f"/v1/checkpoint/{quoted}/async")
            return url, [Prepared.render(url, h) for h in self.headers]
        tail = f"{quoted}/async"
        return self.prefix + tail, [p.with_path(p.target.path + tail) for p in self.rendered]


def _api_key(client: Inngest) -> tuple[str, str | None, str | None, str | None]:
    return client.api_origin, client.env, client.signing_key, client.signing_key_fallback


def _auth(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {hash_signing_key(key)}"} if key else {}


class Support:
    """What the client learnt about its server's checkpoint API (shared by its requests)."""

    __slots__ = ("missing_until", "_api")

    def __init__(self) -> None:
        self.missing_until = 0.0
        self._api: API | None = None

    def api(self, client: Inngest) -> API:
        """The client's :class:`API`, built again if what it was built from has changed."""
        api = self._api
        if api is None or api.key != _api_key(client):
            api = self._api = API(client)
        return api

    def available(self) -> bool:
        return time.monotonic() >= self.missing_until

    def missing(self) -> None:
        self.missing_until = time.monotonic() + UNSUPPORTED_FOR_S


class Step:
    """One step.run output: the request's classic answer for it, the op to report, and the memo
    the server would send back for it."""

    __slots__ = ("id", "result", "op", "memo")

    def __init__(self, step_id: str, result: CallResult, op: bytes, memo: Any) -> None:
        self.id = step_id
        self.result = result
        self.op = op
        self.memo = memo


class Session:
    """Checkpointing for one request."""

    __slots__ = ("client", "run_id", "fn_id", "qi_id", "generation", "request_id", "deadline", "steps", "pending",
                 "reported", "_target", "_http")

    def __init__(self, client: Inngest, req: ExecRequest, request_id: str | None, max_runtime_ms: int) -> None:
        self.client = client
        self.run_id = req.run_id
        self.fn_id = req.fn_id
        self.qi_id = req.qi_id
        self.generation = req.generation_id
        self.request_id = request_id
        self.deadline = client._monotonic() + max_runtime_ms / 1000
        self.steps: dict[str, Any] | None = None
        # The last step run, not yet stored: stored before the next step's code runs (the
        # gate) or before any answer but the function's return, which carries it along.
        self.pending: Step | None = None
        self.reported = 0
        # the URL, headers (one set per signing key, and each rendered for the async client)
        # and the body's fixed head, built at the first checkpoint and the same for every one
        # after it in this request
        self._target: tuple[str, list[dict[str, str]], list[Prepared], bytes] | None = None
        self._http: HTTPClient | None = None  # the loop's checkpoint client, looked up once

    @classmethod
    def open(
        cls, client: Inngest, fn: Function[Any], req: ExecRequest, target: str | None, headers: dict[str, str]
    ) -> Session | None:
        """A session if this request may checkpoint, else None (the classic protocol).

        The server shows it takes checkpoints by sending the function's internal id and the
        queue item's id (``ctx.fn_id``, ``ctx.qi_id``), as the npm SDK requires. Only a
        discovery request on its first attempt, with immediate execution allowed, goes on past
        a step: a retry answers right after its step (so the next step starts with its own
        attempt count, as without checkpointing), a targeted or planned request runs one step.
        """
        cfg = settings(fn.checkpointing, client.checkpointing)
        if cfg is None or target is not None or req.disable_immediate or req.attempt != 0:
            return None
        if not req.fn_id or not req.qi_id or not client._checkpoint_support.available():
            return None
        return cls(client, req, headers.get("x-request-id") or None, to_ms(cfg.max_runtime))

    # ------------------------------------------------------------------ deciding

    def next_step(self, res: CallResult) -> Step | None:
        """The step to go on after if ``res`` is the output of one ``step.run`` and time remains."""
        if res.multi is None or len(res.multi) != 1:
            return None
        item = res.multi[0]
        info = item.step
        if info is None or info.op is not Opcode.STEP_RUN or item.error is not None or item.output is EMPTY:
            return None
        if self.client._monotonic() >= self.deadline:
            return None
        op = info.to_wire()
        output = item.output
        op["data"] = output
        try:
            payload = dumps(op)
            if _plain_scalar(output):
                # what the server stores and sends back is the value itself: skip the round
                # trips through JSON that a structured output needs
                stored_len = len(dumps(output)) + 9  # {"data":...}
                memo: Any = {"data": output}
            else:
                data = orjson.loads(dumps(output))
                # The server stores {"data": ...} as canonical JSON and sends it back parsed: the
                # handler sees exactly that (1.0 comes back as 1, tuples as lists).
                stored = jcs.dumps({"data": data})
                stored_len = len(stored)
                memo = None
        except (errors.OutputUnserializableError, orjson.JSONDecodeError, TypeError, ValueError):
            return None  # the classic answer reports the problem
        if stored_len > MAX_STEP_OUTPUT_BYTES:
            return None  # the server fails the step (output_too_large) from the classic answer
        return Step(info.id, res, payload, memo if memo is not None else orjson.loads(stored))

    def resume(self, steps: dict[str, Any]) -> Callable[[StepInfo, object], Any]:
        """For :class:`~pyngest.sdk.replay.Execution`: go on after a step in the same call of the
        handler (``steps``: this request's memos so far)."""
        if self.steps is None:
            self.steps = dict(steps)
        return self._resumed

    def _resumed(self, info: StepInfo, output: object) -> Any:
        """``info``'s step ran and gave ``output``: make it the pending step and give back its
        memo, or EMPTY where the request must answer for it (as :meth:`answer` would)."""
        if self.pending is not None:  # (the gate stored the one before: never here)
            return EMPTY
        step = self.next_step(CallResult(None, [CallResult(None, None, output, info)]))
        if step is None:
            return EMPTY
        self.pending = step
        assert self.steps is not None
        self.steps[step.id] = step.memo  # should a later step replay the handler after all
        return step.memo

    def must_store(self, res: CallResult) -> bool:
        """A step is pending and ``res`` is not the function's return (which carries it)."""
        return self.pending is not None and not _returned(res)

    def answer(self, res: CallResult) -> CallResult | None:
        """The request's answer after ``res``, or None to go on (with :meth:`memos`)."""
        if self.pending is not None:  # the function returned right after the pending step
            return CallResult(multi=[self.pending.result.multi[0], _run_complete(res)])  # type: ignore[index]
        step = self.next_step(res)
        if step is None:
            return res
        self.pending = step
        return None

    def refused(self) -> CallResult:
        """The classic answer for the step that could not be stored."""
        assert self.pending is not None
        return self.pending.result

    def memos(self, steps: dict[str, Any]) -> dict[str, Any]:
        """The memos of the next (in-process) request: this request's plus the pending step's."""
        assert self.pending is not None
        if self.steps is None:
            self.steps = dict(steps)
        self.steps[self.pending.id] = self.pending.memo
        return self.steps

    async def gate(self) -> None:
        """Before a step's code runs: store the pending step first."""
        if self.pending is not None and not await self.report_pending():
            raise CheckpointRefused()

    def gate_sync(self) -> None:
        if self.pending is not None and not self.report_pending_sync():
            raise CheckpointRefused()

    async def report_pending(self) -> bool:
        assert self.pending is not None
        if not await self.report(self.pending):
            return False
        self.pending = None
        return True

    def report_pending_sync(self) -> bool:
        assert self.pending is not None
        if not self.report_sync(self.pending):
            return False
        self.pending = None
        return True

    # ------------------------------------------------------------------ reporting

    def _request(self, step: Step) -> tuple[str, list[dict[str, str]], list[Prepared], bytes]:
        """The checkpoint's URL, its headers (one set per signing key to try, as dicts and
        rendered) and body."""
        if self._target is None:
            api = self.client._checkpoint_support.api(self.client)
            url, rendered = api.for_run(self.run_id)
            fixed: dict[str, Any] = {"run_id": self.run_id, "fn_id": self.fn_id, "qi_id": self.qi_id}
            if self.request_id:
                fixed["request_id"] = self.request_id
            if self.generation:
                fixed["generation_id"] = self.generation
            head = orjson.dumps(fixed)[:-1] + b',"steps":['  # the object, still open
            self._target = (url, api.headers, rendered, head)
        url, per_key, rendered, head = self._target
        body = b"%s%s],\"ts\":%d}" % (head, step.op, self.client._clock.now_ms())
        return url, per_key, rendered, body

    def _outcome(self, status: int | None, text: str) -> bool | None:
        """True: stored. False: refused for good (answer the classic way). None: try again."""
        if status is None:
            self._log(f"could not reach the checkpoint API: {text}")
            return None
        if status < 300:
            self.reported += 1
            return True
        self._log(f"the checkpoint API answered HTTP {status}: {text[:200]}")
        if status >= 500:
            return None
        if status in (404, 405):
            # most likely no such route: a server without checkpointing (a run it no longer
            # has would say the same; then only this pause is lost)
            self.client._checkpoint_support.missing()
        # 409: this request is stale (the server gave its run to another dispatch); 400: the
        # run ended (cancelled) or the op was refused. The classic answer is what it expects.
        return False

    def _log(self, message: str) -> None:
        self.client.logger.debug(f"run {self.run_id}: {message}; answering without checkpointing")

    async def report(self, step: Step) -> bool:
        """Store the step on the server; False if it could not be (answer the classic way)."""
        from pyngest.sdk.client import backoff_s

        _, _, rendered, body = self._request(step)
        http = self._http
        if http is None:
            http = self._http = self.client._checkpoint_http()
        for attempt in range(ATTEMPTS):
            status: int | None = None
            text = ""
            for prepared in rendered:
                try:
                    res = await http.post_prepared(prepared, body, timeout=self.client._timeout)
                except HTTPError as exc:
                    status, text = None, str(exc)
                    break
                status = res.status
                text = "" if status < 300 else res.body.decode(errors="replace")  # read only to log it
                if status not in (401, 403):
                    break
            outcome = self._outcome(status, text)
            if outcome is not None:
                return outcome
            if attempt + 1 < ATTEMPTS:
                await self.client._sleep_async(backoff_s(attempt))
        return False

    def report_sync(self, step: Step) -> bool:
        """Blocking :meth:`report`, for plain (non-async) functions."""
        from pyngest.sdk.client import backoff_s

        url, per_key, _, body = self._request(step)
        http = self.client._http_sync()
        for attempt in range(ATTEMPTS):
            status: int | None = None
            text = ""
            for headers in per_key:
                try:
                    res = http.post(url, headers=headers, content=body)
                except httpx.HTTPError as exc:
                    status, text = None, str(exc)
                    break
                status, text = res.status_code, res.text
                if status not in (401, 403):
                    break
            outcome = self._outcome(status, text)
            if outcome is not None:
                return outcome
            if attempt + 1 < ATTEMPTS:
                self.client._sleep_sync(backoff_s(attempt))
        return False


_SAFE_INT = 2**53


def _plain_scalar(value: Any) -> bool:
    """A value the server's canonical JSON gives back unchanged (no float to renormalize, no
    container whose keys it sorts)."""
    t = type(value)
    return t is str or t is bool or value is None or (t is int and -_SAFE_INT <= value <= _SAFE_INT)


def _returned(res: CallResult) -> bool:
    """The function returned (an output that can be sent: else its error answer must not take
    the pending step down with it)."""
    return (res.multi is None and res.step is None and res.error is None and res.output is not EMPTY
            and is_serializable(res.output))


_COMPLETE_ID = hash_step_id("complete")  # the npm SDK's id for it


def _run_complete(res: CallResult) -> CallResult:
    """The function's return as a ``RunComplete`` op (PROTOCOL.md §4.2), to answer with it and
    the step before it in one response."""
    info = StepInfo(id=_COMPLETE_ID, display_name="complete", name="complete", op=Opcode.RUN_COMPLETE,
                    opts=None, user_id="complete", index=None)
    return CallResult(output=res.output, step=info)
