"""Turning event dicts into stored events (canonical JSON, ids), shared by the event API, the
runner (cron, invoke) and the executor (system events)."""

from __future__ import annotations

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


def enqueue_events(batch: Batch, events: list[StoredEvent], now_ms: int) -> None:
    """Store events and a job that matches them against triggers and pauses, atomically."""
    if not events:
        return
    batch.add(InsertEvents(events))
    batch.add(
        Enqueue(
            Job(
                id=f"events:{events[0].internal_id}",
                kind=JobKind.EVENTS,
                due_ms=now_ms,
                payload={"ids": [e.internal_id for e in events]},
            )
        )
    )


def event_dict(ev: StoredEvent) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(ev.body)
    return out
