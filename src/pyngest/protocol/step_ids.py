"""Hashed step ids (PROTOCOL.md §4.1).

The first use of a user step id hashes to ``sha1(id)``; the n-th repeat within one execution
(n >= 1) hashes ``id + ":" + n``. The server treats the result as opaque.
"""

from __future__ import annotations

import functools
import hashlib


@functools.lru_cache(maxsize=4096)
def hash_step_id(user_id: str, repeat: int = 0) -> str:
    # remembered: a function's step ids are hashed again on every replay of it (the SDK replays
    # from the top for each step), and the same few ids recur across its runs
    text = user_id if repeat == 0 else f"{user_id}:{repeat}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # noqa: S324 - protocol, not security


class StepIdCounter:
    """Hands out hashed ids for one execution, counting repeats of each user id.

    O(1) per step: a dict of counts, never rebuilt.
    """

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}  # user id -> uses so far

    def next(self, user_id: str) -> tuple[str, int]:
        """Return (hashed id, repeat index) for the next use of ``user_id``."""
        n = self.seen.get(user_id, 0)
        self.seen[user_id] = n + 1
        return hash_step_id(user_id, n), n
