"""Turning event dicts into stored events (canonical JSON, ids), shared by the event API, the
runner (cron, invoke) and the executor (system events)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from pyngest.protocol import jcs
from pyngest.protocol.events import MAX_EVENTS_PER_REQUEST, EventValidationError, normalize_incoming
from pyngest.protocol.ids import new_ulid
from pyngest.server.model import (
    DEFAULT_ENV,
    Batch,
    Enqueue,
    InsertEvents,
    Job,
    JobKind,
    StoredEvent,
)

# the answer of a call that sends events while the store is unavailable (never a 200)
UNAVAILABLE = "The events were not stored (the server's database is unavailable); send them again: {exc}"


def stored(event: dict[str, Any], *, received_ms: int, internal_id: str | None = None,
           source: str = "", env_id: str = DEFAULT_ENV) -> StoredEvent:
    """Finalize an already validated event: fill ``id`` and render it canonically."""
    iid = internal_id or new_ulid(received_ms)
    if not event.get("id"):
        event["id"] = iid
    event.setdefault("user", {})
    event.setdefault("data", {})
    return StoredEvent(
        internal_id=iid,
        name=event["name"],
        event_id=str(event["id"]),
        ts=int(event.get("ts") or received_ms),
        received_ms=received_ms,
        body=jcs.dumps(event),
        source=source,
        env_id=env_id,
    )


# A POST of thousands of events must not hold the loop: timers (batch timeouts, sleeps) and other
# requests get a turn between slices of this many events.
_YIELD_EVERY = 250


async def take_events(items: list[Any], *, now_ms: int, max_bytes: int, body_size: int | None,
                      finish: Callable[[int, dict[str, Any]], StoredEvent]) -> tuple[list[StoredEvent], str | None]:
    """Validate events sent in one call, as upstream's Event API does, on every path that creates
    events (``POST /e``, ``POST /v1/events``, GraphQL ``sendEvents``).

    Events are taken in order up to the first invalid one; at most ``MAX_EVENTS_PER_REQUEST``
    are taken. Returns the events taken (``finish(position, event)`` renders each) and the error
    that ended the call, if any. ``body_size`` is the size of a body holding one event, which is
    that event's size; without it each event's size is measured.
    """
    single = len(items) == 1
    taken: list[StoredEvent] = []
    error: str | None = None
    for index, raw in enumerate(items[:MAX_EVENTS_PER_REQUEST], start=1):
        if index % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        label = "" if single else f"event {index}: "
        try:
            # normalizing first: it refuses an event nested too deeply to be measured
            event = normalize_incoming(raw, now_ms)
        except EventValidationError as exc:
            error = label + str(exc)
            break
        size = body_size if single and body_size is not None else len(orjson.dumps(raw))
        if size > max_bytes:
            error = label + f"Event is over the max size: Max {max_bytes} bytes / Size {size} bytes"
            break
        taken.append(finish(index, event))
    if error is None and len(items) > MAX_EVENTS_PER_REQUEST:
        error = f"Cannot have more than {MAX_EVENTS_PER_REQUEST} events in a batch"
    return taken, error


def enqueue_events(batch: Batch, events: list[StoredEvent], now_ms: int,
                   listens: Callable[[str], bool] | None = None) -> None:
    """Store events and a job that matches them against triggers and pauses, atomically.

    With ``listens``, only events something could react to go into the job (and with none,
    there is no job): a pause only matches events that arrive after it, and triggers act when an
    event arrives, so an event nobody listens for now never will. An event whose runs the same
    batch starts (``started``) needs no job either.
    """
    if not events:
        return
    batch.add(InsertEvents(events))
    ids = [e.internal_id for e in events if not e.started and (listens is None or listens(e.name))]
    if ids:
        batch.add(Enqueue(Job(id=f"events:{ids[0]}", kind=JobKind.EVENTS, due_ms=now_ms, payload={"ids": ids})))


def event_dict(ev: StoredEvent) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(ev.body)
    return out
