"""The ready queue's concurrency bookkeeping and the throttle's hand-out spacing."""

from __future__ import annotations

from pyngest.server.model import Job, JobKind
from pyngest.server.queue.partitions import ReadyQueue
from pyngest.server.queue.spacing import Spacing


def job(key: str, n: int = 0, shared: int = 1) -> Job:
    return Job(id=f"{key}:{n}", kind=JobKind.EXECUTE, due_ms=n,
               payload={"part": f"fn|{key}", "ck": [[key, 5], ["env", shared]]})


def test_a_freed_slot_wakes_exactly_one_waiting_partition() -> None:
    q = ReadyQueue()
    for k in "abcd":
        q.add(job(k))
    first = q.pop()
    assert first is not None and first.id == "a:0"
    assert q.pop() is None  # b, c, d now wait on the full env counter
    assert not q.has_candidates()
    q.release(first)
    assert len(q._turn) == 1  # only the longest waiting (b) is back in turn
    second = q.pop()
    assert second is not None and second.id == "b:0"


def test_a_woken_partition_that_cannot_use_the_slot_passes_it_on() -> None:
    q = ReadyQueue()
    q.add(job("a"))
    q.add(job("b"))
    q.add(job("c"))
    a = q.pop()
    assert a is not None and q.pop() is None  # b and c wait on env
    q.remove(q._parts["fn|b"].heap[0][3])  # b's job is cancelled while it waits
    q.release(a)
    nxt = q.pop()
    assert nxt is not None and nxt.id == "c:0"


def test_a_raised_limit_lets_further_waiters_in() -> None:
    q = ReadyQueue()
    for k in "abc":
        q.add(job(k, shared=1))
    a = q.pop()
    assert a is not None and q.pop() is None
    # the function is synced again with a limit of 3: the next jobs carry it
    for k in "bc":
        part = q._parts[f"fn|{k}"]
        part.heap[0][3].payload = job(k, shared=3).payload
    q.release(a)
    got = {q.pop().id, q.pop().id}  # type: ignore[union-attr]
    assert got == {"b:0", "c:0"}


def test_spacing_allows_a_burst_then_one_per_interval() -> None:
    s = Spacing()
    assert [s.hold_ms("k", 0, 1000.0, 2) for _ in range(3)] == [0, 0, 1000]
    assert s.hold_ms("k", 1000, 1000.0, 2) == 0
    assert s.hold_ms("k", 1000, 1000.0, 2) == 1000
    assert s.hold_ms("other", 1000, 1000.0, 2) == 0  # keys are independent


def test_functions_take_turns_and_a_run_keeps_its_place_in_its_queue() -> None:
    """Round-robin across partitions (a big backlog does not starve a small one); inside one,
    by run creation − priority, whatever the jobs' due times."""
    q = ReadyQueue()

    def step(fn: str, run: str, created: int, due: int, priority: int = 0) -> Job:
        return Job(id=f"{run}:{due}", kind=JobKind.EXECUTE, due_ms=due, run_id=run, priority=priority,
                   payload={"part": fn, "o": created})

    for n in range(5):
        q.add(step("big", f"r{n:02d}", created=n * 1000, due=n * 1000))
    q.add(step("small", "s00", created=10_000, due=10_000))
    assert [q.pop().id for _ in range(3)] == ["r00:0", "s00:10000", "r01:1000"]  # type: ignore[union-attr]
    q.add(step("big", "r00", created=0, due=50_000))  # the oldest run's next step: ahead of r02..r04
    q.add(step("big", "r09", created=9_000, due=9_000, priority=8))  # 9 s − 8 s: ahead of r02 too
    assert [q.pop().id for _ in range(5)] == ["r00:50000", "r09:9000", "r02:2000", "r03:3000", "r04:4000"]  # type: ignore[union-attr]
