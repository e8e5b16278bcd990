"""A checkpointed step's ``timing`` (``a``: start, ``b``: duration, both in ns) as the history
row's start and end in ms: whatever an SDK sends there, the checkpoint is stored (never a 500),
with now and no duration for what is missing or not a number."""

from __future__ import annotations

from typing import Any

import pytest

from pyngest.server.api.sdk import _timing

NOW_MS = 1_800_000_000_000


@pytest.mark.parametrize(("timing", "expected"), [
    ({"a": 1_700_000_000_000 * 1_000_000, "b": 3_500_000}, (1_700_000_000_000, 1_700_000_000_003)),
    ({"a": 1.7e18, "b": 2e6}, (1_700_000_000_000, 1_700_000_000_002)),
    ({"b": 5_000_000}, (NOW_MS, NOW_MS + 5)),
    ({"a": "soon", "b": [1]}, (NOW_MS, NOW_MS)),
    ({"a": True, "b": False}, (NOW_MS, NOW_MS)),
    ({"a": None}, (NOW_MS, NOW_MS)),
    ("12:00", (NOW_MS, NOW_MS)),
    (None, (NOW_MS, NOW_MS)),
    ([1, 2], (NOW_MS, NOW_MS)),
])
def test_timing_takes_what_is_a_number_and_defaults_the_rest(timing: Any, expected: tuple[int, int]) -> None:
    assert _timing(timing, NOW_MS) == expected
