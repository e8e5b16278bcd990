"""Turning event dicts into stored events (canonical JSON, ids), shared by the event API, the
runner (cron, invoke) and the executor (system events)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from pyngest.protocol import jcs
from pyngest.protocol.ids import new_ulid
from pyngest.server.model import Batch, Enqueue, InsertEvents, Job, JobKind, StoredEvent


def stored(event: dict[str, Any], *, received_ms: int, internal_id: str | None = None,
           source: str = "") -> StoredEvent:
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
    )


def enqueue_events(batch: Batch, events: list[StoredEvent], now_ms: int,
                   listens: Callable[[str], bool] | None = None) -> None:
    """Store events and a job that matches them against triggers and pauses, atomically.

    With ``listens``, only events something could react to go into the job (and with none,
    there is no job): a pause only matches events that arrive after it, and triggers act when an
    event arrives, so an event nobody listens for now never will.
    """
    if not events:
        return
    batch.add(InsertEvents(events))
    ids = [e.internal_id for e in events if listens is None or listens(e.name)]
    if ids:
        batch.add(Enqueue(Job(id=f"events:{ids[0]}", kind=JobKind.EVENTS, due_ms=now_ms, payload={"ids": ids})))


def event_dict(ev: StoredEvent) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(ev.body)
    return out
