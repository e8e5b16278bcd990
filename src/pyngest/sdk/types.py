"""The event model users send and receive, and small shared types.

``Event`` mirrors the official SDK's model (``name``, ``data``, ``id``, ``ts``) and its
pydantic-style helpers (``model_dump``, ``model_validate``) that the docs' pydantic guide
relies on, without making pydantic a dependency of the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from pyngest.sdk import errors

if TYPE_CHECKING:
    Logger: TypeAlias = logging.Logger | logging.LoggerAdapter[logging.Logger]
else:
    Logger = object

T = TypeVar("T")

JSON: TypeAlias = bool | int | float | str | Mapping[str, object] | Sequence[object] | None


class _Empty:
    """Marks "no value" where None is a valid value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<empty>"


EMPTY: Any = _Empty()
EmptySentinel = _Empty


class Event:
    """An event: ``name`` plus JSON ``data``; ``id`` (idempotency key) and ``ts`` (unix ms).

    ``user`` and ``v`` are optional and only sent when set.
    """

    __slots__ = ("name", "data", "id", "ts", "user", "v")

    def __init__(
        self,
        *,
        name: str,
        data: Mapping[str, object] | None = None,
        id: str = "",  # noqa: A002 - the wire name
        ts: int = 0,
        user: Mapping[str, object] | None = None,
        v: str | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise errors.BodyInvalidError(f"event name must be a string, got {type(name).__name__}")
        if data is None:
            data = {}
        elif not isinstance(data, Mapping):
            raise errors.BodyInvalidError(
                f"event data must be a dict, got {type(data).__name__}"
            )
        if not isinstance(id, str):
            raise errors.BodyInvalidError(f"event id must be a string, got {type(id).__name__}")
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise errors.BodyInvalidError(
                f"event ts must be an integer (unix milliseconds), got {type(ts).__name__}"
            )
        self.name = name
        self.data: Mapping[str, Any] = data
        self.id = id
        self.ts = ts
        self.user = user
        self.v = v

    @classmethod
    def from_wire(cls, raw: object) -> Event:
        """Build from a JSON object received from the server (strict on types)."""
        if not isinstance(raw, dict):
            raise errors.BodyInvalidError("an event must be a JSON object")
        user = raw.get("user")
        v = raw.get("v")
        return cls(
            name=raw.get("name"),  # type: ignore[arg-type]
            data=raw.get("data"),
            id=raw.get("id", ""),
            ts=raw.get("ts", 0),
            user=user if isinstance(user, dict) and user else None,
            v=v if isinstance(v, str) and v else None,
        )

    # pydantic-compatible helpers -------------------------------------------------------------

    @classmethod
    def model_validate(cls, obj: object) -> Event:
        if isinstance(obj, Event):
            return obj
        return cls.from_wire(obj)

    def model_dump(self, *, mode: str = "python", **_: object) -> dict[str, Any]:
        out: dict[str, Any] = {"data": dict(self.data), "id": self.id, "name": self.name, "ts": self.ts}
        if self.user is not None:
            out["user"] = dict(self.user)
        if self.v is not None:
            out["v"] = self.v
        return out

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def model_copy(self) -> Event:
        return Event(name=self.name, data=dict(self.data), id=self.id, ts=self.ts, user=self.user, v=self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash((self.name, self.id, self.ts))

    def __repr__(self) -> str:
        return f"Event(name={self.name!r}, data={dict(self.data)!r}, id={self.id!r}, ts={self.ts!r})"


SendInput: TypeAlias = "Event | Mapping[str, Any] | Sequence[Event | Mapping[str, Any]] | None"


class SendEventsResult:
    """What sending events returned: the accepted ids and, on failure, an error message."""

    __slots__ = ("error", "ids")

    def __init__(self, *, ids: list[str] | None = None, error: str | None = None) -> None:
        self.ids = ids if ids is not None else []
        self.error = error

    def __repr__(self) -> str:
        return f"SendEventsResult(ids={self.ids!r}, error={self.error!r})"


def to_events(events: SendInput, fields: dict[str, Any]) -> list[Event]:
    """Normalize what ``send`` accepts into a list of Events."""
    if events is None:
        if not fields:
            raise TypeError("send needs events: send(inngest.Event(name=...)) or send(name=..., data=...)")
        events = [fields]
    elif fields:
        raise TypeError(f"send got events and also {sorted(fields)}: pass one or the other")
    items = list(events) if isinstance(events, (list, tuple)) else [events]
    out: list[Event] = []
    for ev in items:
        if isinstance(ev, Event):
            out.append(ev)
        elif isinstance(ev, Mapping):
            out.append(Event(**{k: v for k, v in ev.items() if k in ("name", "data", "id", "ts", "user", "v")}))
        else:
            raise TypeError(f"send takes inngest.Event objects (or dicts), got {type(ev).__name__}")
    return out
