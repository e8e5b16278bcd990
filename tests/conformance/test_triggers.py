"""What starts runs: several triggers on one function (one with an expression), event ``id``
deduplication, and the deterministic ids the SDKs ask for with ``x-inngest-event-id-seed``."""

from __future__ import annotations

import base64
import os
import time

import pytest

from .harness import Api, App, new_tag

pytestmark = pytest.mark.conformance

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid_text(millis: int, entropy: bytes) -> str:
    """Canonical 26-character ULID of a 48-bit time and 80 bits of entropy."""
    value = (millis << 80) | int.from_bytes(entropy, "big")
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def seeded_ids(millis: int, entropy: bytes, count: int) -> list[str]:
    """The ids the server derives from one seed: the n-th event (from 1) adds n to the
    entropy's last four bytes, as a big-endian uint32 (PROTOCOL.md §1.4)."""
    out = []
    for n in range(1, count + 1):
        tail = (int.from_bytes(entropy[6:], "big") + n) % 2**32
        out.append(ulid_text(millis, entropy[:6] + tail.to_bytes(4, "big")))
    return out


def _seed() -> tuple[int, bytes, str]:
    millis = int(time.time() * 1000)
    entropy = os.urandom(6) + (int.from_bytes(os.urandom(4), "big") % 2**30).to_bytes(4, "big")
    return millis, entropy, f"{millis},{base64.b64encode(entropy).decode()}"


def _bodies(app: App, tag: str, fn: str) -> list[dict]:
    return app.observations(kind="body", fn=fn, tag=tag)


def _settle_with(api: Api, app: App, name: str, data: dict) -> None:
    """Send one more event to the same function and wait for its run: events are processed in
    order, so anything the earlier events were going to start has started by then."""
    run = api.wait_run(api.send(app.event(name), data))
    assert run["status"] == "Completed", run


def test_multiple_triggers(app: App, api: Api) -> None:
    tag = new_tag()
    not_matching = api.send(app.event("multi.cond"), {"tag": tag, "ok": False})
    for name, data in (("multi.a", {}), ("multi.b", {}), ("multi.cond", {"ok": True})):
        run = api.wait_run(api.send(app.event(name), {"tag": tag, **data}))
        assert run["status"] == "Completed", run
        assert run["output"] == {"event": app.event(name)}
    # The event whose data fails the trigger's expression started nothing.
    assert api.event_runs(not_matching) == []
    seen = sorted(b["event_name"] for b in _bodies(app, tag, "multi-trigger"))
    assert seen == sorted(app.event(n) for n in ("multi.a", "multi.b", "multi.cond"))


def test_event_id_deduplication(app: App, api: Api) -> None:
    tag = new_tag()
    user_id = f"dedup-{tag}"
    first = api.send(app.event("dedup"), {"tag": tag, "n": 1}, id=user_id)
    second = api.send(app.event("dedup"), {"tag": tag, "n": 2}, id=user_id)
    assert first != second  # both events are accepted and stored, with their own ids
    run = api.wait_run(first)
    assert run["status"] == "Completed", run
    _settle_with(api, app, "dedup", {"tag": new_tag()})
    assert api.event_runs(second) == []
    once = app.observations(kind="step", fn="dedup", tag=tag)
    assert len(once) == 1, once
    assert run["output"] == {"event_id": user_id}


def test_seeded_event_ids(api: Api) -> None:
    millis, entropy, seed = _seed()
    res = api.send_raw(
        [
            {"name": "conformance/seeded", "data": {"i": 1}},
            {"name": "conformance/seeded", "data": {"i": 2}},
        ],
        headers={"x-inngest-event-id-seed": seed},
    )
    assert res.status_code == 200, res.text
    assert res.json() == {"ids": seeded_ids(millis, entropy, 2), "status": 200}


def test_invalid_seed_gives_random_ids(api: Api) -> None:
    res = api.send_raw(
        {"name": "conformance/seeded", "data": {}}, headers={"x-inngest-event-id-seed": "nonsense"}
    )
    assert res.status_code == 200, res.text
    (event_id,) = res.json()["ids"]
    assert len(event_id) == 26 and set(event_id) <= set(CROCKFORD)


def test_resent_seeded_event_runs_once(app: App, api: Api) -> None:
    """An SDK retrying a send reuses its seed: same id, so the run is not started twice."""
    tag = new_tag()
    millis, entropy, seed = _seed()
    body = {"name": app.event("dedup"), "data": {"tag": tag}}
    ids = []
    for _ in range(2):
        res = api.send_raw(body, headers={"x-inngest-event-id-seed": seed})
        assert res.status_code == 200, res.text
        ids += res.json()["ids"]
    assert ids == seeded_ids(millis, entropy, 1) * 2
    run = api.wait_run(ids[0])
    assert run["status"] == "Completed", run
    assert run["output"] == {"event_id": ids[0]}  # with no user id, `id` is the internal id
    _settle_with(api, app, "dedup", {"tag": new_tag()})
    assert len(app.observations(kind="step", fn="dedup", tag=tag)) == 1
