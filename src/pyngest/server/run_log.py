"""One log line per run-level event: a run created, started, a step or request failed (and is
retried, or not), a run completed, failed or was cancelled. Each carries ``run_id``, ``fn`` (the
function's slug) and ``app`` (the app's name), which the JSON log format (``--json``) prints as
fields of their own.

Like the metrics, it reads every committed batch (a commit observer), so no other module
carries logging code for runs; it costs nothing when the ``pyngest.runs`` logger is off.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyngest.server.model import AddHistory, Batch, CommitResult, CreateRun, Run

if TYPE_CHECKING:
    from pyngest.server.service import Service

log = logging.getLogger("pyngest.runs")

RECENT_RUNS = 100_000  # run -> (fn, app) remembered without asking the run cache

# history kind -> (level, message)
_EVENTS: dict[str, tuple[int, str]] = {
    "FunctionStarted": (logging.INFO, "run started"),
    "StepErrored": (logging.WARNING, "step failed, will retry"),
    "StepFailed": (logging.WARNING, "step failed, no retries left"),
    "FunctionErrored": (logging.WARNING, "request failed, will retry"),
    "FunctionErroredFinal": (logging.WARNING, "request failed, no retries left"),
    "FunctionCompleted": (logging.INFO, "run completed"),
    "FunctionFailed": (logging.ERROR, "run failed"),
    "FunctionCancelled": (logging.INFO, "run cancelled"),
}


def describer(service: Service) -> Callable[[str], tuple[str, str] | None]:
    """(function slug, app name) of a run the server has in memory."""

    def describe(run_id: str) -> tuple[str, str] | None:
        run = service.state.runs.peek(run_id)
        fn = service.registry.functions.get(run.fn_id) if run is not None else None
        if fn is None:
            return None
        app = service.registry.apps.get(fn.app_id)
        return fn.slug, app.name if app else ""

    return describe


class RunLog:
    def __init__(self, describe: Callable[[str], tuple[str, str] | None]) -> None:
        """``describe(run_id)``: the run's (function slug, app name), if it can be found."""
        self._describe = describe
        self._names: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def observe(self, batch: Batch, result: CommitResult) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        for op in batch.ops:
            if type(op) is CreateRun:
                if op.run.id not in result.skipped_runs:
                    self._remember(op.run)
                    self._emit(logging.INFO, "run created", op.run.id)
            elif type(op) is AddHistory:
                event = _EVENTS.get(op.kind)
                if event is not None:
                    self._emit(*event, op.run_id, step=op.name, attempt=op.attempt)
                    if op.kind in ("FunctionCompleted", "FunctionFailed", "FunctionCancelled"):
                        self._names.pop(op.run_id, None)

    def _remember(self, run: Run) -> None:
        names = self._describe(run.id)
        slug = str(run.attrs.get("fn_slug") or (names[0] if names else ""))
        self._names[run.id] = (slug, names[1] if names else "")
        if len(self._names) > RECENT_RUNS:
            self._names.popitem(last=False)

    def _emit(self, level: int, message: str, run_id: str, *, step: str | None = None,
              attempt: int | None = None) -> None:
        if not log.isEnabledFor(level):
            return
        fn, app = self._names.get(run_id) or self._describe(run_id) or ("", "")
        fields: dict[str, object] = {"run_id": run_id, "fn": fn, "app": app}
        if step:
            fields["step"] = step
        if attempt is not None:
            fields["attempt"] = attempt
        log.log(level, "%s: %s (%s)", message, fn or "?", run_id, extra={"fields": fields})
