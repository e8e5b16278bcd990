"""Opcodes: what an SDK returns in a 206 response, one object per op (PROTOCOL.md §4)."""

from __future__ import annotations

from enum import Enum
from typing import Any, NotRequired, TypedDict


class Opcode(str, Enum):
    NONE = "None"
    STEP = "Step"
    STEP_RUN = "StepRun"
    STEP_ERROR = "StepError"
    STEP_PLANNED = "StepPlanned"
    SLEEP = "Sleep"
    WAIT_FOR_EVENT = "WaitForEvent"
    INVOKE_FUNCTION = "InvokeFunction"
    AI_GATEWAY = "AIGateway"
    GATEWAY = "Gateway"
    WAIT_FOR_SIGNAL = "WaitForSignal"
    RUN_COMPLETE = "RunComplete"
    STEP_FAILED = "StepFailed"
    SYNC_RUN_COMPLETE = "SyncRunComplete"
    DISCOVERY_REQUEST = "DiscoveryRequest"
    DEFER_ADD = "DeferAdd"
    DEFER_ABORT = "DeferAbort"


_BY_LOWER = {op.value.lower(): op for op in Opcode}


def parse_opcode(value: Any) -> Opcode:
    """Opcodes are matched case-insensitively, as upstream's enumer does."""
    if isinstance(value, str):
        op = _BY_LOWER.get(value.lower())
        if op is not None:
            return op
    raise ValueError(f"unknown opcode {value!r}")


# Ops that ask the server to do something later (they "plan" rather than report a result).
PLAN_OPS = frozenset(
    {
        Opcode.STEP_PLANNED,
        Opcode.SLEEP,
        Opcode.WAIT_FOR_EVENT,
        Opcode.INVOKE_FUNCTION,
        Opcode.AI_GATEWAY,
        Opcode.GATEWAY,
        Opcode.WAIT_FOR_SIGNAL,
    }
)
# Processed before the others in a response (§4.2).
PRIORITY_OPS = frozenset({Opcode.WAIT_FOR_EVENT, Opcode.DEFER_ADD, Opcode.DEFER_ABORT})

MAX_OPS_PER_RESPONSE = 1000
MAX_STEP_OUTPUT_BYTES = 4 * 1024 * 1024
MAX_SDK_REQUEST_BYTES = 4 * 1024 * 1024
MAX_SDK_RESPONSE_BYTES = 8 * 1024 * 1024


class OpError(TypedDict):
    name: str
    message: str
    stack: NotRequired[str]
    data: NotRequired[Any]
    cause: NotRequired[Any]


class Op(TypedDict):
    op: str
    id: str
    name: NotRequired[str]
    displayName: NotRequired[str | None]
    opts: NotRequired[Any]
    data: NotRequired[Any]
    error: NotRequired[OpError]
    timing: NotRequired[dict[str, int]]
    userland: NotRequired[dict[str, Any]]


# Error names the server itself produces.
INVOKE_TIMEOUT_ERROR: dict[str, str] = {
    "error": "InngestInvokeTimeoutError: Timed out waiting for invoked function to complete",
    "name": "InngestInvokeTimeoutError",
    "message": "Timed out waiting for invoked function to complete",
}
