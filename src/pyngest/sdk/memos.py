"""Memoized step results of one request (PROTOCOL.md §4.3).

Linear replay: each memo is decoded only when its step asks for it, and removed with one
dict deletion. (The official SDK rebuilds the whole memo dict on every pop, which makes a run
with N memoized steps cost O(N²).)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyngest.sdk.types import EMPTY

_WRAPPER_KEYS = frozenset(("data", "error"))
_new = object.__new__


class MemoizedError:
    """A step's final error as stored by the server: ``name``, ``message``, ``stack``."""

    __slots__ = ("message", "name", "stack")

    def __init__(self, *, message: str, name: str, stack: str | None = None) -> None:
        self.message = message
        self.name = name
        self.stack = stack


class Output:
    """One memo: the step's ``data`` or its ``error``."""

    __slots__ = ("data", "error")

    def __init__(self, *, data: object = None, error: MemoizedError | None = None) -> None:
        self.data = data
        self.error = error

    @classmethod
    def from_raw(cls, raw: object) -> Output:
        # A value is a {data, error} wrapper only if it has no other keys and a well-formed
        # error; anything else (a waitForEvent's event, null) is the data itself. The official
        # SDK decides the same way with a strict model.
        if type(raw) is dict and raw.keys() <= _WRAPPER_KEYS:
            err = raw.get("error")
            if err is None:
                return cls(data=raw.get("data"))
            if (
                type(err) is dict
                and type(err.get("message")) is str
                and type(err.get("name")) is str
                and (err.get("stack") is None or type(err.get("stack")) is str)
            ):
                return cls(
                    data=raw.get("data"),
                    error=MemoizedError(message=err["message"], name=err["name"], stack=err.get("stack")),
                )
        return cls(data=raw)


class StepMemos:
    """Memoized outputs keyed by hashed step id."""

    __slots__ = ("_raw", "_parsed", "remaining")

    def __init__(self, raw: dict[str, Any]) -> None:
        self._raw = raw
        # the same dict, for the replay's "any memo left?" test once per step (no call); read only
        self.remaining: dict[str, Any] = raw
        self._parsed: dict[str, Output] = {}

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> StepMemos:
        return cls(dict(raw))

    @property
    def size(self) -> int:
        return len(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, hashed_id: str) -> bool:
        return hashed_id in self._raw

    def values(self) -> Iterator[Output]:
        """Every remaining memo, decoded (middleware uses this to decrypt them in place)."""
        for k in self._raw:
            yield self._get(k)

    def items(self) -> Iterator[tuple[str, Output]]:
        for k in self._raw:
            yield k, self._get(k)

    def _get(self, k: str) -> Output:
        out = self._parsed.get(k)
        if out is None:
            out = self._parsed[k] = Output.from_raw(self._raw[k])
        return out

    def pop(self, hashed_id: str) -> Output | Any:
        """Remove and return the memo, or ``EMPTY`` if the step has none."""
        raw = self._raw.pop(hashed_id, EMPTY)  # a memo is JSON (or a dict): never EMPTY
        if raw is EMPTY:
            return EMPTY
        if self._parsed:  # only middleware reading the memos decodes them ahead
            out = self._parsed.pop(hashed_id, None)
            if out is not None:
                return out
        if type(raw) is dict and len(raw) == 1 and "data" in raw:
            # a step's output, by far the most common memo: what from_raw makes of it, without
            # the call and the keyword arguments (once per memoized step of every replay)
            out = _new(Output)
            out.data, out.error = raw["data"], None
            return out
        return Output.from_raw(raw)
