"""Apps and functions: what is registered, compiled once, and looked up per event.

The registry is the in-memory view of the ``apps`` and ``functions`` tables. Each function's
trigger expressions and cron schedules are compiled when it is synced, not when events arrive.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from pyngest import cron
from pyngest.clock import Clock
from pyngest.expr import check_length
from pyngest.protocol import jcs
from pyngest.protocol.durations import parse_ms
from pyngest.protocol.sync import (
    FunctionConfig,
    SyncError,
    decode_register,
    max_attempts,
    split_sdk,
    step_url,
    validate_function,
)
from pyngest.server.environments import Environments
from pyngest.server.exprs import Condition, ExpressionError, TriggerIndex, compile_condition
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.store.base import AppRecord, FunctionRecord, Store, SyncRecord

log = logging.getLogger("pyngest.registry")


class RegistrationError(Exception):
    """A register request is refused; ``status`` and ``message`` go back to the SDK."""

    def __init__(self, message: str, status: int = 400, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.data = data


@dataclass(slots=True)
class EventTrigger:
    event: str
    condition: Condition | None


@dataclass(slots=True)
class CronTrigger:
    expression: str
    schedule: cron.CronSchedule
    jitter_ms: int


@dataclass
class Function:
    """A registered function, ready to be triggered."""

    id: str
    app_id: str
    slug: str
    name: str
    config: FunctionConfig
    version: int
    url: str
    max_attempts: int
    event_triggers: list[EventTrigger] = field(default_factory=list)
    cron_triggers: list[CronTrigger] = field(default_factory=list)
    paused: bool = False
    archived: bool = False
    env_id: str = DEFAULT_ENV

    @property
    def retries(self) -> int:
        return self.max_attempts - 1


@dataclass(slots=True)
class SyncOutcome:
    app: AppRecord
    modified: bool
    sync_id: str
    functions: list[Function]
    archived: list[str]


def normalize_url(url: str) -> str:
    """As upstream: drop ``deployId``/``probe`` (and ``fnId``/``stepId``) query params and default ports; 127.0.0.1 and
    0.0.0.0 become localhost, so the same app is recognised however it was addressed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in ("127.0.0.1", "0.0.0.0"):
        host = "localhost"
    port = parts.port
    if (parts.scheme == "http" and port == 80) or (parts.scheme == "https" and port == 443):
        port = None
    netloc = host if port is None else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
    # fnId/stepId: the Python SDK registers with a function's step URL; the app is the endpoint
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query)
                       if k not in ("deployId", "probe", "fnId", "stepId")])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def function_uuid(name: str, url: str, env_id: str = DEFAULT_ENV) -> str:
    """Deterministic id from name and URL (upstream: UUIDv5, OID namespace, name+URI). In another
    environment than the default one the environment is part of it: the same app may be synced
    into several environments, each with its own functions."""
    prefix = "" if env_id == DEFAULT_ENV else env_id + "/"
    return str(uuid.uuid5(uuid.NAMESPACE_OID, prefix + name + url))


def compile_function(rec: FunctionRecord) -> Function:
    """Build the in-memory function; raises ValueError with every problem found."""
    config: FunctionConfig = rec.config  # type: ignore[assignment]
    problems: list[str] = []
    fn = Function(
        id=rec.id,
        app_id=rec.app_id,
        slug=rec.slug,
        name=rec.name,
        config=config,
        version=rec.version,
        url=step_url(config),
        max_attempts=max_attempts(config),
        paused=rec.paused_ms is not None,
        archived=rec.archived_ms is not None,
        env_id=rec.env_id,
    )
    for i, trig in enumerate(config.get("triggers", [])):
        if trig.get("event"):
            cond = None
            if trig.get("expression"):
                try:
                    cond = _written_condition(trig["expression"])
                except ExpressionError as exc:
                    problems.append(f"triggers[{i}].expression: {exc}")
            fn.event_triggers.append(EventTrigger(trig["event"], cond))
        elif trig.get("cron"):
            try:
                schedule = cron.parse(trig["cron"])
            except cron.CronError as exc:
                problems.append(f"triggers[{i}].cron: {exc}")
                continue
            jitter = trig.get("jitter")
            fn.cron_triggers.append(CronTrigger(trig["cron"], schedule, parse_ms(jitter) if jitter else 0))
    for key, where in _expressions(config):
        try:
            _written_condition(key)
        except ExpressionError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return fn


def _written_condition(source: str) -> Condition:
    """An expression of a function's config, within the length anyone may write."""
    check_length(source)
    return compile_condition(source)


def _expressions(config: FunctionConfig) -> list[tuple[str, str]]:
    """Every other expression in a config, to be checked at sync time."""
    out: list[tuple[str, str]] = []
    for i, c in enumerate(config.get("cancel") or []):
        if c.get("if"):
            out.append((c["if"], f"cancel[{i}].if"))
    for i, limit in enumerate(config.get("concurrency") or []):
        if limit.get("key"):
            out.append((str(limit["key"]), f"concurrency[{i}].key"))
    for name in ("throttle", "rateLimit", "debounce", "batchEvents", "singleton"):
        block = config.get(name)
        if isinstance(block, dict) and block.get("key"):
            out.append((block["key"], f"{name}.key"))
    batch = config.get("batchEvents")
    if isinstance(batch, dict) and batch.get("if"):
        out.append((batch["if"], "batchEvents.if"))
    prio = config.get("priority")
    if isinstance(prio, dict) and prio.get("run"):
        out.append((prio["run"], "priority.run"))
    if config.get("idempotency"):
        out.append((config["idempotency"], "idempotency"))
    return out


class Registry:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.apps: dict[str, AppRecord] = {}  # by id
        # One registration at a time: two for the same new app (two workers of one app, a
        # user's PUT meeting the server's re-sync) would otherwise both create it.
        self._registering = asyncio.Lock()
        self.functions: dict[str, Function] = {}  # by id, live (not archived)
        self.by_slug: dict[str, Function] = {}  # the default environment's, by slug
        self.by_env_slug: dict[tuple[str, str], Function] = {}
        self._triggers: dict[str, TriggerIndex] = {}  # by environment
        self.envs = Environments(store, clock)

    async def reload(self) -> None:
        """Read apps and functions again (another process of a cluster changed them). Not while
        this process changes them: rows read before its change would replace the changed ones."""
        async with self._registering:
            apps = {app.id: app for app in await self.store.list_apps()}
            self.apps = apps
            await self.load()

    async def load(self) -> None:
        await self.envs.load()
        for app in await self.store.list_apps():
            self.apps[app.id] = app
        fns = []
        for rec in await self.store.list_functions():
            try:
                fns.append(compile_function(rec))
            except ValueError as exc:  # stored before a stricter version: keep serving the rest
                log.warning("function %s no longer compiles: %s", rec.slug, exc)
        self._index(fns)

    def _index(self, fns: list[Function]) -> None:
        self.functions = {f.id: f for f in fns}
        self.by_env_slug = {(f.env_id, f.slug): f for f in fns}
        self.by_slug = {f.slug: f for f in fns if f.env_id == DEFAULT_ENV}
        triggers: dict[str, TriggerIndex] = {}
        for f in fns:
            for i, t in enumerate(f.event_triggers):
                index = triggers.get(f.env_id) or triggers.setdefault(f.env_id, TriggerIndex(clock=self.clock))
                index.add((f.id, i), t.event, t.condition.source if t.condition else None)
        self._triggers = triggers

    def app_by_name(self, name: str, env_id: str = DEFAULT_ENV) -> AppRecord | None:
        for app in self.apps.values():
            if app.name == name and app.env_id == env_id:
                return app
        return None

    def apps_of(self, env_id: str) -> list[AppRecord]:
        return [a for a in self.apps.values() if a.env_id == env_id]

    def functions_of(self, env_id: str) -> list[Function]:
        return [f for f in self.functions.values() if f.env_id == env_id]

    def app_by_url(self, url: str) -> AppRecord | None:
        norm = normalize_url(url)
        for app in self.apps.values():
            if normalize_url(app.url) == norm:
                return app
        return None

    def find_function(self, ident: str, env_id: str = DEFAULT_ENV) -> Function | None:
        """By slug or by UUID, in one environment."""
        fn = self.by_env_slug.get((env_id, ident)) or self.functions.get(ident)
        return fn if fn is not None and fn.env_id == env_id else None

    def triggered_by(self, event: dict[str, Any], env_id: str = DEFAULT_ENV) -> list[Function]:
        """Functions this event starts: name or wildcard match, then the trigger's ``if``.

        A function runs at most once per event even when several triggers match.
        """
        out: list[Function] = []
        seen: set[str] = set()
        index = self._triggers.get(env_id)
        for key in index.match(event) if index is not None else ():
            fn_id = key[0]  # type: ignore[index]
            fn = self.functions.get(fn_id)
            if fn is not None and fn_id not in seen:
                seen.add(fn_id)
                out.append(fn)
        return out

    def listens(self, event_name: str) -> bool:
        """Could an event of this name trigger a function (by name or wildcard), in any environment?"""
        return any(index.listens(event_name) for index in self._triggers.values())

    def cron_functions(self) -> list[Function]:
        return [f for f in self.functions.values() if f.cron_triggers]

    # ----------------------------------------------------------------------------- sync

    async def register(self, body: Any, *, deploy_id: str | None = None, app_url: str | None = None,
                       env_id: str = DEFAULT_ENV) -> SyncOutcome:
        """Process a ``/fn/register`` payload (already JSON-decoded) into environment ``env_id``.
        ``app_url``: the app's URL when it has none to send requests to (a connect app, synced by
        its worker's handshake)."""
        async with self._registering:
            name = body.get("appName") if isinstance(body, dict) else None
            if isinstance(name, str) and self.app_by_name(name, env_id) is None:
                # Another process of a cluster may have made it a moment ago (a connect worker
                # that moved here, two processes syncing one new app): read what it stored
                # rather than make a second app of that name.
                stored = await self.store.list_apps()
                if any(a.name == name and a.env_id == env_id for a in stored):
                    self.apps = {a.id: a for a in stored}
                    await self.load()
            outcome = await self._register(body, deploy_id=deploy_id, app_url=app_url, env_id=env_id)
        # a deploy, also of an unchanged app: a branch's auto-archive date moves on
        await self.envs.deployed(env_id)
        return outcome

    async def _register(self, body: Any, *, deploy_id: str | None = None,
                        app_url: str | None = None, env_id: str = DEFAULT_ENV) -> SyncOutcome:
        now = self.clock.now_ms()
        try:
            req = decode_register(body)
        except SyncError as exc:
            raise RegistrationError(str(exc)) from exc
        url = app_url if app_url is not None else normalize_url(str(req.get("url") or ""))
        sdk_lang, sdk_version = split_sdk(req.get("sdk"))
        checksum_src = {k: v for k, v in req.items() if k not in ("featureObservations", "deployId")}
        checksum = hashlib.sha256(jcs.dumps(checksum_src)).hexdigest()

        app = self.app_by_name(req["appName"], env_id)
        if app is not None and app.checksum == checksum and app.error is None and app.url == url:
            sync_id = str(uuid.uuid4())
            await self.store.add_sync(
                SyncRecord(sync_id, app.id, url, "duplicate", None, False, [], now)
            )
            fns = [f for f in self.functions.values() if f.app_id == app.id]
            return SyncOutcome(app, False, sync_id, fns, [])

        problems: list[str] = []
        records: list[FunctionRecord] = []
        existing = {f.slug: f for f in self.functions.values() if f.env_id == env_id}
        seen_slugs: set[str] = set()
        for i, raw in enumerate(req["functions"]):
            fn_cfg, errors = validate_function(raw)
            slug = raw.get("id") if isinstance(raw, dict) else None
            label = f"function {slug!r}" if slug else f"functions[{i}]"
            problems.extend(f"{label}: {e}" for e in errors)
            if fn_cfg is None:
                continue
            # an invalid config may carry any JSON as its id (an object, a list): not a key
            ident = fn_cfg.get("id")
            ident = ident if isinstance(ident, str) else ""
            if not errors and ident in seen_slugs:
                problems.append(f"{label}: duplicate function id")
                continue
            seen_slugs.add(ident)
            prev = existing.get(ident)
            if prev is not None and app is not None and prev.app_id != app.id:
                problems.append(f"{label}: the id is already used by another app")
                continue
            fid = prev.id if prev is not None else function_uuid(str(fn_cfg.get("name", "")), step_url(fn_cfg), env_id)
            version = prev.version + (prev.config != fn_cfg) if prev is not None else 1
            rec = FunctionRecord(
                id=fid, app_id="", slug=str(fn_cfg.get("id", "")), name=str(fn_cfg.get("name", "")),
                config=dict(fn_cfg), version=version, created_ms=now, updated_ms=now, env_id=env_id,
            )
            try:
                compile_function(rec)
            except ValueError as exc:
                problems.append(f"{label}: {exc}")
                continue
            except (TypeError, AttributeError, KeyError):
                continue  # malformed beyond what the structural errors above already say
            if not errors:
                records.append(rec)
        if problems:
            raise RegistrationError(
                "At least one function is invalid", 400, {"errors": problems}
            )

        if app is None:
            app = AppRecord(id=str(uuid.uuid4()), name=req["appName"], url=url, created_ms=now, env_id=env_id)
        app.url = url
        app.sdk_language = sdk_lang
        app.sdk_version = sdk_version
        app.framework = str(req.get("framework") or "")
        app.app_version = str(req.get("appVersion") or "")
        app.checksum = checksum
        app.error = None
        app.updated_ms = now
        for rec in records:
            rec.app_id = app.id
        await self.store.save_app(app)
        archived = await self.store.save_functions(app.id, records, now)
        sync_id = str(uuid.uuid4())
        await self.store.add_sync(
            SyncRecord(sync_id, app.id, url, "success", None, True, [r.slug for r in records], now)
        )
        self.apps[app.id] = app
        fns = [f for f in self.functions.values() if f.app_id != app.id]
        new_fns = []
        for rec in records:
            prev_fn = self.functions.get(rec.id)
            compiled = compile_function(rec)
            if prev_fn is not None:
                compiled.paused = prev_fn.paused
            new_fns.append(compiled)
        self._index(fns + new_fns)
        return SyncOutcome(app, True, sync_id, new_fns, archived)

    async def record_sync_error(self, url: str, message: str) -> None:
        async with self._registering:
            await self._record_sync_error(url, message)

    async def _record_sync_error(self, url: str, message: str) -> None:
        now = self.clock.now_ms()
        app = self.app_by_url(url)
        if app is not None:
            app.error = message
            app.updated_ms = now
            await self.store.save_app(app)
        await self.store.add_sync(
            SyncRecord(str(uuid.uuid4()), app.id if app else None, url, "error", message, False, [], now)
        )

    async def delete_app(self, app_id: str) -> None:
        await self.store.delete_app(app_id, self.clock.now_ms())
        self.apps.pop(app_id, None)
        self._index([f for f in self.functions.values() if f.app_id != app_id])

    async def set_paused(self, fn: Function, paused: bool) -> None:
        await self.store.set_function_paused(fn.id, self.clock.now_ms() if paused else None)
        fn.paused = paused


def config_json(fn: Function) -> bytes:
    return orjson.dumps(fn.config)
