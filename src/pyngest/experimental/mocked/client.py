from __future__ import annotations

from typing import Any

from pyngest.sdk.client import Inngest as _Inngest
from pyngest.sdk.types import Event, SendInput, to_events

PLACEHOLDER_ID = "00000000000000000000000000"


class Inngest(_Inngest):
    """A client whose ``send`` sends nothing and returns placeholder ids."""

    def __init__(self, *, app_id: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("is_production", False)
        super().__init__(app_id=app_id, **kwargs)
        self.sent: list[Event] = []

    async def send(self, events: SendInput = None, *, skip_middleware: bool = False, **fields: Any) -> list[str]:
        return self.send_sync(events, skip_middleware=skip_middleware, **fields)

    def send_sync(self, events: SendInput = None, *, skip_middleware: bool = False, **fields: Any) -> list[str]:
        batch = to_events(events, fields)
        self.sent.extend(batch)
        return [PLACEHOLDER_ID for _ in batch]
