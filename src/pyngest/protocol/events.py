"""Events as they cross the wire (PROTOCOL.md §1).

An event is a JSON object: ``name`` (required), ``data`` (object), ``user`` (object,
deprecated), ``id`` (sender's idempotency key), ``ts`` (unix ms), ``v`` (version). Unknown keys
are kept.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

INTERNAL_PREFIX = "inngest/"
FN_FAILED = "inngest/function.failed"
FN_FINISHED = "inngest/function.finished"
FN_CANCELLED = "inngest/function.cancelled"
FN_INVOKED = "inngest/function.invoked"
CRON_EVENT = "inngest/scheduled.timer"

MAX_EVENTS_PER_REQUEST = 5000
DEFAULT_MAX_EVENT_BYTES = 3 * 1024 * 1024
# Levels of JSON objects and arrays in one event, the event object itself being the first. Event
# bodies are stored as canonical JSON and wrapped in other documents (execution requests, API
# answers): the limit leaves room under the serializer's own (255 levels).
MAX_EVENT_DEPTH = 100
# ts must lie in [1980-01-01, 2100-01-01)
MIN_TS_MS = 315_532_800_000
MAX_TS_MS = 4_102_444_800_000
# The key in event data that carries server metadata (invoke correlation etc.).
INTERNAL_DATA_KEY = "_inngest"


class Event(TypedDict):
    name: str
    data: dict[str, Any]
    user: NotRequired[dict[str, Any]]
    id: NotRequired[str]
    ts: NotRequired[int]
    v: NotRequired[str]


class EventValidationError(ValueError):
    pass


def is_internal(name: str) -> bool:
    return name[: len(INTERNAL_PREFIX)].lower() == INTERNAL_PREFIX


def normalize_incoming(raw: Any, now_ms: int, *, allow_internal: bool = False) -> dict[str, Any]:
    """Validate one incoming event and fill the server-side defaults.

    Returns a new dict; raises EventValidationError with a message a sender can act on.
    """
    if not isinstance(raw, dict):
        raise EventValidationError(
            f"an event must be a JSON object, got {_json_type(raw)}"
        )
    check_depth(raw)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise EventValidationError("event name is empty: every event needs a non-empty 'name'")
    if not allow_internal and is_internal(name):
        raise EventValidationError(f"event name is reserved for internal use: {name}")
    data = raw.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise EventValidationError(
            f"event 'data' must be a JSON object, got {_json_type(data)}"
        )
    else:
        data = dict(data)
    if not allow_internal:
        # External events must not carry server metadata: forwarded invoke data would
        # otherwise resume someone else's invoke.
        data.pop(INTERNAL_DATA_KEY, None)
    user = raw.get("user")
    if user is None:
        user = {}
    elif not isinstance(user, dict):
        raise EventValidationError(f"event 'user' must be a JSON object, got {_json_type(user)}")
    ts = raw.get("ts")
    if ts is None or ts == 0:
        ts = now_ms
    elif isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise EventValidationError(f"event 'ts' must be unix milliseconds, got {_json_type(ts)}")
    else:
        ts = int(ts)
        if ts < MIN_TS_MS:
            raise EventValidationError("timestamp is before Jan 1, 1980 ('ts' is unix milliseconds)")
        if ts >= MAX_TS_MS:
            raise EventValidationError("timestamp is after Jan 1, 2100 ('ts' is unix milliseconds)")
    event_id = raw.get("id")
    if event_id is not None and not isinstance(event_id, str):
        if isinstance(event_id, (int, float)) and not isinstance(event_id, bool):
            event_id = str(event_id)
        else:
            raise EventValidationError(f"event 'id' must be a string, got {_json_type(event_id)}")
    out = dict(raw)
    out["name"] = name
    out["data"] = data
    out["user"] = user
    out["ts"] = ts
    if event_id:
        out["id"] = event_id
    else:
        out.pop("id", None)
    v = raw.get("v")
    if v is not None and not isinstance(v, str):
        raise EventValidationError(f"event 'v' must be a string, got {_json_type(v)}")
    return out


def check_depth(event: dict[str, Any]) -> None:
    """Raise EventValidationError if ``event`` nests deeper than ``MAX_EVENT_DEPTH``."""
    if nested_deeper_than(event, MAX_EVENT_DEPTH):
        raise EventValidationError(
            f"event is nested too deeply: JSON objects and arrays may nest at most {MAX_EVENT_DEPTH} "
            "levels in an event (the event object is the first level)"
        )


def nested_deeper_than(value: Any, limit: int) -> bool:
    """True when ``value`` has more than ``limit`` levels of dicts and lists (no recursion, so
    any depth is safe to ask about)."""
    level = [value] if isinstance(value, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        inner: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            inner.extend(c for c in children if isinstance(c, (dict, list)))
        level = inner
    return False


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def trigger_candidates(name: str) -> list[str]:
    """Trigger names that match an event name: itself and each wildcard prefix (§1.5).

    ``app/user.created`` → ``app/user.created``, ``app/*``, ``app/user.*``.
    """
    out = [name]
    for i, ch in enumerate(name):
        if ch in "/.":
            out.append(name[: i + 1] + "*")
    return out
