"""Matching one event against many stored expressions without evaluating them all.

``ExpressionIndex`` holds expressions grouped in buckets (the event name). For an incoming
event it finds candidates through the expressions' *anchors* (``predicates.anchors``): an
equality is a hash lookup on the event's value at that path, a range a bisection of a sorted
list of bounds, ``== null`` a set consulted when the value is null or missing. Expressions
with no anchor (nothing indexable is required for them to be true) are kept per bucket and
always evaluated. Every candidate is then checked against its whole formula in Python and
confirmed by its compiled CEL program, so the index never reports a false match, and since
an expression can only be true when one of its anchors fires, it never misses one.

``PauseIndex`` (waitForEvent/cancelOn/invoke pauses, matched on ``async``) and
``TriggerIndex`` (function ``if`` expressions, matched on ``event``, with wildcard event
names) are thin wrappers. Adding and removing cost a few dict operations, or O(log n) for
range anchors. Not thread-safe: use it from one thread (the server's event loop).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from itertools import islice
from typing import Any

from sortedcontainers import SortedList

from pyngest.clock import Clock
from pyngest.expr.analysis import Path
from pyngest.expr.compiler import compile
from pyngest.expr.predicates import (
    ABSENT,
    Const,
    Eq,
    Formula,
    IsNull,
    Leaf,
    Range,
    anchors,
    eq_key,
    may_match,
    order_class,
    walk,
)
from pyngest.expr.program import Program, Shape, matches_many

_INF = float("inf")
ALWAYS: Formula = Const(True)
_Item = tuple[Any, int, float]  # (bound, flag, sequence number; ±inf as bisection probes)


class _Entry:
    __slots__ = ("key", "bucket", "program", "formula", "leaves", "tokens")

    def __init__(
        self, key: Hashable, bucket: str, program: Program | None, formula: Formula
    ) -> None:
        self.key = key
        self.bucket = bucket
        self.program = program
        self.formula = formula
        self.leaves: tuple[Leaf, ...] | None = None  # None: evaluated for every event
        self.tokens: tuple[object, ...] | None = None  # where range anchors were filed


class _Ranges:
    """Range anchors on one path: ``above`` holds ``> >=`` bounds, ``below`` holds ``< <=``.

    Items are ``(bound, flag, seq)`` so that tuple order puts exactly the firing ones on one
    side of a bisection: for ``above`` flag 0 is ``>=`` and 1 is ``>``; for ``below`` flag 1
    is ``<=`` and 0 is ``<``.
    """

    __slots__ = ("above", "below", "when_null", "entries")

    def __init__(self) -> None:
        self.above: dict[str, SortedList[_Item]] = {"n": SortedList(), "s": SortedList()}
        self.below: dict[str, SortedList[_Item]] = {"n": SortedList(), "s": SortedList()}
        self.when_null: set[_Entry] = set()
        self.entries: dict[float, _Entry] = {}

    def add(self, leaf: Range, entry: _Entry, seq: int) -> tuple[bool, _Item]:
        upper = leaf.op in (">", ">=")
        flag = (1 if leaf.op == ">" else 0) if upper else (1 if leaf.op == "<=" else 0)
        item = (leaf.bound, flag, seq)
        (self.above if upper else self.below)[leaf.order].add(item)
        self.entries[seq] = entry
        if leaf.fires_when_null:
            self.when_null.add(entry)
        return upper, item

    def discard(self, leaf: Range, entry: _Entry, token: tuple[bool, _Item]) -> None:
        upper, item = token
        (self.above if upper else self.below)[leaf.order].discard(item)
        self.entries.pop(item[2], None)
        self.when_null.discard(entry)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def firing(self, value: object) -> Iterator[_Entry]:
        entries = self.entries
        if value is ABSENT:
            for items in self.below.values():
                for item in items:
                    yield entries[item[2]]
            return
        if value is None:
            yield from self.when_null
            return
        cls = order_class(value)
        if cls is None:
            return
        above = self.above[cls]
        for item in islice(above, 0, above.bisect_left((value, 1, -_INF))):
            yield entries[item[2]]
        below = self.below[cls]
        for item in islice(below, below.bisect_right((value, 0, _INF)), None):
            yield entries[item[2]]


class _Bucket:
    __slots__ = ("equal", "null", "ranges", "always", "size")

    def __init__(self) -> None:
        # path -> value key -> the entry, or a set of entries when several share the key
        self.equal: dict[Path, dict[Hashable, _Entry | set[_Entry]]] = {}
        self.null: dict[Path, set[_Entry]] = {}
        self.ranges: dict[Path, _Ranges] = {}
        self.always: dict[_Entry, None] = {}
        self.size = 0


class ExpressionIndex:
    """Expressions matched against events bound to ``variable`` ("async" or "event")."""

    def __init__(self, variable: str, *, clock: Clock | None = None) -> None:
        """``clock`` is what ``now()`` in the stored expressions reads (real time if None)."""
        if variable not in ("async", "event"):
            raise ValueError("variable must be 'async' or 'event'")
        self.variable = variable
        self.clock = clock
        self._entries: dict[Hashable, _Entry] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def has_bucket(self, bucket: str) -> bool:
        """Is anything stored under ``bucket`` (an event name or trigger pattern)?"""
        return bucket in self._buckets

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def add(self, key: Hashable, bucket: str, expression: str | None) -> None:
        """Store ``expression`` (None: always true) under ``key``, replacing any previous one.
        Raises ExpressionError for an invalid expression."""
        if expression is None or not expression.strip():
            program, formula = None, ALWAYS
        else:
            program = compile(expression, cache=False)
            formula = program.shape.formula(self.variable, program.values)
        if key in self._entries:
            self.remove(key)
        entry = _Entry(key, bucket, program, formula)
        b = self._buckets.get(bucket)
        if b is None:
            b = self._buckets[bucket] = _Bucket()
        found = anchors(formula)
        if found is None:
            b.always[entry] = None
        else:
            # tuple(dict...): "a == 1 || a == 1" files one anchor
            entry.leaves = tuple(dict.fromkeys(found))
            tokens = tuple(self._file(b, leaf, entry) for leaf in entry.leaves)
            if any(t is not None for t in tokens):
                entry.tokens = tokens
        b.size += 1
        self._entries[key] = entry

    def remove(self, key: Hashable) -> bool:
        """Forget ``key``; False if it was not there."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        b = self._buckets[entry.bucket]
        if entry.leaves is None:
            del b.always[entry]
        else:
            tokens = entry.tokens or (None,) * len(entry.leaves)
            for leaf, token in zip(entry.leaves, tokens, strict=True):
                self._unfile(b, leaf, entry, token)
        b.size -= 1
        if b.size == 0:
            del self._buckets[entry.bucket]
        return True

    def match(self, bucket: str, payload: Mapping[str, Any]) -> list[Hashable]:
        """Keys in ``bucket`` whose expression is true for ``payload``, in no set order."""
        b = self._buckets.get(bucket)
        if b is None:
            return []
        resolved: dict[Path, object] = {}
        candidates: dict[_Entry, None] = {}
        for path, table in b.equal.items():
            value = resolved[path] = walk(payload, path)
            key = ("s", value) if type(value) is str else eq_key(value)  # the common case first
            hit = table.get(key) if key is not None else None
            if hit is None:
                continue
            if isinstance(hit, set):
                candidates.update(dict.fromkeys(hit))
            else:
                candidates[hit] = None

        def value_at(path: Path) -> object:
            found = resolved.get(path, resolved)
            if found is resolved:
                found = resolved[path] = walk(payload, path)
            return found

        for path, entries in b.null.items():
            value = value_at(path)
            if value is ABSENT or value is None:
                candidates.update(dict.fromkeys(entries))
        for path, ranges in b.ranges.items():
            candidates.update(dict.fromkeys(ranges.firing(value_at(path))))
        candidates.update(b.always)
        if not candidates:
            return []

        # Check each candidate's formula in Python, then confirm the survivors with CEL,
        # one call per shape.
        by_shape: dict[Shape, list[_Entry]] = {}
        matched: list[Hashable] = []
        for entry in candidates:
            if not may_match(entry.formula, value_at):
                continue
            if entry.program is None:
                matched.append(entry.key)
            else:
                by_shape.setdefault(entry.program.shape, []).append(entry)
        inputs: dict[str, Any] = {"clock": self.clock}
        inputs["async_" if self.variable == "async" else "event"] = payload
        for group in by_shape.values():
            programs = [e.program for e in group if e.program is not None]
            for candidate, confirmed in zip(group, matches_many(programs, **inputs), strict=True):
                if confirmed:
                    matched.append(candidate.key)
        return matched

    # -- filing anchors -----------------------------------------------------------------------

    def _file(self, b: _Bucket, leaf: Leaf, entry: _Entry) -> object:
        if isinstance(leaf, Eq):
            table = b.equal.setdefault(leaf.path, {})
            held = table.get(leaf.key)
            if held is None:
                table[leaf.key] = entry
            elif isinstance(held, _Entry):
                table[leaf.key] = {held, entry}
            else:
                held.add(entry)
            return None
        if isinstance(leaf, IsNull):
            b.null.setdefault(leaf.path, set()).add(entry)
            return None
        self._seq += 1
        return b.ranges.setdefault(leaf.path, _Ranges()).add(leaf, entry, self._seq)

    def _unfile(self, b: _Bucket, leaf: Leaf, entry: _Entry, token: Any) -> None:
        if isinstance(leaf, Eq):
            table = b.equal[leaf.path]
            held = table.get(leaf.key)
            if held is entry:
                del table[leaf.key]
            elif isinstance(held, set):
                held.discard(entry)
                if len(held) == 1:
                    table[leaf.key] = next(iter(held))
            if not table:
                del b.equal[leaf.path]
        elif isinstance(leaf, IsNull):
            entries = b.null[leaf.path]
            entries.discard(entry)
            if not entries:
                del b.null[leaf.path]
        elif isinstance(leaf, Range):
            ranges = b.ranges[leaf.path]
            ranges.discard(leaf, entry, token)
            if not ranges:
                del b.ranges[leaf.path]


class PauseIndex:
    """Pending pauses (waitForEvent, cancelOn, invoke results) by event name.

    Store each pause's *interpolated* expression (``interpolate``): only ``async.*`` — the
    incoming event — is left to match on.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._index = ExpressionIndex("async", clock=clock)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, pause_id: object) -> bool:
        return pause_id in self._index

    def add(self, pause_id: Hashable, event_name: str, expression: str | None) -> None:
        self._index.add(pause_id, event_name, expression)

    def remove(self, pause_id: Hashable) -> bool:
        return self._index.remove(pause_id)

    def listens(self, event_name: str) -> bool:
        """Does any pause wait for events of this name?"""
        return self._index.has_bucket(event_name)

    def match(self, event: Mapping[str, Any]) -> list[Hashable]:
        """Ids of the pauses ``event`` (with its ``name``) satisfies."""
        return self._index.match(str(event.get("name", "")), event)


def wildcard_names(name: str) -> list[str]:
    """The trigger names an event name matches: itself and ``prefix/*``, ``prefix.*`` forms
    for each ``/`` or ``.`` in it (``app/user.created`` -> ``app/*``, ``app/user.*``)."""
    names = [name]
    for i, ch in enumerate(name):
        if ch in "/.":
            names.append(name[: i + 1] + "*")
    return names


class TriggerIndex:
    """Event triggers of functions, with their optional ``if`` expression over ``event``.

    Keys are the caller's (e.g. ``(function_id, trigger_number)``); a function with two
    matching triggers is reported twice, and the caller runs it once.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._index = ExpressionIndex("event", clock=clock)

    def __len__(self) -> int:
        return len(self._index)

    def add(self, key: Hashable, event_pattern: str, expression: str | None) -> None:
        self._index.add(key, event_pattern, expression)

    def remove(self, key: Hashable) -> bool:
        return self._index.remove(key)

    def listens(self, event_name: str) -> bool:
        """Could an event of this name trigger anything (by name or wildcard)?"""
        return any(self._index.has_bucket(p) for p in wildcard_names(event_name))

    def match(self, event: Mapping[str, Any]) -> list[Hashable]:
        name = str(event.get("name", ""))
        found: list[Hashable] = []
        for pattern in wildcard_names(name):
            found.extend(self._index.match(pattern, event))
        return found
