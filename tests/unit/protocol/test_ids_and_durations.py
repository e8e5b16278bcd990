import base64

import pytest

from pyngest.protocol import durations, ids, step_ids
from pyngest.protocol.events import EventValidationError, normalize_incoming, trigger_candidates


def test_seeded_ids_are_deterministic_and_distinct_per_index() -> None:
    entropy = bytes(range(10))
    seed = f"1743130137367,{base64.b64encode(entropy).decode()}"
    first = ids.seeded_ulid(seed, 1)
    assert first == ids.seeded_ulid(seed, 1)
    assert first != ids.seeded_ulid(seed, 2)
    assert ids.timestamp_ms(first) == 1743130137367
    # the index is added to the last four entropy bytes, big-endian
    value = ids.decode(first)
    assert (value & 0xFFFFFFFF) == int.from_bytes(entropy[6:], "big") + 1


@pytest.mark.parametrize("bad", ["", "x", "0,AAAA", "1,notbase64!", "1,AAAA"])
def test_invalid_seeds_give_none(bad: str) -> None:
    assert ids.seeded_ulid(bad, 1) is None


def test_generated_ulids_are_monotonic() -> None:
    gen = ids.Generator()
    values = [gen.new(1000) for _ in range(100)]
    assert values == sorted(values)
    assert len(set(values)) == 100


def test_step_id_hashing_counts_repeats() -> None:
    counter = step_ids.StepIdCounter()
    a0, _ = counter.next("a")
    a1, n = counter.next("a")
    assert n == 1
    assert a0 == step_ids.hash_step_id("a")
    assert a1 == step_ids.hash_step_id("a:1")


@pytest.mark.parametrize(
    "text,ms",
    [("30s", 30_000), ("1h30m", 5_400_000), ("2d", 172_800_000), ("1w", 604_800_000),
     ("1.5h", 5_400_000), ("100ms", 100), ("0", 0)],
)
def test_durations(text: str, ms: int) -> None:
    assert durations.parse_ms(text) == ms


def test_duration_errors_are_actionable() -> None:
    with pytest.raises(durations.DurationError, match="like '30s'"):
        durations.parse_ms("soon")
    with pytest.raises(durations.DurationError, match="not allowed"):
        durations.parse_ms("1d", allow_days=False)


def test_event_validation() -> None:
    ev = normalize_incoming({"name": "a", "data": {"_inngest": {"x": 1}, "k": 1}}, now_ms=5_000_000_000_00)
    assert ev["data"] == {"k": 1} and ev["user"] == {} and ev["ts"] == 5_000_000_000_00
    with pytest.raises(EventValidationError, match="reserved"):
        normalize_incoming({"name": "inngest/function.failed"}, now_ms=1)
    with pytest.raises(EventValidationError, match="name is empty"):
        normalize_incoming({"data": {}}, now_ms=1)
    with pytest.raises(EventValidationError, match="must be a JSON object"):
        normalize_incoming({"name": "a", "data": [1]}, now_ms=1)
    with pytest.raises(EventValidationError, match="1980"):
        normalize_incoming({"name": "a", "ts": 5}, now_ms=1)


def test_wildcard_trigger_candidates() -> None:
    assert trigger_candidates("app/user.created") == ["app/user.created", "app/*", "app/user.*"]
