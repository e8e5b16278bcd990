"""Shards: how the work of several server processes is divided.

Everything the engine serializes (a run's steps, a function's admission decisions for one flow
key, a concurrency partition, the pauses of a run) belongs to one *shard*, and each shard is
owned by one process at a time (scale-out: through a fenced lease in PostgreSQL). A process
runs the same single-node engine for the shards it owns, so within a shard behaviour is exactly
that of one node.

- A run's shard is written into its id (the low 10 bits of its ULID), so any operation on a run,
  its steps, jobs and pauses knows its shard without a lookup.
- Where a new run goes is decided by its function's flow control (:func:`placement`): runs that
  share a serializing decision (a rate limit, throttle, debounce, batch, singleton or concurrency
  key) share a shard; runs of a function with none of these spread over all shards.

One node (SQLite) is the degenerate case: one shard, always owned (:class:`SingleNode`).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from pyngest.protocol import ids
from pyngest.server.exprs import evaluate
from pyngest.server.flow.limits import key_hash

if TYPE_CHECKING:
    from pyngest.server.registry import Function

MAX_SHARDS = 1024  # a shard number fits the 10 low bits of a run id
_SHARD_BITS = 10
_SHARD_MASK = (1 << _SHARD_BITS) - 1

# Admission decisions that must see every event of their key, in order.
SERIALIZING = ("rateLimit", "throttle", "debounce", "batchEvents", "singleton")
# All functions with an env- or account-scoped concurrency key share one counter space, so they
# share one shard (see docs/architecture.md: they do not spread over processes).
SCOPED = "scoped-concurrency"


class SingleNode:
    """One process owns everything: no placement, no cursors."""

    count = 1
    sharded = False

    def owns(self, shard: int) -> bool:
        return True

    def owns_run(self, run_id: str) -> bool:
        return True

    def owns_any(self) -> bool:
        return True

    def active(self, shard: int, position: tuple[int, int]) -> bool:
        return True

    def of_run(self, run_id: str) -> int:
        return 0

    def for_key(self, key: str) -> int:
        return 0

    def new_run_id(self, ms: int, shard: int) -> str:
        return ids.new_ulid(ms)

    def place(self, fn: Function, event: dict[str, Any], internal_id: str) -> int:
        return 0


class Sharded:
    """``count`` shards, of which this process owns those in ``owned`` (shard → lease epoch).

    Ownership and match cursors are kept current by the lease manager; everything else only
    reads them."""

    sharded = True

    def __init__(self, count: int) -> None:
        if not 1 <= count <= MAX_SHARDS:
            raise ValueError(f"the shard count must be between 1 and {MAX_SHARDS}, not {count}")
        self.count = count
        self.owned: dict[int, int] = {}  # shard -> epoch of our lease
        self.cursors: dict[int, tuple[int, int]] = {}  # shard -> (xid, seq) matched up to
        self._ids = _TaggedGenerator()

    def owns(self, shard: int) -> bool:
        return shard in self.owned

    def owns_run(self, run_id: str) -> bool:
        return self.of_run(run_id) in self.owned

    def owns_any(self) -> bool:
        return bool(self.owned)

    def active(self, shard: int, position: tuple[int, int]) -> bool:
        """Should an event at log ``position`` be matched for ``shard`` here? Only if we own the
        shard and its cursor is before the position."""
        return shard in self.owned and position > self.cursors.get(shard, (0, 0))

    def of_run(self, run_id: str) -> int:
        try:
            return ids.low_bits(run_id) % self.count
        except ValueError:
            return 0

    def for_key(self, key: str) -> int:
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count

    def new_run_id(self, ms: int, shard: int) -> str:
        return self._ids.new(ms, shard)

    def place(self, fn: Function, event: dict[str, Any], internal_id: str) -> int:
        return self.for_key(placement(fn, event, internal_id))


def placement(fn: Function, event: dict[str, Any], internal_id: str) -> str:
    """The key that decides a new run's shard.

    Runs whose admission or concurrency decisions depend on each other must be in one shard:
    - an env/account-scoped concurrency key: every such function, in one shard;
    - all serializing controls keyed by the same expression: the function and that key's value;
    - any other mix (or a control without a key): the function;
    - none: the event itself, so the function's runs spread over every shard.
    """
    cfg = fn.config
    keys: set[str] = set()
    for name in SERIALIZING:
        block = cfg.get(name)
        if isinstance(block, dict):
            keys.add(str(block.get("key") or ""))
    for c in cfg.get("concurrency") or []:
        if int(c.get("limit") or 0) <= 0:
            continue
        if c.get("key") and (c.get("scope") or "fn") != "fn":
            return SCOPED
        keys.add(str(c.get("key") or ""))
    if not keys:
        return "event:" + internal_id
    if len(keys) == 1:
        (expression,) = keys
        if expression:
            return f"{fn.id}:{key_hash(evaluate(expression, event=event))}"
    return fn.id


class _TaggedGenerator:
    """Monotonic ULIDs whose 10 low bits carry a tag (the shard). Within one millisecond the
    entropy above the tag increments, so ids stay unique and ordered whatever their tags."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last = 0
        self._rng = random.Random(os.urandom(32))

    def new(self, ms: int | None, tag: int) -> str:
        if ms is None:
            ms = time.time_ns() // 1_000_000
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                high = self._last + 1
            else:
                high = self._rng.getrandbits(68)  # headroom below 70 bits for increments
            self._last_ms = ms
            self._last = high
        return ids.encode((ms << 80) | (high << _SHARD_BITS) | (tag & _SHARD_MASK))
