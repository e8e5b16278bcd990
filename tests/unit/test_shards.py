"""Which shard a run and an admission decision belong to (scale-out placement)."""

from __future__ import annotations

from typing import Any

from pyngest.protocol import ids
from pyngest.server.registry import Function
from pyngest.server.shards import SCOPED, Sharded, SingleNode, placement


def fn(**config: Any) -> Function:
    return Function(id="f1", app_id="a", slug="app-f", name="f", config=config, version=1, url="",
                    max_attempts=1, event_triggers=[], cron_triggers=[])


EVENT = {"name": "e", "data": {"user": "u1", "account": "a1"}}


def test_run_ids_carry_their_shard_and_stay_ordered_within_a_millisecond() -> None:
    shards = Sharded(32)
    made = [shards.new_run_id(1_800_000_000_000, n % 32) for n in range(200)]
    assert [shards.of_run(r) for r in made] == [n % 32 for n in range(200)]
    assert made == sorted(made) and len(set(made)) == 200
    assert all(ids.is_ulid(r) for r in made)


def test_placement_follows_the_serializing_flow_control() -> None:
    # nothing that orders runs: each event goes its own way
    assert placement(fn(), EVENT, "ev1") == "event:ev1"
    # one key expression for every control: the function and that key's value
    keyed = placement(fn(rateLimit={"limit": 1, "period": "1m", "key": "event.data.user"},
                         concurrency=[{"limit": 2, "key": "event.data.user"}]), EVENT, "ev1")
    assert keyed.startswith("f1:") and keyed == placement(fn(throttle={"limit": 1, "period": "1s",
                                                                      "key": "event.data.user"}), EVENT, "ev2")
    # a control without a key, or two different keys: the whole function
    assert placement(fn(concurrency=[{"limit": 5}]), EVENT, "ev1") == "f1"
    assert placement(fn(debounce={"period": "1s", "key": "event.data.user"},
                        singleton={"key": "event.data.account", "mode": "skip"}), EVENT, "ev1") == "f1"
    # an env- or account-scoped concurrency key: one shard for every function that has one
    assert placement(fn(concurrency=[{"limit": 5, "key": "event.data.account", "scope": "env"}]), EVENT, "x") == SCOPED
    # a limit of 0 is no limit
    assert placement(fn(concurrency=[{"limit": 0}]), EVENT, "ev1") == "event:ev1"


def test_one_node_has_one_shard_it_always_owns() -> None:
    single = SingleNode()
    run_id = single.new_run_id(1_800_000_000_000, 7)
    assert single.of_run(run_id) == 0 and single.owns(0) and single.active(0, (1, 1))
    assert single.place(fn(concurrency=[{"limit": 1}]), EVENT, "ev") == 0


def test_a_shard_is_active_for_events_after_its_cursor_only_while_owned() -> None:
    shards = Sharded(4)
    shards.owned[1] = 3
    shards.cursors[1] = (100, 7)
    assert not shards.active(1, (100, 7)) and shards.active(1, (100, 8)) and shards.active(1, (101, 0))
    assert not shards.active(2, (200, 0))
