"""The narrow interface between the server and its storage.

Writes are one call: :meth:`Store.commit` applies a :class:`~pyngest.server.model.Batch`
atomically. Reads are a handful of queries the runner, executor and APIs need. The registry
(apps and functions) changes rarely and has its own small set of calls.

A backend implements this protocol; the SQLite backend is the embedded default.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyngest.server.model import DEFAULT_ENV, Batch, CommitResult, Job, Pause, Run, StoredEvent


@dataclass(slots=True)
class AppRecord:
    id: str
    name: str
    url: str
    sdk_language: str = ""
    sdk_version: str = ""
    framework: str = ""
    app_version: str = ""
    checksum: str = ""
    error: str | None = None
    created_ms: int = 0
    updated_ms: int = 0
    env_id: str = DEFAULT_ENV


@dataclass(slots=True)
class FunctionRecord:
    id: str
    app_id: str
    slug: str
    name: str
    config: dict[str, Any]
    version: int = 1
    created_ms: int = 0
    updated_ms: int = 0
    archived_ms: int | None = None
    paused_ms: int | None = None
    env_id: str = DEFAULT_ENV


@dataclass(slots=True)
class SyncRecord:
    id: str
    app_id: str | None
    url: str
    status: str
    error: str | None
    modified: bool
    functions: list[str]
    created_ms: int


@dataclass(slots=True)
class AppUrlRecord:
    url: str
    source: str
    error: str | None = None
    app_id: str | None = None
    created_ms: int = 0
    synced_ms: int | None = None


@dataclass(slots=True)
class HistoryRow:
    seq: int
    run_id: str
    at_ms: int
    kind: str
    step_id: str | None
    name: str | None
    attempt: int | None
    data: bytes | None


@dataclass(slots=True)
class OperationRecord:
    """A bulk cancellation or a replay, and how far it got."""

    id: str
    kind: str  # cancellation | replay
    fn_id: str
    app_id: str | None
    name: str
    spec: dict[str, Any]
    status: str  # running | completed | stopped
    total: int
    done: int
    created_ms: int
    ended_ms: int | None = None


@dataclass(slots=True)
class WebhookRecord:
    """A webhook: ``POST /e/{key}`` runs ``transform`` (None: the default) on each request.

    It belongs to one top-level environment (``env_id``): its events go there, or with
    ``x-inngest-env`` to a branch of it, whose webhooks are its parent's (as upstream's branch
    environments share theirs).
    """

    id: str
    key: str
    name: str
    transform: str | None
    created_ms: int
    updated_ms: int
    env_id: str = DEFAULT_ENV


@dataclass(slots=True)
class WebhookFailure:
    """A request a webhook could not turn into events, kept as it arrived for a replay."""

    id: str
    webhook_id: str
    received_ms: int
    error: str
    body: bytes
    headers: dict[str, str]
    query: str
    replayed_ms: int | None = None
    event_ids: list[str] | None = None


@dataclass(slots=True)
class RunQuery:
    """Filters for listing runs, newest first."""

    fn_ids: list[str] | None = None
    app_ids: list[str] | None = None
    statuses: list[str] | None = None
    from_ms: int | None = None
    until_ms: int | None = None
    before_id: str | None = None  # cursor: runs with a smaller id
    limit: int = 50
    extra: dict[str, Any] = field(default_factory=dict)
    env_id: str | None = None  # None: every environment's


@dataclass(slots=True)
class EnvRecord:
    """An environment: production (the default one), custom, or a branch of another."""

    id: str
    name: str
    kind: str  # production | custom | branch
    parent_id: str = ""
    archived_ms: int | None = None
    created_ms: int = 0
    deployed_ms: int | None = None  # a branch's latest deploy (sync)
    # a branch is archived at this time unless deployed again (None: auto-archive is off); one
    # archived by auto-archive has archived_ms == auto_archive_ms
    auto_archive_ms: int | None = None


@dataclass(slots=True)
class SigningKeyRecord:
    id: str
    env_id: str
    key: str
    state: str  # active | next | previous
    created_ms: int = 0


@dataclass(slots=True)
class EventKeyRecord:
    id: str
    env_id: str
    name: str
    hash: str  # sha256 hex of the key; the key itself is not stored
    hint: str
    filter: dict[str, Any] | None = None
    created_ms: int = 0


@dataclass(slots=True)
class Series:
    """Counts per time bucket (bucket ``i`` starts at ``from_ms + i * bucket_ms``)."""

    from_ms: int
    bucket_ms: int
    queued: list[int]
    started: list[int]
    ended: dict[str, list[int]]  # run status -> counts
    backlog: list[int]  # runs queued and not yet started at the end of each bucket


class StoreUnavailable(Exception):
    """The database cannot be reached (or cannot write: a full disk). Nothing was committed;
    APIs answer 503 and work is retried when it is back."""


class KeyTaken(Exception):
    """A webhook's key is already another webhook's."""


class Fenced(Exception):
    """The batch writes to a shard whose lease this process no longer holds (another process took
    it over): nothing was committed, and the work is the new owner's now."""


class LeaseUnsure(Exception):
    """This process may no longer hold the lease of the job's shard (its renewal is late): the
    job waits a moment here. Renewed, it runs; lost, the new owner runs it."""


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # -- writes
    def submit(self, batch: Batch) -> asyncio.Future[CommitResult]:
        """Queue ``batch`` now (batches commit in submission order); the future resolves once
        it is durable."""
        ...

    async def commit(self, batch: Batch) -> CommitResult: ...

    # -- runs, jobs, pauses
    async def load_run(self, run_id: str) -> Run | None: ...
    async def list_runs(self, query: RunQuery) -> list[Run]: ...
    async def runs_for_event(self, internal_id: str) -> list[Run]: ...
    async def history(self, run_id: str) -> list[HistoryRow]: ...
    # ``shards``: only those shards' rows (scale-out); None: all (one node has one shard).
    async def jobs_due_before(self, until_ms: int, limit: int, shards: list[int] | None = None) -> list[Job]: ...
    async def jobs_due_between(self, from_ms: int, until_ms: int, shards: list[int] | None = None) -> list[Job]: ...
    async def all_pauses(self, shards: list[int] | None = None) -> list[Pause]: ...
    async def pause_for_signal(self, signal: str) -> Pause | None: ...
    async def jobs_for_run(self, run_id: str) -> list[Job]: ...
    async def all_flow(self, shards: list[int] | None = None) -> list[tuple[str, Any, int]]:
        """Unexpired flow-control entries: (key, value, expires_ms)."""
        ...
    async def skips_for_event(self, internal_id: str) -> list[tuple[str, str, int]]:
        """(fn_id, reason, at_ms) for each function this event did not start."""
        ...
    async def idempotency_taken(self, keys: list[str], now_ms: int) -> bool:
        """Whether a run already holds one of these idempotency keys (unexpired at ``now_ms``)."""
        ...

    # -- events
    async def get_event(self, internal_id: str) -> StoredEvent | None: ...
    async def get_events(self, internal_ids: list[str]) -> list[StoredEvent]: ...
    async def list_events(
        self, name: str | None, limit: int, before_seq: int | None = None,
        from_ms: int | None = None, until_ms: int | None = None, *, internal: bool = True,
        env_id: str | None = None,
    ) -> list[StoredEvent]:
        """Newest first; ``internal=False`` leaves out the server's own ``inngest/`` events."""
        ...
    async def max_event_seq(self) -> int: ...

    # -- retention
    async def purge(self, before_ms: int, limit: int) -> int:
        """Remove up to ``limit`` ended runs (with their steps and history) that ended before
        ``before_ms``, events received before it that no unfinished run uses, and expired
        idempotency keys, flow entries, syncs and operations (up to ``limit`` of each). Returns
        how many runs and events went. One call is one short transaction, every delete indexed:
        the caller purges in slices, and other writes go between them."""
        ...

    async def reclaim(self, pages: int) -> int:
        """Give back to the file system up to ``pages`` pages that purging freed, in one short
        write; return how many free pages are left (0 when there is nothing (more) to give back,
        or the store cannot)."""
        ...

    # -- bulk operations
    async def save_operation(self, op: OperationRecord) -> None: ...
    async def get_operation(self, op_id: str) -> OperationRecord | None: ...
    async def list_operations(self, fn_id: str | None, kind: str | None, limit: int) -> list[OperationRecord]: ...
    async def skipped_events(self, fn_id: str, from_ms: int, until_ms: int, after_event: str | None,
                             limit: int) -> list[str]:
        """Internal ids of events that skipped ``fn`` in the window because it was paused
        (what a replay of "Skipped" runs brings back; not rate-limited or singleton skips),
        oldest first."""
        ...

    # -- webhooks (store/*/webhooks.py)
    async def list_webhooks(self) -> list[WebhookRecord]: ...
    async def save_webhook(self, hook: WebhookRecord) -> None:
        """Insert or update (by id); a key already used by another webhook raises KeyTaken."""
        ...
    async def delete_webhook(self, hook_id: str) -> None:
        """The webhook and its failed requests."""
        ...
    async def add_webhook_failure(self, failure: WebhookFailure, keep: int) -> None:
        """Store a failed request; only the webhook's newest ``keep`` are kept."""
        ...
    async def webhook_failures(self, hook_id: str | None, before_id: str | None, limit: int) -> list[WebhookFailure]:
        """Newest first (ids below ``before_id``)."""
        ...
    async def get_webhook_failure(self, failure_id: str) -> WebhookFailure | None: ...
    async def update_webhook_failure(self, failure: WebhookFailure) -> None:
        """Save a replay's outcome: ``error``, ``replayed_ms``, ``event_ids``."""
        ...

    # -- registry
    async def list_apps(self) -> list[AppRecord]: ...
    async def save_app(self, app: AppRecord) -> None: ...
    async def delete_app(self, app_id: str, now_ms: int) -> None: ...
    async def list_functions(self, include_archived: bool = False) -> list[FunctionRecord]: ...
    async def save_functions(
        self, app_id: str, functions: list[FunctionRecord], now_ms: int
    ) -> list[str]: ...
    async def set_function_paused(self, fn_id: str, paused_ms: int | None) -> None: ...
    async def add_sync(self, sync: SyncRecord) -> None: ...
    async def list_syncs(self, app_id: str, limit: int) -> list[SyncRecord]: ...
    async def list_app_urls(self) -> list[AppUrlRecord]: ...
    async def save_app_url(self, rec: AppUrlRecord) -> None: ...
    async def delete_app_url(self, url: str) -> None: ...

    # -- environments and their keys (few rows: read whole, kept in memory by Environments)
    async def list_envs(self) -> list[EnvRecord]: ...
    async def save_env(self, env: EnvRecord) -> None: ...
    async def update_env(self, env_id: str, archived_ms: int | None, auto_archive_ms: int | None) -> None:
        """Set these two columns only (a manual archive, the auto-archive toggle): a process with
        an older copy of the row must not put back its other columns (a deploy's)."""
        ...
    async def env_deployed(self, env_id: str, now_ms: int, auto_archive_ms: int) -> None:
        """A deploy into a branch: ``deployed_ms`` is now; its auto-archive time moves to
        ``auto_archive_ms`` if auto-archive is on; one archived by auto-archive is active again."""
        ...
    async def archive_due_envs(self, now_ms: int) -> int:
        """Archive the branches whose auto-archive time has come (at that time); return how many.
        One conditional statement: two processes doing it at once archive each branch once."""
        ...
    async def list_signing_keys(self) -> list[SigningKeyRecord]: ...
    async def save_signing_keys(self, keys: list[SigningKeyRecord]) -> None:
        """Upsert several at once (a rotation changes two atomically)."""
        ...
    async def delete_signing_key(self, key_id: str) -> None: ...
    async def list_event_keys(self) -> list[EventKeyRecord]: ...
    async def save_event_key(self, key: EventKeyRecord) -> None: ...
    async def delete_event_key(self, key_id: str) -> None: ...
    # -- dashboard sessions signed out before their expiry
    async def revoke_session(self, session_id: str, expires_ms: int, now_ms: int) -> None:
        """Remember a signed-out session until ``expires_ms`` (and forget those expired by now)."""
        ...
    async def session_revoked(self, session_id: str) -> bool: ...

    # -- dashboard reads (aggregates over runs and events) and its operations' records
    async def count_runs(self, query: RunQuery, cap: int) -> int: ...
    async def count_events(self, names: list[str] | None, from_ms: int | None, until_ms: int | None, *,
                           internal: bool, cap: int, env_id: str | None = None) -> int:
        """How many events (up to ``cap``) ``list_events`` would list with these filters."""
        ...
    async def run_counts(self, from_ms: int, until_ms: int) -> list[tuple[str, str, int]]:
        """(fn_id, status, count) of runs queued in the range."""
        ...
    async def run_series(self, query: RunQuery, bucket_ms: int, buckets: int) -> Series: ...
    async def step_series(self, query: RunQuery, bucket_ms: int, buckets: int) -> dict[str, list[int]]:
        """Step outcomes per bucket ("completed", "failed", "errored") of the matching runs."""
        ...
    async def event_names(self, from_ms: int, until_ms: int, env_id: str | None = None) -> list[tuple[str, int, int]]:
        """(name, count in the range, last received ms) of every event name ever stored."""
        ...
    async def event_series(self, name: str, from_ms: int, bucket_ms: int, buckets: int,
                           env_id: str | None = None) -> list[int]: ...
    async def event_names_by_id(self, internal_ids: list[str]) -> dict[str, str]: ...
    async def execute_jobs_by_function(self) -> dict[str, int]:
        """Stored EXECUTE jobs (scheduled or running SDK requests) per function id."""
        ...
