"""The server's domain records: events, runs, jobs, pauses, and the batch of changes that moves a
run forward atomically.

Every state change the runner or executor makes is expressed as a :class:`Batch` of small,
backend-agnostic operations which a store commits all-or-nothing. That keeps the store
interface narrow (``commit(batch)`` plus reads) and lets another backend (Redis + Postgres)
implement the same operations without touching the runner or executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

# The environment that the flags seed and that ``pyngest dev`` is (upstream's dev server is one
# local environment). Rows written before environments existed belong to it.
DEFAULT_ENV = "00000000-0000-4000-b000-000000000000"


class RunStatus(str, Enum):
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"

    @property
    def ended(self) -> bool:
        # by value: in Python 3.11 reading RunStatus.COMPLETED and comparing enum members cost
        # about 2 µs here, and a run's state is asked this several times per step
        return self._value_ in _ENDED_STATUSES


_ENDED_STATUSES = frozenset({"Completed", "Failed", "Cancelled", "Skipped"})


class JobKind(str, Enum):
    EVENTS = "events"            # match freshly stored events against triggers and pauses
    EXECUTE = "execute"          # call the SDK (step_id "step" = discovery, else a planned step)
    SLEEP = "sleep"              # a step.sleep ends
    PAUSE_TIMEOUT = "pause_timeout"  # a waitForEvent / invoke / signal wait times out
    GATEWAY = "gateway"          # the server performs step.fetch / step.ai.infer
    TIMEOUT_START = "timeout_start"
    TIMEOUT_FINISH = "timeout_finish"
    CRON = "cron"
    CANCEL = "cancel"            # cancel a run (from the API or a cancelOn match)
    DEBOUNCE = "debounce"        # a debounce period ends: start the run with the last event
    BATCH = "batch"              # a batch's timeout ends: start the run with what it holds
    OPERATION = "operation"      # a chunk of a bulk cancellation or a replay
    MAINTENANCE = "maintenance"  # retention: remove history older than the configured age
    RESUME = "resume"            # a pause claimed elsewhere (a signal, another node): its step ends
    START = "start"              # create a run in this job's shard (a replay or rerun from another node)


class PauseKind(str, Enum):
    WAIT = "wait"
    INVOKE = "invoke"
    CANCEL = "cancel"
    SIGNAL = "signal"


@dataclass(slots=True)
class StoredEvent:
    internal_id: str
    name: str
    event_id: str
    ts: int
    received_ms: int
    body: bytes  # canonical JSON
    source: str = ""
    seq: int = 0  # assigned by the store
    env_id: str = DEFAULT_ENV
    # Scale-out: its place in the event log, (inserting transaction id, seq), when read from it
    log: tuple[int, int] | None = None
    # The runs it triggers were created in the commit that stored it (runner.accept): matching
    # it later (the scale-out event log) looks only at pauses, never at triggers again.
    started: bool = False

    @property
    def position(self) -> tuple[int, int]:
        """Where it stands among events for matching: pauses match only later positions."""
        return self.log if self.log is not None else (self.seq, 0)


@dataclass(slots=True)
class Job:
    id: str
    kind: JobKind
    due_ms: int
    run_id: str | None = None
    step_id: str = "step"
    attempt: int = 0
    priority: int = 0
    payload: dict[str, Any] | None = None
    # Which shard's owner runs it (scale-out; always 0 on one node). A run's jobs are in the
    # run's shard; others (cron, debounce, batch, operations) say where they belong.
    shard: int = 0

    def sort_key(self) -> tuple[int, int]:
        return (self.due_ms, -self.priority)


@dataclass(slots=True)
class Pause:
    id: str
    run_id: str
    step_id: str
    kind: PauseKind
    expires_ms: int
    after_seq: int
    event_name: str | None = None
    expression: str | None = None
    signal: str | None = None
    data: dict[str, Any] | None = None

    # A pause matches events of its run's environment only. The environment rides in ``data``
    # (absent: the default one), so pauses stored before environments existed keep matching.
    @property
    def env_id(self) -> str:
        return str((self.data or {}).get("env") or DEFAULT_ENV)

    def in_env(self, env_id: str) -> Pause:
        if env_id != DEFAULT_ENV:
            self.data = {**(self.data or {}), "env": env_id}
        return self


@dataclass(slots=True)
class Run:
    """A run's durable state. ``events`` and ``steps`` hold canonical JSON fragments."""

    id: str
    fn_id: str
    app_id: str
    status: RunStatus
    event_ids: list[str]
    events: list[bytes]
    queued_ms: int
    fn_version: int = 1
    steps: dict[str, bytes] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    version: int = -1
    force_step_plan: bool = False
    pending: list[str] | None = None
    started_ms: int | None = None
    ended_ms: int | None = None
    output: bytes | None = None
    batch_id: str | None = None
    cron: str | None = None
    original_run_id: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    # What its events and steps' outputs weigh (the SDK is told to fetch them through the API
    # past a threshold). Stored at creation only, as the events' size: a run loaded from the
    # store counts it again (``counted``), so a saved step costs no UPDATE of the run's row.
    state_bytes: int = 0
    env_id: str = DEFAULT_ENV
    # Whether the store may hold pauses of the run. Not stored: a run read back from the store
    # may; one created here has none until a pause is added, and its end then needs no delete.
    may_have_pauses: bool = True

    @property
    def ended(self) -> bool:
        return self.status.ended

    def counted(self) -> Run:
        """Set ``state_bytes`` from the events and steps a store has just loaded."""
        self.state_bytes = sum(map(len, self.events)) + sum(map(len, self.steps.values()))
        return self


# ---------------------------------------------------------------------------------------------
# Batch operations. Each is a plain record; stores interpret them.
#
# Code on the hot path tells them apart with ``type(op) is SaveStep`` rather than isinstance:
# an op class is never subclassed (tests/unit/test_batch_ops.py), and in CPython 3.11 an
# isinstance that fails costs several times an identity test (it looks up the object's
# ``__class__`` again), some thousand times per ten-step run across the store, the metrics and
# the executor's mirror of each commit.


@dataclass(slots=True)
class InsertEvents:
    events: list[StoredEvent]
    # Scale-out, events whose runs this batch starts: the registry version those runs were
    # decided by. The commit is refused (as fenced) if the registry has moved on since, so a
    # function synced through another process a moment ago is never missed.
    registry_version: int | None = None


@dataclass(slots=True)
class CreateRun:
    run: Run
    # The run is only created if no unexpired entry holds any of these keys; otherwise this op
    # and every later op of the batch about the same run are skipped.
    idempotency_key: str | None = None
    idempotency_expires_ms: int = 0
    extra_keys: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SaveStep:
    run_id: str
    step_id: str
    pos: int  # its position in the run's stack
    value: bytes  # canonical JSON


@dataclass(slots=True)
class UpdateRun:
    run_id: str
    fields: dict[str, Any]


@dataclass(slots=True)
class Enqueue:
    job: Job
    # A job for a shard this node may not own (an API cancel, a signal, a cron schedule): it is
    # not fenced by this node's leases, and the owner is told about it.
    remote: bool = False


@dataclass(slots=True)
class DeleteJob:
    job_id: str


@dataclass(slots=True)
class DeleteRunJobs:
    run_id: str
    keep: str | None = None  # a job id to leave alone (the one being processed)


@dataclass(slots=True)
class AddPause:
    pause: Pause


@dataclass(slots=True)
class DeletePause:
    pause_id: str


@dataclass(slots=True)
class DeleteRunPauses:
    run_id: str


@dataclass(slots=True)
class ClaimPause:
    """Consume a pause, at most once: the store deletes it, and if it was already gone (another
    event, a timeout, a signal or another node took it first) every later op of the batch is
    skipped and the result says ``void``. Put it first in a batch that acts on the pause."""

    pause_id: str


@dataclass(slots=True)
class SetCursor:
    """How far through the event log the given shards have matched (scale-out only)."""

    shards: list[int]
    xid: int
    seq: int


@dataclass(slots=True)
class AddHistory:
    run_id: str
    at_ms: int
    kind: str
    step_id: str | None = None
    name: str | None = None
    attempt: int | None = None
    data: bytes | None = None


@dataclass(slots=True)
class SetFlow:
    """Flow-control state (throttle TAT, rate-limit window, debounce/batch buffers, singleton)."""

    key: str
    value: Any
    expires_ms: int
    shard: int = 0  # the shard whose admission decisions own the key


@dataclass(slots=True)
class DeleteFlow:
    key: str
    only_if: Any = None  # delete only while the stored value equals this (None: always)


@dataclass(slots=True)
class AddSkip:
    """An event that started no run of a function, and why (rate limited, singleton, paused…)."""

    event_internal_id: str
    fn_id: str
    reason: str
    at_ms: int


Op = (
    InsertEvents | CreateRun | SaveStep | UpdateRun | Enqueue | DeleteJob | DeleteRunJobs
    | AddPause | DeletePause | DeleteRunPauses | AddHistory | SetFlow | DeleteFlow | AddSkip
    | ClaimPause | SetCursor
)


# ops about one run that name it in ``run_id``
_RUN_ID_OPS = frozenset({SaveStep, UpdateRun, DeleteRunJobs, DeleteRunPauses, AddHistory})


@dataclass(slots=True)
class Batch:
    ops: list[Op] = field(default_factory=list)

    def add(self, op: Op) -> None:
        self.ops.append(op)

    def __bool__(self) -> bool:
        return bool(self.ops)


def compact(ops: list[Op]) -> list[Op]:
    """The ops of a batch with each run's several ``UpdateRun`` merged into its first one (later
    values win): one statement per run row instead of one per update. Nothing else in a batch
    reads the runs table, so where the merged update lands does not matter — except across a
    ``ClaimPause`` (what follows a void claim is not applied) or the run's own creation, which
    start a new merge. The ops given are not changed."""
    out: list[Op] = []
    updates: dict[str, int] = {}  # run id -> index in ``out`` of its first update so far
    covered = _covered_job_deletes(ops)
    for n, op in enumerate(ops):
        if n in covered:
            continue
        if type(op) is UpdateRun:
            at = updates.get(op.run_id)
            if at is not None:
                first = out[at]
                assert isinstance(first, UpdateRun)
                out[at] = UpdateRun(first.run_id, {**first.fields, **op.fields})
                continue
            updates[op.run_id] = len(out)
        elif type(op) is ClaimPause:
            updates.clear()
        elif type(op) is CreateRun:
            updates.pop(op.run.id, None)
        out.append(op)
    return out


def _covered_job_deletes(ops: list[Op]) -> set[int]:
    """Positions of ``DeleteJob`` ops that a later ``DeleteRunJobs`` of the job's run does anyway
    (a run's jobs have ids ``<run id>:…``; e.g. the job whose answer ends the run). Not across a
    ``ClaimPause``: what follows a void claim is not applied."""
    covered: set[int] = set()
    clearing: dict[str, str | None] = {}  # run id -> the job its DeleteRunJobs keeps
    for n in range(len(ops) - 1, -1, -1):
        op = ops[n]
        if type(op) is DeleteRunJobs:
            clearing[op.run_id] = op.keep
        elif type(op) is ClaimPause:
            clearing.clear()
        elif type(op) is DeleteJob and clearing:
            run_id, sep, _ = op.job_id.partition(":")
            if sep and run_id in clearing and clearing[run_id] != op.job_id:
                covered.add(n)
    return covered


def op_run_id(op: Op) -> str | None:
    """The run an op is about (ops about a run whose creation was skipped are skipped too)."""
    if type(op) is CreateRun:
        return op.run.id
    if type(op) is Enqueue:
        return op.job.run_id
    if type(op) is AddPause:
        return op.pause.run_id
    return op.run_id if type(op) in _RUN_ID_OPS else None  # type: ignore[union-attr]


def applied_ops(batch: Batch, result: CommitResult) -> list[Op]:
    """The ops of a committed batch that took effect: all of them, or those before its
    ClaimPause if the pause was already gone (at most one claim per batch)."""
    if not result.void:
        return batch.ops
    for i, op in enumerate(batch.ops):
        if type(op) is ClaimPause:
            return batch.ops[:i]
    return batch.ops


@dataclass(slots=True)
class CommitResult:
    created_runs: list[str] = field(default_factory=list)
    skipped_runs: dict[str, str | None] = field(default_factory=dict)  # run id -> existing run id
    event_seqs: dict[str, int] = field(default_factory=dict)  # internal id -> seq
    duplicate_events: set[str] = field(default_factory=set)
    ignored_jobs: set[str] = field(default_factory=set)  # Enqueue of an id that already existed
    deleted_jobs: set[str] = field(default_factory=set)  # by DeleteRunJobs
    deleted_pauses: set[str] = field(default_factory=set)
    # a ClaimPause found its pause gone: nothing after it in the batch was applied
    void: bool = False
