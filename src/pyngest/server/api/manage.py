"""Management operations behind the dashboard, shared by REST (``/v1``) and GraphQL: apps,
pausing, invoking, sending events, rerun, bulk cancellation, replay and run search.

They are built from the server's public pieces only (the syncer, ``registry.set_paused``,
``executor.control.cancel_run``, ``runner.schedule_run``/``accept``), so the runner and executor
know nothing about the dashboard.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from pyngest import expr
from pyngest.protocol.events import FN_INVOKED, INTERNAL_DATA_KEY, EventValidationError, check_depth
from pyngest.protocol.sync import app_url_problem
from pyngest.server.events import event_dict, stored, take_events
from pyngest.server.model import DEFAULT_ENV, Run, RunStatus, StoredEvent
from pyngest.server.operations import OperationError as ServerOperationError
from pyngest.server.registry import Function, normalize_url
from pyngest.server.service import Service
from pyngest.server.store.base import AppRecord, OperationRecord, RunQuery

log = logging.getLogger("pyngest.manage")

UNFINISHED = [RunStatus.QUEUED.value, RunStatus.RUNNING.value]
PAGE = 500
# Replayed runs start this far apart, so a large replay does not flood the app.
REPLAY_SPACING_MS = 50
# A run search looks at most this many runs per page of results before handing back a cursor.
SEARCH_SCAN = 20_000
MAX_PREVIEW = 100_000


class OperationError(ValueError):
    """A request that cannot be carried out; the message says why."""


class NotFound(OperationError):
    """What the request names does not exist."""


# CEL string literals (with escapes), kept apart when ``output`` is rewritten
_STRINGS = re.compile(r"""("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')""")


def search_program(source: str) -> expr.Program:
    """Compile a run search. Lines are joined with ``&&``; ``output`` is the run's output.

    The expression layer knows ``event``, ``async`` and ``vars``; ``output`` is passed as
    ``vars.output``.
    """
    try:
        expr.check_length(source)  # before the text is rewritten: that takes time too
    except expr.ExpressionError as exc:
        raise OperationError(f"the search expression is invalid: {exc}") from exc
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    joined = " && ".join(f"({line})" for line in lines)
    # only outside string literals: a search for the text "no output" must stay that text
    rewritten = "".join(
        part if index % 2 else re.sub(r"(?<![\w.])output\b", "vars.output", part)
        for index, part in enumerate(_STRINGS.split(joined)))
    try:
        return expr.compile(rewritten)
    except expr.ExpressionError as exc:
        raise OperationError(str(exc).replace("vars.output", "output")) from exc


def event_search_program(source: str) -> expr.Program:
    """Compile an event search (the dashboard's events page): CEL over ``event``, one condition
    per line, lines joined with ``&&``."""
    try:
        expr.check_length(source)
        return expr.compile(_joined(source) or "true")
    except expr.ExpressionError as exc:
        raise OperationError(f"the search expression is invalid: {exc}") from exc


def _joined(expression: str | None) -> str | None:
    """The dashboard's multi-line search (one condition per line) as one expression."""
    if not expression:
        return None
    lines = [line.strip() for line in expression.splitlines() if line.strip()]
    return " && ".join(f"({line})" for line in lines) if len(lines) > 1 else (lines[0] if lines else None)


def _check_url(url: Any) -> None:
    problem = app_url_problem(url) if isinstance(url, str) else "must be a string"
    if problem is not None:
        raise OperationError(f"the app URL {problem}")


@dataclass(slots=True)
class EventWindow:
    """The events an event search looks through (before its expression)."""

    names: list[str] | None
    from_ms: int | None
    until_ms: int | None
    internal: bool
    before_seq: int | None = None


class Operations:
    """The dashboard's actions. Pausing, bulk cancellation, replay and rerun are the server's
    durable operations (``pyngest.server.operations``); this adds previews and searches."""

    def __init__(self, service: Service) -> None:
        self.s = service

    def function(self, ident: str, env_id: str = DEFAULT_ENV) -> Function:
        fn = self.s.registry.find_function(ident, env_id)
        if fn is None:
            raise NotFound(f"function {ident!r} not found")
        return fn

    # ------------------------------------------------------------------------------ apps

    async def add_app(self, url: str) -> tuple[AppRecord | None, str | None]:
        _check_url(url)
        error = await self.s.syncer.add(url, source="api")
        return self.s.registry.app_by_url(url), error

    def app(self, app_id: str) -> AppRecord:
        app = self.s.registry.apps.get(app_id) or self.s.registry.app_by_name(app_id)
        if app is None:
            raise NotFound(f"app {app_id!r} not found")
        return app

    async def update_app(self, app_id: str, url: str) -> tuple[AppRecord, str | None]:
        app = self.app(app_id)
        _check_url(url)
        old = app.url
        error = await self.s.syncer.add(url, source="api")
        if error is None and normalize_url(old) != normalize_url(url):  # not the same URL spelled anew
            await self.s.syncer.remove(old)
        return self.s.registry.apps.get(app.id, app), error

    async def delete_app(self, app_id: str) -> AppRecord:
        app = self.app(app_id)
        await self.s.syncer.remove(app.url)
        await self.s.registry.delete_app(app.id)
        return app

    async def resync_app(self, app_id: str) -> tuple[AppRecord, str | None]:
        app = self.app(app_id)
        error = await self.s.syncer.sync(app.url)
        return self.s.registry.apps.get(app.id, app), error

    # ------------------------------------------------------------------------- functions

    async def pause(self, fn: Function, *, cancel_running: bool) -> None:
        """Stop new runs of ``fn`` (their events are skipped) and hold its running runs between
        steps; ``cancel_running`` cancels them now instead of after 7 days (server/operations.py)."""
        await self.s.operations.pause_function(fn, cancel_running=cancel_running)

    async def resume(self, fn: Function) -> None:
        await self.s.operations.resume_function(fn)

    async def invoke(self, fn: Function, data: Any, user: Any) -> str:
        now = self.s.clock.now_ms()
        payload = dict(data) if isinstance(data, dict) else {}
        payload[INTERNAL_DATA_KEY] = {"fn_id": fn.slug}
        event = {"name": FN_INVOKED, "data": payload, "user": user if isinstance(user, dict) else {}, "ts": now}
        try:
            check_depth(event)
        except EventValidationError as exc:
            raise OperationError(str(exc)) from exc
        ev = stored(event, received_ms=now, source="dashboard", env_id=fn.env_id)
        if len(ev.body) > self.s.config.max_event_bytes:
            raise OperationError(f"Event is over the max size: Max {self.s.config.max_event_bytes} bytes / "
                                 f"Size {len(ev.body)} bytes")
        await self.s.runner.accept([ev])
        return ev.internal_id

    async def send_events(self, items: list[Any], env_id: str = DEFAULT_ENV) -> list[str]:
        """Validate and store events as the Event API would (the dashboard's test events), with
        its limits; but all or nothing: an invalid event stores none of the call's."""
        now = self.s.clock.now_ms()
        accepted, error = await take_events(
            items, now_ms=now, max_bytes=self.s.config.max_event_bytes, body_size=None,
            finish=lambda _, event: stored(event, received_ms=now, source="dashboard", env_id=env_id))
        if error is not None:
            raise OperationError(error + ("; no event was stored" if accepted else ""))
        if accepted:
            await self.s.runner.accept(accepted)
        return [e.internal_id for e in accepted]

    # ------------------------------------------------------------------------------ runs

    async def _pages(self, query: RunQuery) -> AsyncIterator[list[Run]]:
        """The runs ``query`` lists (its limit aside), newest first, a page at a time."""
        cursor = query.before_id
        while True:
            page = await self.s.store.list_runs(RunQuery(
                fn_ids=query.fn_ids, app_ids=query.app_ids, statuses=query.statuses,
                from_ms=query.from_ms, until_ms=query.until_ms, before_id=cursor, limit=PAGE,
            ))
            yield page
            if len(page) < PAGE:
                return
            cursor = page[-1].id

    async def _all(self, query: RunQuery, cap: int = MAX_PREVIEW) -> list[Run]:
        out: list[Run] = []
        async for page in self._pages(query):
            out += page
            if len(out) >= cap:
                break
        return out[:cap]

    async def _events_of(self, runs: list[Run]) -> dict[str, dict[str, Any]]:
        ids = list({r.event_ids[0] for r in runs if r.event_ids})
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), PAGE):
            for ev in await self.s.store.get_events(ids[i:i + PAGE]):
                out[ev.internal_id] = event_dict(ev)
        return out

    async def _matching(self, runs: list[Run], program: expr.Program | None) -> list[Run]:
        if program is None:
            return runs
        events = await self._events_of(runs)
        return [r for r in runs if _matches(program, r, events)]

    async def rerun(self, run_id: str) -> str:
        try:
            return await self.s.operations.rerun(run_id)
        except ServerOperationError as exc:
            raise OperationError(str(exc)) from exc

    async def count_cancellable(self, fn: Function, after_ms: int | None, before_ms: int | None,
                                expression: str | None) -> int:
        """How many runs a bulk cancellation would cancel now (the dashboard's estimate)."""
        program = search_program(expression) if expression else None
        runs = await self._all(RunQuery(fn_ids=[fn.id], statuses=UNFINISHED, from_ms=after_ms, until_ms=before_ms))
        return len(await self._matching(runs, program))

    async def bulk_cancel(self, fn: Function, name: str, after_ms: int | None, before_ms: int | None,
                          expression: str | None) -> OperationRecord:
        if expression:
            try:
                search_program(expression)  # the dashboard's search syntax: one condition per line
            except OperationError as exc:
                raise OperationError(f"the 'if' expression is invalid: {exc}") from exc
        matched = await self.count_cancellable(fn, after_ms, before_ms, expression)
        try:
            op = await self.s.operations.create_cancellation(
                fn, started_after=after_ms, started_before=before_ms,
                expression=_joined(expression), name=name or "Bulk cancellation", total=matched)
        except ServerOperationError as exc:
            raise OperationError(str(exc)) from exc
        return op

    async def count_replayable(self, fn: Function, from_ms: int, until_ms: int, statuses: list[str]) -> int:
        runs = [s for s in statuses if s != RunStatus.SKIPPED.value]
        count = await self.s.store.count_runs(
            RunQuery(fn_ids=[fn.id], statuses=runs, from_ms=from_ms, until_ms=until_ms), MAX_PREVIEW) if runs else 0
        if RunStatus.SKIPPED.value in statuses:
            count += len(await self.s.store.skipped_events(fn.id, from_ms, until_ms, None, MAX_PREVIEW))
        return count

    async def replay(self, fn: Function, name: str, from_ms: int, until_ms: int,
                     statuses: list[str]) -> OperationRecord:
        if not statuses:
            raise OperationError("choose at least one run status to replay")
        total = await self.count_replayable(fn, from_ms, until_ms, statuses)
        try:
            return await self.s.operations.create_replay(
                fn, from_ms=from_ms, until_ms=until_ms, statuses=statuses, name=name or "Replay", total=total)
        except ServerOperationError as exc:
            raise OperationError(str(exc)) from exc

    async def search(self, query: RunQuery, expression: str) -> tuple[list[Run], str | None]:
        """Runs matching ``query`` and a CEL search, newest first. Returns the matches and, when
        the scan stopped before the end, the cursor to continue from."""
        program = search_program(expression)
        want = query.limit
        found: list[Run] = []
        scanned = 0
        async for page in self._pages(query):
            scanned += len(page)
            for run in await self._matching(page, program):
                found.append(run)
                if len(found) == want:
                    return found, run.id
            if len(page) < PAGE:
                return found, None
            if scanned >= SEARCH_SCAN:
                return found, page[-1].id
        return found, None

    async def count_search(self, query: RunQuery, expression: str, cap: int) -> int:
        """How many runs (up to ``cap``) match ``query`` and a CEL search: every one, where
        :meth:`search` stops at a page."""
        program = search_program(expression)
        count = 0
        async for page in self._pages(query):
            count += len(await self._matching(page, program))
            if count >= cap:
                return cap
        return count


    # ---------------------------------------------------------------------------- events

    async def _event_pages(self, window: EventWindow) -> AsyncIterator[list[StoredEvent]]:
        """The events of ``window`` (names aside when there are several), newest first."""
        name = window.names[0] if window.names and len(window.names) == 1 else None
        cursor = window.before_seq
        while True:
            page = await self.s.store.list_events(name, PAGE, cursor, window.from_ms, window.until_ms,
                                                  internal=window.internal)
            yield page
            if len(page) < PAGE:
                return
            cursor = page[-1].seq

    def _events_matching(self, page: list[StoredEvent], window: EventWindow,
                         program: expr.Program) -> list[StoredEvent]:
        names = set(window.names or ())
        return [e for e in page if (not names or e.name in names) and program.matches(event=event_dict(e))]

    async def search_events(self, window: EventWindow, first: int,
                            expression: str) -> tuple[list[StoredEvent], int | None]:
        """Events of ``window`` matching a CEL search, newest first. Returns at most ``first``
        and, when there may be more, the cursor (a seq) to continue from."""
        program = event_search_program(expression)
        found: list[StoredEvent] = []
        scanned = 0
        async for page in self._event_pages(window):
            scanned += len(page)
            for event in self._events_matching(page, window, program):
                found.append(event)
                if len(found) == first:
                    return found, event.seq
            if len(page) < PAGE:
                return found, None
            if scanned >= SEARCH_SCAN:
                return found, page[-1].seq
        return found, None

    async def count_event_search(self, window: EventWindow, expression: str, cap: int) -> int:
        """How many events of ``window`` (up to ``cap``) match a CEL search: every one."""
        program = event_search_program(expression)
        count = 0
        async for page in self._event_pages(window):
            count += len(self._events_matching(page, window, program))
            if count >= cap:
                return cap
        return count


def _matches(program: expr.Program, run: Run, events: dict[str, dict[str, Any]]) -> bool:
    event = events.get(run.event_ids[0]) if run.event_ids else None
    output = orjson.loads(run.output) if run.output is not None else None
    return program.matches(event=event or {}, vars={"output": output})
