"""Environments and their keys (start mode).

Every app, function, event and run belongs to one environment, and nothing of one environment
sees another's: an event triggers and resumes only its own environment's runs. What selects the
environment is the key a caller presents:
- a signing key (the SDK's Bearer token at sync, the management APIs' Bearer token) names the
  environment that owns it;
- an event key (``POST /e/{key}``) names its environment.
A branch environment has no keys of its own: it shares its parent's, and is chosen by name with
``x-inngest-env`` (a header, or a query parameter) on events and syncs; an unknown name creates
it. An archived environment refuses events as upstream does ("Event key not found").

Branch auto-archive: a branch is archived :data:`BRANCH_ARCHIVE_MS` (3 days) after its latest
deploy (sync); each deploy moves the date on, and one archived this way is active again at its
next deploy. The date is a column (``auto_archive_ms``; None: auto-archive turned off), so every
process of a cluster refuses the branch's events from that moment on, whether or not the row
says archived yet; a timer on the injectable clock then writes the archive down with one
conditional UPDATE, which two processes may run at once (see ``Store.archive_due_envs``).

``pyngest dev`` is one local environment, as upstream's dev server: the default one. The flags
(``--signing-key``, ``--signing-key-fallback``, ``--event-key``) seed the default environment's
keys. Keys are few: all are kept in memory, read again when another process changed them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, ParamSpec, TypeVar

from pyngest.clock import Clock, TimerHandle
from pyngest.protocol import signing
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.store.base import EnvRecord, EventKeyRecord, SigningKeyRecord, Store

log = logging.getLogger("pyngest.environments")

ACTIVE, NEXT, PREVIOUS = "active", "next", "previous"
KINDS = ("production", "custom", "branch")
MAX_NAME = 100
BRANCH_ARCHIVE_MS = 3 * 86_400_000  # upstream: "archived 3 days after their latest deploy"
# The archive timer wakes at least this often: a real clock's long wait drifts, and a date
# moved by another process is read again anyway.
ARCHIVE_CHECK_MAX_MS = 3_600_000


class EnvError(Exception):
    """A request about environments or keys is refused; ``status`` says how."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(slots=True)
class Refusal:
    """Why an event key's filter refuses a request or an event."""

    message: str


def check_filter(spec: Any) -> dict[str, Any] | None:
    """Validate an event key's filter; return it normalized (None: no filter).

    ``{"events": {"mode": "allow"|"deny", "names": [...]}, "ips": {"mode": ..., "ranges": [...]}}``;
    a name ending in ``*`` is a prefix (``app/*``); a range is an address or a CIDR block.
    """
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - {"events", "ips"}:
        raise EnvError("filter must be an object with 'events' and/or 'ips'")
    out: dict[str, Any] = {}
    for part, items in (("events", "names"), ("ips", "ranges")):
        block = spec.get(part)
        if block is None:
            continue
        if not isinstance(block, dict) or block.get("mode") not in ("allow", "deny") \
                or not isinstance(block.get(items), list) or not all(isinstance(v, str) and v for v in block[items]):
            raise EnvError(f"filter.{part} must be {{\"mode\": \"allow\" | \"deny\", \"{items}\": [strings]}}")
        if part == "ips":
            for value in block[items]:
                try:
                    ipaddress.ip_network(value, strict=False)
                except ValueError as exc:
                    raise EnvError(f"filter.ips.ranges: {value!r} is not an IP address or CIDR range") from exc
        out[part] = {"mode": block["mode"], items: list(block[items])}
    return out or None


def _name_listed(name: str, names: list[str]) -> bool:
    return any(name == n or (n.endswith("*") and name.startswith(n[:-1])) for n in names)


def refuses_ip(filter_: dict[str, Any] | None, ip: str) -> Refusal | None:
    block = (filter_ or {}).get("ips")
    if not block:
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        listed = False
    else:
        listed = any(addr in ipaddress.ip_network(r, strict=False) for r in block["ranges"])
    if listed == (block["mode"] == "allow"):
        return None
    return Refusal(f"the event key does not allow sending from {ip or 'an unknown address'}")


def refuses_event(filter_: dict[str, Any] | None, name: str) -> Refusal | None:
    block = (filter_ or {}).get("events")
    if not block or _name_listed(name, block["names"]) == (block["mode"] == "allow"):
        return None
    return Refusal(f"the event key does not allow sending events named {name!r}")


P = ParamSpec("P")
T = TypeVar("T")


def _locked(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """One change (or reload) at a time: a reload that read the tables before a change committed
    must not put the old rows back over it (a cluster reloads when another process changed them)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        self = args[0]
        async with self._lock:  # type: ignore[attr-defined]
            return await method(*args, **kwargs)

    return wrapper


class Environments:
    def __init__(self, store: Store, clock: Clock, *, signing_key: str | None = None,
                 signing_key_fallback: str | None = None, event_keys: list[str] | None = None) -> None:
        self.store = store
        self.clock = clock
        self._flags = (signing_key, signing_key_fallback, list(event_keys or []))
        self.envs: dict[str, EnvRecord] = {DEFAULT_ENV: EnvRecord(DEFAULT_ENV, "Production", "production")}
        self.signing_keys: list[SigningKeyRecord] = []
        self.event_keys: dict[str, EventKeyRecord] = {}  # by hash
        self._lock = asyncio.Lock()
        self._timer: TimerHandle | None = None
        self._sweeping: asyncio.Future[int] | None = None
        self._running = False
        self.auto_archived = 0  # branches this process archived (in a cluster, another may have)

    # ----------------------------------------------------------------------------- loading

    @_locked
    async def load(self) -> None:
        await self._load()

    async def _load(self) -> None:
        envs = {e.id: e for e in await self.store.list_envs()}
        self.envs = envs or self.envs
        self.signing_keys = await self.store.list_signing_keys()
        self.event_keys = {k.hash: k for k in await self.store.list_event_keys()}
        self._arm()

    @_locked
    async def seed(self) -> None:
        """The flags' keys become the default environment's keys, at every start, if they are not
        stored: a key retired in the product comes back at the next start while a flag still
        gives it (docs/environments.md: retire it in the flags too)."""
        primary, fallback, event_keys = self._flags
        now = self.clock.now_ms()
        stored = {k.key for k in self.signing_keys}
        has_active = any(k.state == ACTIVE and k.env_id == DEFAULT_ENV for k in self.signing_keys)
        new: list[SigningKeyRecord] = []
        for key, state in ((primary, ACTIVE), (fallback, PREVIOUS)):
            if key and key not in stored:
                if state == ACTIVE and has_active:
                    state = PREVIOUS
                # an id from the key: processes of a cluster seeding at once write the same row
                new.append(SigningKeyRecord(_seeded_id(key), DEFAULT_ENV, key, state, now))
                has_active = has_active or state == ACTIVE
        if new:
            await self.store.save_signing_keys(new)
            self.signing_keys += new
        for i, key in enumerate(event_keys):
            digest = key_hash(key)
            if digest not in self.event_keys:
                rec = EventKeyRecord(_seeded_id(digest), DEFAULT_ENV, f"--event-key {i + 1}", digest, key[-4:],
                                     None, now)
                await self.store.save_event_key(rec)
                self.event_keys[digest] = rec

    # ------------------------------------------------------------------------------ lookups

    def get(self, env_id: str) -> EnvRecord | None:
        return self.envs.get(env_id)

    def archived(self, env_id: str) -> bool:
        env = self.envs.get(env_id)
        return env is not None and self.is_archived(env)

    def is_archived(self, env: EnvRecord) -> bool:
        """Archived by hand, or its auto-archive date has come (written down or not yet)."""
        if env.archived_ms is not None:
            return True
        return env.auto_archive_ms is not None and self.clock.now_ms() >= env.auto_archive_ms

    def archived_at(self, env: EnvRecord) -> int | None:
        if env.archived_ms is not None:
            return env.archived_ms
        return env.auto_archive_ms if self.is_archived(env) else None

    def keys_env(self, env_id: str) -> str:
        """The environment whose keys ``env_id`` uses: a branch uses its parent's."""
        env = self.envs.get(env_id)
        return env.parent_id if env is not None and env.kind == "branch" and env.parent_id else env_id

    def signing_key(self, env_id: str) -> str | None:
        """The key requests to this environment's apps are signed with."""
        owner = self.keys_env(env_id)
        for k in self.signing_keys:
            if k.env_id == owner and k.state == ACTIVE:
                return k.key
        return self._flags[0] if owner == DEFAULT_ENV else None

    def accepted_signing_keys(self, env_id: str) -> list[str]:
        owner = self.keys_env(env_id)
        return [k.key for k in self.signing_keys if k.env_id == owner]

    def any_signing_key(self) -> bool:
        return bool(self.signing_keys) or bool(self._flags[0])

    def env_of_bearer(self, token: str) -> str | None:
        """The environment whose signing key (active, next or previous) this Bearer token is."""
        for k in self.signing_keys:
            if signing.bearer_matches(token, [k.key]):
                return k.env_id
        return None

    def event_key(self, key: str) -> EventKeyRecord | None:
        return self.event_keys.get(key_hash(key)) if key else None

    def by_name(self, name: str, parent_id: str = "") -> EnvRecord | None:
        for env in self.envs.values():
            if env.parent_id == parent_id and env.name == name:
                return env
        return None

    def select(self, env_id: str, branch: str | None) -> EnvRecord | None:
        """The environment a key of ``env_id`` reaches with ``x-inngest-env: branch`` (None: not
        there yet). The key's own environment answers to its own name too."""
        env = self.envs[env_id]
        if not branch or branch == env.name:
            return env
        return self.by_name(branch, env_id)

    # ----------------------------------------------------------------------------- changes

    @_locked
    async def branch(self, parent_id: str, name: str) -> EnvRecord:
        """The branch ``name`` of ``parent_id``, created on first use."""
        found = self.select(parent_id, name)
        if found is not None:
            return found
        _check_name(name)
        now = self.clock.now_ms()
        # made by an event, before any deploy: archived 3 days on unless an app syncs into it
        env = EnvRecord(str(uuid.uuid4()), name, "branch", parent_id, None, now,
                        auto_archive_ms=now + BRANCH_ARCHIVE_MS)
        try:
            await self.store.save_env(env)
        except Exception:
            # another process of a cluster made it a moment ago (the name is unique per parent)
            await self._load()
            found = self.select(parent_id, name)
            if found is None:
                raise
            return found
        self.envs[env.id] = env
        self._arm()
        return env

    @_locked
    async def create(self, name: str, kind: str = "custom") -> tuple[EnvRecord, str]:
        """A new top-level environment and its first signing key (returned once, to show)."""
        _check_name(name)
        if kind not in ("custom",):
            raise EnvError("only 'custom' environments can be created; branch environments are created "
                           "by sending events or syncing with x-inngest-env")
        if self.by_name(name) is not None:
            raise EnvError(f"an environment named {name!r} already exists", 409)
        env = EnvRecord(str(uuid.uuid4()), name, kind, "", None, self.clock.now_ms())
        await self.store.save_env(env)
        self.envs[env.id] = env
        key = await self._new_signing_key(env.id, ACTIVE)
        return env, key.key

    @_locked
    async def set_archived(self, env_id: str, archived: bool) -> EnvRecord:
        env = self.require(env_id)
        if env.id == DEFAULT_ENV:
            raise EnvError("the default environment cannot be archived")
        now = self.clock.now_ms()
        auto = env.auto_archive_ms
        if archived:
            if env.archived_ms is not None:
                return env
            stamp = auto if auto is not None and now >= auto else now  # already due: keep its date
        else:
            stamp = None
            if auto is not None:
                # else the passed date would archive it again at once: unarchiving starts 3 days anew
                auto = now + BRANCH_ARCHIVE_MS
        env = replace(env, archived_ms=stamp, auto_archive_ms=auto)
        await self.store.update_env(env.id, env.archived_ms, env.auto_archive_ms)  # memory changes once stored
        self.envs[env.id] = env
        self._arm()
        return env

    @_locked
    async def set_auto_archive(self, env_id: str, enabled: bool) -> EnvRecord:
        """The per-environment toggle. Turned on, the branch is archived 3 days from now unless
        deployed again (not at once for a deploy long ago); turned off, it is never archived by
        itself (an archived one stays archived: unarchive it)."""
        env = self.require(env_id)
        if env.kind != "branch":
            raise EnvError("auto-archive applies to branch environments only")
        if enabled == (env.auto_archive_ms is not None):
            return env
        auto = self.clock.now_ms() + BRANCH_ARCHIVE_MS if enabled else None
        archived = env.archived_ms
        if archived is None and env.auto_archive_ms is not None and self.clock.now_ms() >= env.auto_archive_ms:
            archived = env.auto_archive_ms  # its date had come: it was archived, and stays so
        env = replace(env, archived_ms=archived, auto_archive_ms=auto)
        await self.store.update_env(env.id, env.archived_ms, env.auto_archive_ms)
        self.envs[env.id] = env
        self._arm()
        return env

    @_locked
    async def deployed(self, env_id: str) -> None:
        """An app synced into ``env_id``: a branch's auto-archive date moves to 3 days from now,
        and a branch archived by auto-archive is active again (one archived by hand is not)."""
        env = self.envs.get(env_id)
        if env is None or env.kind != "branch":
            return
        now = self.clock.now_ms()
        await self.store.env_deployed(env.id, now, now + BRANCH_ARCHIVE_MS)
        auto = env.auto_archive_ms
        archived = None if env.archived_ms is not None and env.archived_ms == auto else env.archived_ms
        self.envs[env.id] = replace(env, deployed_ms=now, archived_ms=archived,
                                    auto_archive_ms=now + BRANCH_ARCHIVE_MS if auto is not None else None)
        self._arm()

    # -------------------------------------------------------------------------- auto-archive

    def start(self) -> None:
        """Start archiving branches whose date has come (the service, once started)."""
        self._running = True
        self._arm()

    def close(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sweeping is not None:
            self._sweeping.cancel()

    def _arm(self) -> None:
        """Wake at the earliest auto-archive date not written down yet."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._running:
            return
        due = min((e.auto_archive_ms for e in self.envs.values()
                   if e.archived_ms is None and e.auto_archive_ms is not None), default=None)
        if due is not None:
            self._timer = self.clock.call_at(min(due, self.clock.now_ms() + ARCHIVE_CHECK_MAX_MS), self._wake)

    def _wake(self) -> None:
        self._timer = None
        if self._running and (self._sweeping is None or self._sweeping.done()):
            self._sweeping = asyncio.ensure_future(self.archive_due())

    @_locked
    async def archive_due(self) -> int:
        """Write down the archive of every branch whose date has come; return how many this call
        archived (0 when another process did it first)."""
        try:
            count = await self.store.archive_due_envs(self.clock.now_ms())
            # read back also when another process archived them first: a date that has come
            # must not stay unwritten here, or the timer would wake for it again at once
            await self._load()  # arms the timer again
        except Exception:  # the store is away for a moment: try again in a minute
            log.warning("archiving branch environments failed; retrying in a minute", exc_info=True)
            if self._timer is not None:
                self._timer.cancel()
            if self._running:
                self._timer = self.clock.call_at(self.clock.now_ms() + 60_000, self._wake)
            return 0
        if count:
            self.auto_archived += count
            log.info("auto-archive: archived %d branch environment(s) 3 days after their latest deploy", count)
        return count

    def require(self, env_id: str) -> EnvRecord:
        env = self.envs.get(env_id)
        if env is None:
            raise EnvError(f"environment {env_id!r} not found", 404)
        return env

    # -- signing keys: create a next one, rotate (next → active, active → previous), retire

    async def _new_signing_key(self, env_id: str, state: str) -> SigningKeyRecord:
        prefix = "prod" if env_id == DEFAULT_ENV else "test"
        rec = SigningKeyRecord(str(uuid.uuid4()), env_id, f"signkey-{prefix}-{secrets.token_hex(32)}", state,
                               self.clock.now_ms())
        await self.store.save_signing_keys([rec])
        self.signing_keys.append(rec)
        return rec

    def _own_keys(self, env_id: str) -> list[SigningKeyRecord]:
        env = self.require(env_id)
        if env.kind == "branch":
            raise EnvError("a branch environment shares its parent's keys: manage them on the parent")
        return [k for k in self.signing_keys if k.env_id == env_id]

    @_locked
    async def create_signing_key(self, env_id: str) -> SigningKeyRecord:
        keys = self._own_keys(env_id)
        if any(k.state == NEXT for k in keys):
            raise EnvError("a new signing key already waits to be activated: rotate to it or delete it", 409)
        return await self._new_signing_key(env_id, NEXT if any(k.state == ACTIVE for k in keys) else ACTIVE)

    @_locked
    async def rotate_signing_key(self, env_id: str) -> SigningKeyRecord:
        keys = self._own_keys(env_id)
        nxt = next((k for k in keys if k.state == NEXT), None)
        if nxt is None:
            raise EnvError("no new signing key to rotate to: create one first", 409)
        if any(k.state == PREVIOUS for k in keys):
            raise EnvError("the previous signing key is still accepted: delete it before rotating again", 409)
        changed = [replace(k, state=PREVIOUS) for k in keys if k.state == ACTIVE] + [replace(nxt, state=ACTIVE)]
        await self.store.save_signing_keys(changed)
        by_id = {k.id: k for k in changed}
        self.signing_keys = [by_id.get(k.id, k) for k in self.signing_keys]
        return by_id[nxt.id]

    @_locked
    async def delete_signing_key(self, env_id: str, key_id: str) -> None:
        rec = next((k for k in self._own_keys(env_id) if k.id == key_id), None)
        if rec is None:
            raise EnvError(f"signing key {key_id!r} not found", 404)
        if rec.state == ACTIVE:
            raise EnvError("the active signing key cannot be deleted: rotate to a new one first", 409)
        await self.store.delete_signing_key(key_id)
        self.signing_keys.remove(rec)

    # -- event keys

    def event_keys_of(self, env_id: str) -> list[EventKeyRecord]:
        return [k for k in self.event_keys.values() if k.env_id == self.keys_env(env_id)]

    def _event_key_by_id(self, env_id: str, key_id: str) -> EventKeyRecord:
        rec = next((k for k in self.event_keys_of(env_id) if k.id == key_id), None)
        if rec is None:
            raise EnvError(f"event key {key_id!r} not found", 404)
        return rec

    @_locked
    async def create_event_key(self, env_id: str, name: str, filter_: Any = None) -> tuple[EventKeyRecord, str]:
        """A new event key; the key itself is returned this once (only its hash is kept)."""
        return await self._create_event_key(env_id, name, filter_)

    async def _create_event_key(self, env_id: str, name: str, filter_: Any) -> tuple[EventKeyRecord, str]:
        self._own_keys(env_id)
        _check_name(name)
        key = secrets.token_urlsafe(48)
        rec = EventKeyRecord(str(uuid.uuid4()), env_id, name, key_hash(key), key[-4:], check_filter(filter_),
                             self.clock.now_ms())
        await self.store.save_event_key(rec)
        self.event_keys[rec.hash] = rec
        return rec, key

    @_locked
    async def update_event_key(self, env_id: str, key_id: str, *, name: str | None = None,
                               filter_: Any = ..., ) -> EventKeyRecord:
        rec = self._event_key_by_id(env_id, key_id)
        if name is not None:
            _check_name(name)
        new_filter = check_filter(filter_) if filter_ is not ... else rec.filter
        rec = replace(rec, name=name if name is not None else rec.name, filter=new_filter)
        await self.store.save_event_key(rec)
        self.event_keys[rec.hash] = rec
        return rec

    @_locked
    async def rotate_event_key(self, env_id: str, key_id: str) -> tuple[EventKeyRecord, str]:
        """Replace the key's secret (same name and filter); the old secret stops working."""
        old = self._event_key_by_id(env_id, key_id)
        await self._delete_event_key(env_id, key_id)
        return await self._create_event_key(env_id, old.name, old.filter)

    @_locked
    async def delete_event_key(self, env_id: str, key_id: str) -> None:
        await self._delete_event_key(env_id, key_id)

    async def _delete_event_key(self, env_id: str, key_id: str) -> None:
        rec = self._event_key_by_id(env_id, key_id)
        await self.store.delete_event_key(rec.id)
        self.event_keys.pop(rec.hash, None)


def _seeded_id(text: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, "pyngest-key:" + hashlib.sha256(text.encode()).hexdigest()))


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise EnvError(f"a name must be a non-empty string of at most {MAX_NAME} characters")
