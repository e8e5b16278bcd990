"""Function configuration options: triggers and flow control (FEATURES.md §6, §7).

Each option renders itself as the JSON the server expects in ``/fn/register`` (PROTOCOL.md
§2.3), with the key order and ``None`` stripping of the official SDK, so registration
payloads of the two SDKs compare equal.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Literal

from pyngest.protocol import durations
from pyngest.sdk import errors

Duration = int | datetime.timedelta


def to_ms(value: Duration) -> int:
    """Milliseconds from an int (ms) or a timedelta."""
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.FunctionConfigInvalidError(
            f"a duration must be an int (milliseconds) or a datetime.timedelta, got {type(value).__name__}"
        )
    return value


def duration_str(value: Duration) -> str:
    """A duration as a wire string (``30s``, ``5m``...), whole seconds of at least 1s."""
    ms = to_ms(value)
    if ms < 1000:
        raise errors.FunctionConfigInvalidError("duration must be at least 1 second")
    if ms % 1000:
        raise errors.FunctionConfigInvalidError("duration must be a whole number of seconds")
    return durations.format_ms(ms)


def _opt_duration(value: Duration | None) -> str | None:
    return None if value is None else duration_str(value)


def _check_str(value: object, what: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise errors.FunctionConfigInvalidError(f"{what}: expected a string, got {type(value).__name__}")


def _check_int(value: object, what: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.FunctionConfigInvalidError(f"{what}: expected an int, got {type(value).__name__}")


def _check_duration(value: object, what: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, datetime.timedelta)):
        raise errors.FunctionConfigInvalidError(
            f"{what}: expected milliseconds (int) or a datetime.timedelta, got {type(value).__name__}"
        )


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass
class TriggerEvent:
    """Run the function when an event named ``event`` arrives (and ``expression`` holds)."""

    event: str
    expression: str | None = None

    def __post_init__(self) -> None:
        _check_str(self.event, "TriggerEvent.event", optional=False)
        _check_str(self.expression, "TriggerEvent.expression")

    def to_wire(self) -> dict[str, Any]:
        return _strip({"event": self.event, "expression": self.expression})


@dataclass
class TriggerCron:
    """Run the function on a cron schedule (optionally ``TZ=Zone`` prefixed)."""

    cron: str
    jitter: str | None = None

    def __post_init__(self) -> None:
        _check_str(self.cron, "TriggerCron.cron", optional=False)
        _check_str(self.jitter, "TriggerCron.jitter")

    def to_wire(self) -> dict[str, Any]:
        return _strip({"cron": self.cron, "jitter": self.jitter})


@dataclass
class Batch:
    """Collect up to ``max_size`` events (or wait ``timeout``) and run once with all of them."""

    max_size: int
    timeout: Duration | None = None
    key: str | None = None
    if_exp: str | None = None

    def __post_init__(self) -> None:
        _check_int(self.max_size, "Batch.max_size")
        _check_duration(self.timeout, "Batch.timeout")
        _check_str(self.key, "Batch.key")
        _check_str(self.if_exp, "Batch.if_exp")

    def to_wire(self) -> dict[str, Any]:
        return _strip(
            {"maxSize": self.max_size, "timeout": _opt_duration(self.timeout), "key": self.key, "if": self.if_exp}
        )


@dataclass
class Cancel:
    """Cancel a run when ``event`` arrives (and ``if_exp`` holds), within ``timeout``."""

    event: str
    if_exp: str | None = None
    timeout: Duration | None = None

    def __post_init__(self) -> None:
        _check_str(self.event, "Cancel.event", optional=False)
        _check_str(self.if_exp, "Cancel.if_exp")
        _check_duration(self.timeout, "Cancel.timeout")

    def to_wire(self) -> dict[str, Any]:
        return _strip({"event": self.event, "if": self.if_exp, "timeout": _opt_duration(self.timeout)})


@dataclass
class Concurrency:
    """Limit concurrently executing steps, per ``key`` and ``scope`` (fn, env or account)."""

    limit: int
    key: str | None = None
    scope: Literal["account", "env", "fn"] | None = None

    def __post_init__(self) -> None:
        _check_int(self.limit, "Concurrency.limit")
        _check_str(self.key, "Concurrency.key")
        if self.scope not in (None, "account", "env", "fn"):
            raise errors.FunctionConfigInvalidError(
                f"Concurrency.scope: expected 'fn', 'env' or 'account', got {self.scope!r}"
            )

    def to_wire(self) -> dict[str, Any]:
        return _strip({"key": self.key, "limit": self.limit, "scope": self.scope})


@dataclass
class Debounce:
    """Run once ``period`` after the last matching event (at most ``timeout`` after the first)."""

    period: Duration
    key: str | None = None
    timeout: Duration | None = None

    def __post_init__(self) -> None:
        _check_duration(self.period, "Debounce.period", optional=False)
        _check_str(self.key, "Debounce.key")
        _check_duration(self.timeout, "Debounce.timeout")

    def to_wire(self) -> dict[str, Any]:
        return _strip(
            {"key": self.key, "period": duration_str(self.period), "timeout": _opt_duration(self.timeout)}
        )


@dataclass
class Priority:
    """``run``: an expression giving seconds of head start (negative delays)."""

    run: str

    def __post_init__(self) -> None:
        _check_str(self.run, "Priority.run", optional=False)

    def to_wire(self) -> dict[str, Any]:
        return {"run": self.run}


@dataclass
class RateLimit:
    """At most ``limit`` runs per ``period`` (per ``key``); the excess is skipped."""

    limit: int
    period: Duration
    key: str | None = None

    def __post_init__(self) -> None:
        _check_int(self.limit, "RateLimit.limit")
        _check_duration(self.period, "RateLimit.period", optional=False)
        _check_str(self.key, "RateLimit.key")

    def to_wire(self) -> dict[str, Any]:
        return _strip({"key": self.key, "limit": self.limit, "period": duration_str(self.period)})


@dataclass(init=False)
class Throttle:
    """At most ``limit`` run starts per ``period`` (per ``key``); the excess is delayed.

    ``count`` is accepted as another name for ``limit``, as some docs pages write it.
    """

    limit: int
    period: Duration
    key: str | None = None
    burst: int | None = 1

    def __init__(
        self,
        limit: int | None = None,
        period: Duration | None = None,
        key: str | None = None,
        burst: int | None = 1,
        *,
        count: int | None = None,
    ) -> None:
        if limit is None:
            limit = count
        if limit is None or period is None:
            raise errors.FunctionConfigInvalidError("Throttle needs limit (or count) and period")
        _check_int(limit, "Throttle.limit")
        _check_duration(period, "Throttle.period", optional=False)
        _check_str(key, "Throttle.key")
        _check_int(burst, "Throttle.burst", optional=True)
        self.limit, self.period, self.key, self.burst = limit, period, key, burst

    def to_wire(self) -> dict[str, Any]:
        return _strip(
            {"key": self.key, "limit": self.limit, "period": duration_str(self.period), "burst": self.burst}
        )


@dataclass
class Timeouts:
    """Cancel a run not ``start``-ed in time after scheduling, or not ``finish``-ed after start."""

    start: Duration | None = None
    finish: Duration | None = None

    def __post_init__(self) -> None:
        _check_duration(self.start, "Timeouts.start")
        _check_duration(self.finish, "Timeouts.finish")

    def to_wire(self) -> dict[str, Any]:
        return _strip({"start": _opt_duration(self.start), "finish": _opt_duration(self.finish)})


@dataclass
class Singleton:
    """One active run per ``key``: ``skip`` new runs, or ``cancel`` the active one."""

    mode: Literal["skip", "cancel"]
    key: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("skip", "cancel"):
            raise errors.FunctionConfigInvalidError(
                f"Singleton.mode: expected 'skip' or 'cancel', got {self.mode!r}"
            )
        _check_str(self.key, "Singleton.key")

    def to_wire(self) -> dict[str, Any]:
        return _strip({"key": self.key, "mode": self.mode})


@dataclass
class Retries:
    attempts: int = field(default=0)

    def to_wire(self) -> dict[str, Any]:
        return {"attempts": self.attempts}


# A request stops taking on new steps after this long (then the server sends the next one):
# well inside the timeouts of common app servers (gunicorn's default is 30 s).
DEFAULT_CHECKPOINT_MAX_RUNTIME_MS = 10_000


@dataclass(frozen=True)
class Checkpointing:
    """Checkpointing settings: ``Inngest(checkpointing=...)``, ``create_function(checkpointing=...)``
(see :mod:`pyngest.sdk.checkpoint`).

    Args:
        max_runtime: how long one request may keep running new steps (ms or timedelta);
            after it, the request answers the classic way and the server sends the next.
    """

    max_runtime: int | datetime.timedelta = DEFAULT_CHECKPOINT_MAX_RUNTIME_MS

    def __post_init__(self) -> None:
        if to_ms(self.max_runtime) <= 0:
            raise errors.FunctionConfigInvalidError("checkpointing max_runtime must be positive")


CheckpointingOption = bool | Checkpointing | None
