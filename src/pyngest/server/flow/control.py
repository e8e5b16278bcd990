"""Admission of runs: batching, debounce, rate limit, idempotency, singleton, throttle,
priority and concurrency keys (FEATURES.md §6; PROTOCOL.md §8).

Everything here runs inside the runner's ordering lock, one event at a time, so decisions see
the effects of every earlier event. Decisions update the in-memory state at once and are made
durable in the same batch that records the event's outcome, so a crash loses neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyngest.protocol.durations import parse_ms
from pyngest.protocol.ids import new_ulid
from pyngest.protocol.sync import PRIORITY_FACTOR_MAX
from pyngest.server.exprs import compile_condition, evaluate
from pyngest.server.flow.limits import clamp_priority, gcra_reserve, key_hash, sliding_window_allows
from pyngest.server.model import (
    DEFAULT_ENV,
    AddSkip,
    Batch,
    DeleteFlow,
    DeleteJob,
    Enqueue,
    Job,
    JobKind,
    SetFlow,
    StoredEvent,
)

if TYPE_CHECKING:
    from pyngest.server.registry import Function
    from pyngest.server.runner.runner import Runner

IDEMPOTENCY_MS = 24 * 3_600_000
_DAY = 86_400_000


class FlowState:
    """The in-memory view of the ``flow`` table (loaded at start, kept current by decisions)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._shard: dict[str, int] = {}  # key -> its shard, where not shard 0 (scale-out)

    def load(self, rows: list[tuple[str, Any, int]], shard: int = 0) -> None:
        for key, value, _ in rows:
            self.values[key] = value
            if shard:
                self._shard[key] = shard

    def drop_shards(self, shards: set[int]) -> None:
        """Forget the keys of shards another process took over."""
        for key in [k for k in self.values if self._shard.get(k, 0) in shards]:
            del self.values[key]
            self._shard.pop(key, None)

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, batch: Batch, key: str, value: Any, expires_ms: int, shard: int = 0) -> None:
        self.values[key] = value
        if shard:
            self._shard[key] = shard
        batch.add(SetFlow(key, value, expires_ms, shard))

    def delete(self, batch: Batch, key: str) -> None:
        self.values.pop(key, None)
        self._shard.pop(key, None)
        batch.add(DeleteFlow(key))

    def forget_if(self, key: str, value: Any) -> None:
        if self.values.get(key) == value:
            del self.values[key]


@dataclass
class RunPlan:
    """How a run about to be created should start."""

    start_at: int
    # when admission was decided: the run is scheduled at this time, not whenever the (async)
    # decision happened to finish, so throttle and debounce arithmetic stays exact
    decided_ms: int | None = None
    priority: int = 0
    # (key, interval ms, burst) of a throttled start, for the queue's hand-out spacing
    throttle: tuple[str, float, int] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    idempotency: str | None = None
    extra_keys: list[str] = field(default_factory=list)
    batch_id: str | None = None
    shard: int = 0  # where the run goes (scale-out placement)
    run_id: str | None = None  # chosen in advance (a run created for another process's request)


class FlowControl:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.state = runner.state.flow
        self.clock = runner.clock
        # idempotency keys of runs planned since the last commit (the store has the rest)
        self._claimed: set[str] = set()
        # events of the batches about to fire, read in one go (see preload)
        self._preloaded: dict[str, StoredEvent] = {}

    def committed(self) -> None:
        """The runner committed what was matched so far: its keys are in the store now."""
        self._claimed.clear()
        self._preloaded.clear()

    async def preload(self, jobs: list[Job]) -> None:
        """Read the events of every batch among ``jobs`` in one query: many batches often come
        due at once (a timeout shared by their first events), and one read each would make the
        last of them wait for all the others' reads."""
        ids: list[str] = []
        for job in jobs:
            if job.kind is JobKind.BATCH:
                rec = self.state.get(str((job.payload or {}).get("key")))
                if rec and rec.get("job") == job.id:
                    ids += rec["events"]
        if ids:
            self._preloaded.update((e.internal_id, e) for e in await self.runner.state.store.get_events(ids))

    # ------------------------------------------------------------------------ entry point

    async def on_event(self, fn: Function, ev: StoredEvent, data: dict[str, Any], batch: Batch, *,
                       invoked: bool = False, shard: int = 0) -> None:
        """An event matched ``fn``: start a run now, later, or not at all. ``shard`` is where the
        decision's state and the run belong (always 0 on one node)."""
        cfg = fn.config
        if not invoked and isinstance(cfg.get("batchEvents"), dict):
            if await self._batch(fn, ev, data, batch, shard):
                return
        if not invoked and isinstance(cfg.get("debounce"), dict):
            self._debounce(fn, ev, data, batch, shard)
            return
        await self.start(fn, [ev], data, batch, idempotency=f"{fn.id}:{data.get('id') or ev.internal_id}",
                         shard=shard)

    async def start(self, fn: Function, events: list[StoredEvent], first: dict[str, Any], batch: Batch, *,
                    idempotency: str | None, batch_id: str | None = None, shard: int = 0) -> None:
        """Rate limit, idempotency and singleton may skip the run; throttle and priority decide
        when it starts; concurrency keys decide which queue its steps wait in."""
        cfg = fn.config
        now = self.clock.now_ms()
        trigger = events[0]
        plan = RunPlan(start_at=now, decided_ms=now, idempotency=idempotency, batch_id=batch_id, shard=shard)
        if cfg.get("idempotency"):
            plan.extra_keys.append(f"{fn.id}:idem:{self._key(cfg['idempotency'], first)}")
        keys = [k for k in (idempotency, *plan.extra_keys) if k]
        # The store refuses a run whose key is taken when it commits; but rate limit, singleton
        # and throttle decide before that, and a run that will not exist must not use up their
        # room, nor cancel the singleton run it repeats.
        stateful = any(isinstance(cfg.get(c), dict) for c in ("rateLimit", "singleton", "throttle"))
        if stateful and await self._taken(keys, now):
            return

        rate = cfg.get("rateLimit")
        if isinstance(rate, dict):
            key = f"rl:{fn.id}:{self._key(rate.get('key'), first)}"
            period = parse_ms(str(rate["period"]))
            allowed, window = sliding_window_allows(self.state.get(key) or [], now, period, int(rate["limit"]))
            if not allowed:
                batch.add(AddSkip(trigger.internal_id, fn.id, "rate_limited", now))
                return
            self.state.set(batch, key, window, now + period, shard)

        single = cfg.get("singleton")
        if isinstance(single, dict):
            key = f"single:{fn.id}:{self._key(single.get('key'), first)}"
            active = self.state.get(key)
            if active and await self._still_running(str(active)):
                if single.get("mode") == "cancel":
                    await self.runner.x.control.request_cancel(str(active), "singleton: a newer run replaced it")
                else:
                    batch.add(AddSkip(trigger.internal_id, fn.id, "singleton", now))
                    return
            plan.attrs["singleton"] = key

        prio = cfg.get("priority")
        if isinstance(prio, dict) and prio.get("run"):
            seconds = clamp_priority(evaluate(prio["run"], event=first), PRIORITY_FACTOR_MAX)
            plan.priority = seconds
            if seconds < 0:
                plan.start_at = now - seconds * 1000  # a negative priority delays the start

        throttle = cfg.get("throttle")
        if isinstance(throttle, dict):
            key = f"thr:{fn.id}:{self._key(throttle.get('key'), first)}"
            period = parse_ms(str(throttle["period"]))
            limit, burst = int(throttle["limit"]), int(throttle.get("burst") or 1)
            at, tat = gcra_reserve(float(self.state.get(key) or 0), plan.start_at, period, limit, burst)
            plan.start_at = at
            plan.throttle = (key, period / max(1, limit), burst)
            self.state.set(batch, key, tat, int(tat) + period, shard)

        self.plan_concurrency(fn, first, plan)
        run = self.runner.schedule_run(fn, events, first, batch, plan=plan)
        if stateful:
            self._claimed.update(keys)
        if "singleton" in plan.attrs:
            self.state.set(batch, plan.attrs["singleton"], run.id, now + 366 * _DAY, shard)

    # --------------------------------------------------------------------------- helpers

    @staticmethod
    def _key(expression: str | None, event: dict[str, Any]) -> str:
        if not expression:
            return "-"
        return key_hash(evaluate(expression, event=event))

    async def _taken(self, keys: list[str], now: int) -> bool:
        if any(k in self._claimed for k in keys):
            return True
        return await self.runner.state.store.idempotency_taken(keys, now)

    async def _still_running(self, run_id: str) -> bool:
        if run_id in self.runner.state.pending_runs:
            return True
        run = await self.runner.state.runs.get(run_id)
        return run is not None and not run.ended

    def plan_concurrency(self, fn: Function, event: dict[str, Any], plan: RunPlan) -> None:
        """Which virtual queue the run's steps wait in, and under which limits."""
        constraints: list[list[Any]] = []
        part = [fn.id]
        for c in fn.config.get("concurrency") or []:
            limit = int(c.get("limit") or 0)
            if limit <= 0:
                continue
            scope = c.get("scope") or "fn"
            if c.get("key"):
                kh = self._key(c["key"], event)
                counter = f"c:{fn.id}:{kh}" if scope == "fn" else f"c:{scope}:{kh}"
                if scope == "env" and fn.env_id != DEFAULT_ENV:  # an env limit is the environment's own
                    counter = f"c:env:{fn.env_id}:{kh}"
                part.append(counter)
            else:
                counter = f"c:{fn.id}"
            constraints.append([counter, limit])
        if constraints:
            plan.attrs["ck"] = constraints
        plan.attrs["part"] = "|".join(part)

    # -------------------------------------------------------------------------- debounce

    def _debounce(self, fn: Function, ev: StoredEvent, data: dict[str, Any], batch: Batch, shard: int) -> None:
        cfg = fn.config["debounce"]
        now = self.clock.now_ms()
        key = f"deb:{fn.id}:{self._key(cfg.get('key'), data)}"
        rec = self.state.get(key)
        first = int(rec["first"]) if rec else now
        due = now + parse_ms(str(cfg["period"]))
        if cfg.get("timeout"):
            due = min(due, first + parse_ms(str(cfg["timeout"])))
        job_id = f"debounce:{key}:{ev.internal_id}"
        if rec:
            batch.add(DeleteJob(rec["job"]))
        self.state.set(batch, key, {"fn": fn.id, "event": ev.internal_id, "first": first, "job": job_id}, due + _DAY,
                       shard)
        batch.add(Enqueue(Job(id=job_id, kind=JobKind.DEBOUNCE, due_ms=due, payload={"key": key}, shard=shard)))

    async def fire_debounce(self, job: Job, batch: Batch) -> None:
        key = str((job.payload or {}).get("key"))
        rec = self.state.get(key)
        if not rec or rec.get("job") != job.id:
            return  # superseded by a later event
        self.state.delete(batch, key)
        fn = self.runner.registry.functions.get(rec["fn"])
        events = await self.runner.state.store.get_events([rec["event"]])
        if fn is None or not events or fn.paused:
            return
        # debounce ignores event-id dedup: the run is keyed by the debounce window instead
        await self.start(fn, events, _event_dict(events[0]), batch, idempotency=f"{fn.id}:{job.id}",
                         shard=job.shard)

    # --------------------------------------------------------------------------- batching

    async def _batch(self, fn: Function, ev: StoredEvent, data: dict[str, Any], batch: Batch, shard: int) -> bool:
        """Add the event to its batch; False when the batch's ``if`` says to run it alone."""
        cfg = fn.config["batchEvents"]
        if cfg.get("if") and not compile_condition(cfg["if"]).matches(event=data):
            return False
        now = self.clock.now_ms()
        key = f"bat:{fn.id}:{self._key(cfg.get('key'), data)}"
        rec = self.state.get(key)
        timeout = parse_ms(str(cfg.get("timeout") or "60s"))
        if rec is None:
            bid = new_ulid(now)
            rec = {"fn": fn.id, "events": [], "first": now, "id": bid, "job": f"batch:{key}:{bid}"}
            batch.add(Enqueue(Job(id=rec["job"], kind=JobKind.BATCH, due_ms=now + timeout, payload={"key": key},
                                  shard=shard)))
        rec = {**rec, "events": [*rec["events"], ev.internal_id]}
        if len(rec["events"]) >= int(cfg["maxSize"]):
            batch.add(DeleteJob(rec["job"]))
            self.state.delete(batch, key)
            await self._start_batch(fn, rec, batch, fresh={ev.internal_id: ev}, shard=shard)
        else:
            self.state.set(batch, key, rec, int(rec["first"]) + timeout + _DAY, shard)
        return True

    async def fire_batch(self, job: Job, batch: Batch) -> None:
        key = str((job.payload or {}).get("key"))
        rec = self.state.get(key)
        if not rec or rec.get("job") != job.id:
            return
        self.state.delete(batch, key)
        fn = self.runner.registry.functions.get(rec["fn"])
        if fn is not None and not fn.paused:
            await self._start_batch(fn, rec, batch, fresh=self._preloaded, shard=job.shard)

    async def _start_batch(self, fn: Function, rec: dict[str, Any], batch: Batch,
                           fresh: dict[str, StoredEvent], shard: int) -> None:
        ids = list(rec["events"])
        missing = [i for i in ids if i not in fresh]
        loaded = {e.internal_id: e for e in await self.runner.state.store.get_events(missing)} if missing else {}
        events = [fresh.get(i) or loaded[i] for i in ids if i in fresh or i in loaded]
        if not events:
            return
        await self.start(fn, events, _event_dict(events[0]), batch, idempotency=f"{fn.id}:batch:{rec['id']}",
                         batch_id=rec["id"], shard=shard)


def _event_dict(ev: StoredEvent) -> dict[str, Any]:
    from pyngest.server.events import event_dict

    return event_dict(ev)
