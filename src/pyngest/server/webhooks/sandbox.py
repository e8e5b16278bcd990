"""Running a webhook's JavaScript transform, isolated and bounded.

The engine is V8 through ``mini-racer`` (docs/webhooks.md says why): every request gets a fresh
isolate with a hard heap limit, and a wall-clock deadline that terminates the script. An isolate
has no network, no file system and no modules, only the language and its built-ins; nothing a
transform sets survives its request. The isolate runs in a small thread pool: the event loop
only awaits the outcome, whatever the script does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

# upstream's dashboard fills new webhooks with a transform giving every request this name
DEFAULT_EVENT_NAME = "webhook/request.received"

DEFAULT_TRANSFORM = """// transform turns the request a webhook received into an Inngest event
// ({name, data, id?, ts?}) or an array of events.
//   evt:         the JSON body
//   headers:     the request's headers, named as Go canonicalizes them ("X-Github-Event")
//   queryParams: the URL's query parameters, each an array of values
//   raw:         the body as it arrived (a string), e.g. to check a signature in a function
function transform(evt, headers = {}, queryParams = {}, raw = "") {
  return {
    name: "webhook/request.received",
    data: evt,
  };
}
"""

# Scripts written for Node (``exports.transform = transform``, as in upstream's
# webhook-transform-sync example) find the objects they expect.
_PRELUDE = "var exports = {}; var module = {exports: exports};\n"
_FIND = """
;var __pyngest_transform = (typeof transform === "function") ? transform
  : (module.exports && typeof module.exports.transform === "function") ? module.exports.transform
  : (typeof exports.transform === "function") ? exports.transform : null;
typeof __pyngest_transform === "function"
"""
# The result travels as JSON inside an object, so that `undefined` (no "v") stays distinguishable.
# An async transform (a Promise, or any thenable) is awaited within the same time limit: the call
# answers null and the outcome lands in __pyngest_settled, which the runner polls with short
# evaluations of its own — each under the deadline, so a script still busy after an `await`
# is terminated like any other (V8 runs the continuation outside the evaluation that made it).
_CALL = """(function (raw, evt, parse, headers, query) {{
  if (parse) {{ evt = JSON.parse(raw); }}
  var r = __pyngest_transform(evt, headers, query, raw);
  if (r !== null && (typeof r === "object" || typeof r === "function") && typeof r.then === "function") {{
    globalThis.__pyngest_settled = null;
    Promise.resolve(r).then(function (v) {{
      try {{ __pyngest_settled = {{done: JSON.stringify({{v: v}})}}; }}
      catch (e) {{ __pyngest_settled = {{error: "its result cannot be turned into JSON: " + e}}; }}
    }}, function (e) {{
      __pyngest_settled = {{rejected: (e && e.stack) ? String(e.stack) : String(e)}};
    }});
    return null;
  }}
  return JSON.stringify({{v: r}});
}})({args})"""
_SETTLED = "__pyngest_settled === null ? null : JSON.stringify(__pyngest_settled)"
_POLL_S = 0.001  # between looks at a pending Promise: timers and continuations run meanwhile
# Each look may take at least this long, even with less of the time limit left: a look is a few
# microseconds of JavaScript, but on a loaded machine one given the last millisecond timed out,
# and a Promise that never settled was reported as a transform still running. A transform that
# is busy (a loop after an await) still times out in the look, at most this much past its limit.
_LOOK_FLOOR_S = 0.05

NO_FUNCTION = "the transform must define function transform(evt, headers, queryParams, raw)"


class TransformError(Exception):
    """The transform could not make events from the request; the message says why."""


class Sandbox:
    def __init__(self, *, timeout_ms: int, memory_bytes: int, workers: int = 2) -> None:
        self.timeout_ms = timeout_ms
        self.memory_bytes = memory_bytes
        # few isolates at once: each may take its memory limit
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook-transform")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()

    def _engine_loop(self) -> asyncio.AbstractEventLoop:
        """The loop mini-racer reports V8's results on, one for every isolate, never closed: V8
        may still report on a script it terminated after its isolate is gone, and a closed loop
        would make that an error."""
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="webhook-v8-results", daemon=True).start()
                self._loop = loop
            return self._loop

    async def run(self, source: str, *, raw: str, evt: Any, parse: bool,
                  headers: dict[str, str], query: dict[str, list[str]]) -> Any:
        """The transform's return value (JSON-decoded). With ``parse``, ``evt`` is ``raw`` parsed
        as JSON inside the isolate. Raises TransformError."""
        args = orjson.dumps([raw, None if parse else evt, parse, headers, query]).decode()[1:-1]
        out = await asyncio.get_running_loop().run_in_executor(
            self._pool, _evaluate, self._engine_loop, source, _CALL.format(args=args), self.timeout_ms,
            self.memory_bytes)
        if "v" not in out:
            raise TransformError("the transform returned undefined: it must return an event "
                                 "({name, data}) or an array of events")
        return out["v"]

    async def check(self, source: str) -> None:
        """Refuse a transform that does not compile or defines no ``transform`` function."""
        await asyncio.get_running_loop().run_in_executor(
            self._pool, _evaluate, self._engine_loop, source, None, self.timeout_ms, self.memory_bytes)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _evaluate(engine_loop: Callable[[], asyncio.AbstractEventLoop], source: str, call: str | None,
              timeout_ms: int, memory_bytes: int) -> dict[str, Any]:
    """In a pool thread: a fresh isolate, the script, then the call, all within the limits."""
    from py_mini_racer import (  # imported on first use: V8 costs ~60 MB of memory once loaded
        JSEvalException,
        JSOOMException,
        JSParseException,
        JSTimeoutException,
        mini_racer,
    )

    with mini_racer(engine_loop()) as mr:
        # the limit is the script's: loading V8 and making the isolate do not count
        deadline = time.monotonic() + timeout_ms / 1000
        mr.set_hard_memory_limit(memory_bytes)
        try:
            if not mr.eval(_PRELUDE + source + _FIND, timeout_sec=_left(deadline)):
                raise TransformError(NO_FUNCTION)
            if call is None:
                return {}
            out = mr.eval(call, timeout_sec=_left(deadline))
            if out is None:  # an async transform: its Promise settles later, within the deadline
                out = _settled(mr, deadline, timeout_ms)
        except JSTimeoutException as exc:
            raise TransformError(f"the transform ran longer than its time limit of {timeout_ms} ms") from exc
        except JSOOMException as exc:
            raise TransformError(f"the transform used more than its memory limit of "
                                 f"{memory_bytes // (1024 * 1024)} MiB") from exc
        except JSParseException as exc:
            raise TransformError(f"the transform is not valid JavaScript: {_js_message(exc)}") from exc
        except JSEvalException as exc:
            # Typed arrays live outside V8's heap: when the heap limit has already been passed,
            # or the allocator refuses their backing store, V8 throws an ordinary RangeError
            # rather than its out-of-memory error. Either way it is the memory limit.
            if mr.was_hard_memory_limit_reached() or _ARRAY_BUFFER_REFUSED in str(exc):
                raise TransformError(f"the transform used more than its memory limit of "
                                     f"{memory_bytes // (1024 * 1024)} MiB") from exc
            raise TransformError(f"the transform threw an error: {_js_message(exc)}") from exc
        if not isinstance(out, str):
            raise TransformError("the transform's result cannot be turned into JSON")
        parsed: dict[str, Any] = orjson.loads(out)
        return parsed


_ARRAY_BUFFER_REFUSED = "Array buffer allocation failed"


def _settled(mr: Any, deadline: float, timeout_ms: int) -> str:
    """The JSON result of an async transform's Promise, once settled; raises TransformError if
    it is rejected, and lets JSTimeoutException through when the deadline passes first."""
    while True:
        state = mr.eval(_SETTLED, timeout_sec=max(_left(deadline), _LOOK_FLOOR_S))
        if isinstance(state, str):
            break
        if time.monotonic() >= deadline:
            raise TransformError(f"the transform ran longer than its time limit of {timeout_ms} ms "
                                 "(its Promise did not settle)")
        time.sleep(_POLL_S)
    settled: dict[str, str] = orjson.loads(state)
    if "rejected" in settled:
        raise TransformError(f"the transform's Promise was rejected: {_js_message(Exception(settled['rejected']))}")
    if "error" in settled:
        raise TransformError(f"the transform's Promise resolved, but {settled['error']}")
    return settled["done"]


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def _js_message(exc: Exception) -> str:
    """V8's report without the source excerpt: its last paragraph (the error and its stack)."""
    text = str(exc).strip()
    tail = text.rsplit("\n\n", 1)[-1].strip()
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    message = " ".join(lines[:4])
    return message[:1000] or "unknown error"


def canonical_header(name: str) -> str:
    """Go's ``http.CanonicalHeaderKey``: ``x-github-event`` → ``X-Github-Event``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))
