"""The execution request: the body the server POSTs to an SDK to run a function (PROTOCOL.md §3.4).

The server keeps every event and step output as canonical JSON text, so a request body is
assembled by concatenating stored fragments in canonical key order instead of re-serializing
the whole run state for every step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NotRequired, TypedDict

from pyngest.protocol import jcs

DISCOVERY_STEP_ID = "step"
# Request versions an SDK may report (§3.6). -1 = not known yet.
VERSION_UNKNOWN = -1


class Stack(TypedDict):
    stack: list[str]
    current: int


class ExecutionContext(TypedDict):
    fn_id: NotRequired[str]
    run_id: str
    env: str
    step_id: str
    attempt: int
    max_attempts: int
    stack: Stack
    disable_immediate_execution: bool
    use_api: bool
    qi_id: NotRequired[str]
    request_id: NotRequired[str]
    generation_id: NotRequired[int]
    job_id: NotRequired[str]


class ExecutionRequest(TypedDict):
    event: dict[str, Any]
    events: list[dict[str, Any]]
    steps: dict[str, Any]
    ctx: ExecutionContext
    version: int
    use_api: bool
    defers: NotRequired[dict[str, Any]]


def build_body(
    *,
    ctx: ExecutionContext,
    event_json: bytes,
    events_json: Iterable[bytes],
    steps_json: Mapping[str, bytes],
    version: int,
    use_api: bool,
) -> bytes:
    """Assemble a canonical (JCS) execution request body from canonical fragments.

    ``event_json``, each of ``events_json`` and each value of ``steps_json`` must already be
    canonical JSON (as produced by :func:`pyngest.protocol.jcs.dumps`). Keys are emitted in
    JCS order: ctx, defers, event, events, steps, use_api, version.
    """
    # Step ids are hex digests (ASCII), so a plain sort is the JCS order.
    steps = b",".join(
        jcs.dumps(k) + b":" + steps_json[k] for k in sorted(steps_json)
    )
    flag = b"true" if use_api else b"false"
    return b"".join(
        (
            b'{"ctx":',
            jcs.dumps_plain(ctx),  # ids, ints and bools only: no floats to normalize
            b',"defers":{},"event":',
            event_json,
            b',"events":[',
            b",".join(events_json),
            b'],"steps":{',
            steps,
            b'},"use_api":',
            flag,
            b',"version":',
            str(version).encode(),
            b"}",
        )
    )
