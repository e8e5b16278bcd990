"""The pause book: what a pending pause costs in memory, and that sharing its parts changes
nothing it answers."""

from __future__ import annotations

import gc
import tracemalloc

import orjson

from pyngest.protocol.ids import new_ulid
from pyngest.protocol.step_ids import hash_step_id
from pyngest.server.executor.state import PauseBook
from pyngest.server.model import Pause, PauseKind

N = 20_000


def pause(i: int) -> Pause:
    """A waitForEvent pause built as the executor builds one: every string fresh (parsed from
    the SDK's answer or formatted), as are its data."""
    op = orjson.loads(orjson.dumps({"id": hash_step_id("wait-for-payment"), "name": "wait-for-payment",
                                    "opts": {"event": "shop/payment.received"}}))
    run_id = new_ulid()
    return Pause(id=f"{run_id}:{op['id']}", run_id=run_id, step_id=op["id"], kind=PauseKind.WAIT,
                 expires_ms=2_000_000_000_000, after_seq=0, event_name=op["opts"]["event"],
                 expression=f'"user-{i}" == async.data.userId', data={"name": op["name"], "race": False})


def test_a_pending_pause_costs_under_a_kilobyte() -> None:
    # 100,000 waits must fit a server of 300 MB with room to spare; before the step id, event
    # name and data were shared (and an unused by-run map dropped) one cost ~1.5 KB.
    gc.collect()
    tracemalloc.start()
    book = PauseBook()
    for i in range(N):
        book.add(pause(i))
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert held / N < 1_000, f"{held / N:.0f} B per pause"


def test_shared_parts_leave_every_answer_unchanged() -> None:
    book = PauseBook()
    pauses = [pause(i) for i in range(3)]
    pauses.append(Pause(id="r9:s", run_id="r9", step_id="s", kind=PauseKind.INVOKE, expires_ms=0, after_seq=5,
                        event_name="inngest/function.finished", expression=None,
                        data={"name": "inv", "race": True, "function_id": "app-child"}))
    pauses.append(Pause(id="r8:g", run_id="r8", step_id="g", kind=PauseKind.SIGNAL, expires_ms=0, after_seq=0,
                        signal="go", data={"name": "sig", "race": 1, "nested": {"a": [1]}}))
    originals = [orjson.dumps(p.data) for p in pauses]
    for p in pauses:
        book.add(p)
    assert [orjson.dumps(book.by_id[p.id].data) for p in pauses] == originals
    assert book.by_id[pauses[0].id].data is book.by_id[pauses[2].id].data  # equal data: one dict
    assert book.by_id["r9:s"].data is not book.by_id[pauses[0].id].data
    event = {"name": "shop/payment.received", "data": {"userId": "user-1"}}
    assert [p.id for p in book.matching(event, seq=1)] == [pauses[1].id]
    assert [p.id for p in book.matching({"name": "inngest/function.finished"}, seq=5)] == []
    assert [p.id for p in book.matching({"name": "inngest/function.finished"}, seq=6)] == ["r9:s"]
    assert book.for_signal("go") is pauses[4]
    assert book.remove(pauses[1].id) is pauses[1] and book.remove(pauses[1].id) is None
    assert list(book.matching(event, seq=1)) == [] and len(book) == 4
    book.remove("r8:g")
    assert book.for_signal("go") is None
