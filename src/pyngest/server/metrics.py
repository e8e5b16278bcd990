"""Prometheus counters and gauges with upstream's metric names
(platform__monitor__prometheus-metrics-export-integration).

Counts come from two places that already see everything, so no other module carries metric
code:
- every committed batch (:meth:`Metrics.observe`, called by :class:`State`): runs scheduled,
  started and ended, step output bytes, and the outcome of the SDK request that produced it;
- the EXECUTE job handler, wrapped by :meth:`Metrics.track_requests`: SDK requests started and
  in flight. The wrapper marks its task with a context variable, so the batch a request commits
  (in the same task) tells which way the request ended.

Counters live in memory and restart at zero with the process, as Prometheus counters may.

Per environment, as upstream's export (a scrape endpoint per environment): every count is kept
under its run's environment and :meth:`Metrics.render` writes one environment's, with upstream's
names and labels unchanged (``fn``, ``date``, ``status``); no ``env`` label, so a branch
environment adds no series to another environment's scrape (docs/compatibility.md).
"""

from __future__ import annotations

import contextvars
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from pyngest.server.model import (
    DEFAULT_ENV,
    AddHistory,
    Batch,
    CommitResult,
    CreateRun,
    Enqueue,
    Job,
    JobKind,
    SaveStep,
)

# How many recently created runs' function slugs are remembered without asking the run cache.
RECENT_RUNS = 100_000

_ENDED = {"FunctionCompleted": "Completed", "FunctionFailed": "Failed", "FunctionCancelled": "Cancelled"}
_REQ_ERRORED = {"StepErrored", "FunctionErrored"}
_REQ_FAILED = {"StepFailed", "FunctionErroredFinal"}

# The outcome of the SDK request running in this task, filled in by the batch it commits.
_request: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("pyngest_request", default=None)

HELP = {
    "inngest_function_run_scheduled_total": ("counter", "The total number of function runs scheduled"),
    "inngest_function_run_started_total": ("counter", "The total number of function runs started"),
    "inngest_function_run_ended_total": ("counter", "The total number of function runs ended"),
    "inngest_sdk_req_scheduled_total": ("counter", "The total number of SDK invocation/step execution scheduled"),
    "inngest_sdk_req_started_total": ("counter", "The total number of SDK invocation/step execution started"),
    "inngest_sdk_req_ended_total": ("counter", "The total number of SDK invocation/step execution ended"),
    "inngest_step_output_bytes_total": ("counter", "The total number of bytes used by step outputs"),
    "inngest_steps_scheduled": ("gauge", "The number of steps scheduled"),
    "inngest_steps_running": ("gauge", "The number of steps currently running"),
}


_DAY_MS = 86_400_000
_day: tuple[int, str] = (-1, "")


def _date(ms: int) -> str:
    """The UTC date of ``ms`` (cached for the day: it labels every counter increment)."""
    global _day
    day = ms // _DAY_MS
    if day != _day[0]:
        _day = (day, time.strftime("%Y-%m-%d", time.gmtime(ms / 1000)))
    return _day[1]


# A counter's key: (environment, metric name, sorted labels).
Key = tuple[str, str, tuple[tuple[str, str], ...]]
# A run's function: (environment, function slug).
FnKey = tuple[str, str]
UNKNOWN: FnKey = (DEFAULT_ENV, "unknown")


class Metrics:
    def __init__(self, fn_of_run: Callable[[str], FnKey | None], now_ms: Callable[[], int]) -> None:
        # fn_of_run: the environment and function slug of a run the server has in memory, if it has
        self.fn_of_run = fn_of_run
        self.now_ms = now_ms
        self._slugs: OrderedDict[str, FnKey] = OrderedDict()  # runs created since start
        self.counters: Counter[Key] = Counter()
        self.running: Counter[FnKey] = Counter()

    def _inc(self, name: str, fn: FnKey, amount: int = 1, *, date: str, status: str | None = None) -> None:
        # the labels in name order (a counter's key), built directly: this runs a dozen times per run
        labels = (("date", date), ("fn", fn[1])) if status is None else (("date", date), ("fn", fn[1]),
                                                                          ("status", status))
        self.counters[(fn[0], name, labels)] += amount

    def observe(self, batch: Batch, result: CommitResult) -> None:
        date = ""
        outcome = _request.get()
        for op in batch.ops:
            if type(op) is AddHistory:
                kind = op.kind
                if kind == "FunctionStarted":
                    date = date or _date(self.now_ms())
                    self._inc("inngest_function_run_started_total", self._fn(op.run_id), date=date)
                elif kind in _ENDED:
                    date = date or _date(self.now_ms())
                    self._inc("inngest_function_run_ended_total", self._fn(op.run_id), date=date,
                              status=_ENDED[kind])
                if outcome is not None:
                    if kind in _REQ_FAILED:
                        outcome[0] = "failed"
                    elif kind in _REQ_ERRORED and outcome[0] != "failed":
                        outcome[0] = "errored"
            elif type(op) is CreateRun:
                if op.run.id not in result.skipped_runs:
                    date = date or _date(self.now_ms())
                    slug = op.run.attrs.get("fn_slug")
                    fn = (op.run.env_id, str(slug)) if slug else self._fn(op.run.id)
                    self._slugs[op.run.id] = fn
                    if len(self._slugs) > RECENT_RUNS:
                        self._slugs.popitem(last=False)
                    self._inc("inngest_function_run_scheduled_total", fn, date=date)
            elif type(op) is Enqueue:
                job = op.job
                if job.kind is JobKind.EXECUTE and job.id not in result.ignored_jobs \
                        and job.run_id not in result.skipped_runs:
                    date = date or _date(self.now_ms())
                    self._inc("inngest_sdk_req_scheduled_total", self._fn(job.run_id or ""), date=date)
            elif type(op) is SaveStep:
                date = date or _date(self.now_ms())
                self._inc("inngest_step_output_bytes_total", self._fn(op.run_id), len(op.value), date=date)

    def _fn(self, run_id: str) -> FnKey:
        return self._slugs.get(run_id) or self.fn_of_run(run_id) or UNKNOWN

    def track_requests(self, handler: Callable[[Job], Awaitable[None]]) -> Callable[[Job], Awaitable[None]]:
        """Wrap the EXECUTE job handler: count requests started, in flight, and how they ended."""

        async def tracked(job: Job) -> None:
            fn = self._fn(job.run_id or "")
            date = _date(self.now_ms())
            self._inc("inngest_sdk_req_started_total", fn, date=date)
            outcome = ["success"]
            token = _request.set(outcome)
            self.running[fn] += 1
            try:
                await handler(job)
            except BaseException:
                outcome[0] = "errored"
                raise
            finally:
                self.running[fn] -= 1
                _request.reset(token)
                self._inc("inngest_sdk_req_ended_total", fn, date=date, status=outcome[0])

        return tracked

    def running_in(self, env_id: str) -> dict[str, int]:
        """Requests in flight per function slug, in one environment."""
        return {slug: n for (env, slug), n in self.running.items() if env == env_id and n > 0}

    def render(self, env_id: str, scheduled: dict[str, int]) -> str:
        """One environment's exposition text. ``scheduled``: its steps waiting to run, per function slug."""
        lines: list[str] = []
        by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], int]]] = {}
        for (env, name, labels), value in self.counters.items():
            if env == env_id:
                by_name.setdefault(name, []).append((labels, value))
        by_name["inngest_steps_running"] = [((("fn", fn),), n) for fn, n in self.running_in(env_id).items()]
        by_name["inngest_steps_scheduled"] = [((("fn", fn),), n) for fn, n in scheduled.items()]
        for name, (kind, help_text) in HELP.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(by_name.get(name, [])):
                rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{name}{{{rendered}}} {value}")
        return "\n".join(lines) + "\n"


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
