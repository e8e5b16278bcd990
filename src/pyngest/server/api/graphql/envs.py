"""GraphQL for environments and their keys: the REST routes' operations (api/env_rest.py)."""

from __future__ import annotations

from typing import Any

from pyngest.server.api.envs import admin, env_of
from pyngest.server.environments import Environments
from pyngest.server.service import Service
from pyngest.server.store.base import EnvRecord, EventKeyRecord, SigningKeyRecord


def environment(env: EnvRecord, envs: Environments) -> dict[str, Any]:
    archived_at = envs.archived_at(env)
    auto = env.auto_archive_ms
    return {"id": env.id, "name": env.name, "type": env.kind, "parentID": env.parent_id or None,
            "archived": archived_at is not None, "archivedAt": archived_at, "createdAt": env.created_ms,
            "autoArchive": auto is not None, "autoArchiveAt": auto if archived_at is None else None,
            "deployedAt": env.deployed_ms}


def event_key(key: EventKeyRecord, secret: str | None = None) -> dict[str, Any]:
    return {"id": key.id, "environmentID": key.env_id, "name": key.name, "hint": f"…{key.hint}", "key": secret,
            "filter": key.filter, "createdAt": key.created_ms}


def signing_key(key: SigningKeyRecord) -> dict[str, Any]:
    return {"id": key.id, "environmentID": key.env_id, "state": key.state, "key": key.key,
            "createdAt": key.created_ms}


class EnvFields:
    def __init__(self, service: Service) -> None:
        self.s = service
        self.envs = service.registry.envs

    def root(self) -> dict[str, Any]:
        return {
            "environments": self.q_environments, "eventKeys": self.q_event_keys, "signingKeys": self.q_signing_keys,
            "createEnvironment": self.m_create_environment, "archiveEnvironment": self.m_archive_environment,
            "setEnvironmentAutoArchive": self.m_set_auto_archive,
            "createEventKey": self.m_create_event_key, "updateEventKey": self.m_update_event_key,
            "rotateEventKey": self.m_rotate_event_key, "deleteEventKey": self.m_delete_event_key,
            "createSigningKey": self.m_create_signing_key, "rotateSigningKey": self.m_rotate_signing_key,
            "deleteSigningKey": self.m_delete_signing_key,
        }

    def _check_start(self) -> None:
        if self.s.config.mode == "dev":
            raise ValueError("environments and keys are managed in start mode; pyngest dev is one local "
                             "environment that needs no keys")

    def _bearer(self, info: Any) -> str | None:
        context = getattr(info, "context", None)
        return context.get("bearer") if isinstance(context, dict) else None

    def q_environments(self, info: Any) -> list[dict[str, Any]]:
        base = self._bearer(info)  # a key sees its own environment and its branches
        return [environment(e, self.envs) for e in self.envs.envs.values() if admin(base) or base in (e.id, e.parent_id)]

    def q_event_keys(self, info: Any) -> list[dict[str, Any]]:
        return [event_key(k) for k in self.envs.event_keys_of(env_of(info))]

    def q_signing_keys(self, info: Any) -> list[dict[str, Any]]:
        owner = self.envs.keys_env(env_of(info))
        return [signing_key(k) for k in self.envs.signing_keys if k.env_id == owner]

    async def m_create_environment(self, info: Any, name: str) -> dict[str, Any]:
        self._check_start()
        if not admin(self._bearer(info)):
            raise ValueError("environments are created with the default environment's signing key or a "
                             "dashboard session")
        env, key = await self.envs.create(name)
        return {"environment": environment(env, self.envs), "signingKey": key}

    async def m_archive_environment(self, info: Any, id: str, archived: bool) -> dict[str, Any]:  # noqa: A002
        self._check_start()
        base, env = self._bearer(info), self.envs.require(id)
        if not admin(base) and base not in (env.id, env.parent_id):
            raise ValueError(f"environment {id!r} not found")
        return environment(await self.envs.set_archived(id, archived), self.envs)

    async def m_set_auto_archive(self, info: Any, id: str, enabled: bool) -> dict[str, Any]:  # noqa: A002
        self._check_start()
        base, env = self._bearer(info), self.envs.require(id)
        if not admin(base) and base not in (env.id, env.parent_id):
            raise ValueError(f"environment {id!r} not found")
        return environment(await self.envs.set_auto_archive(id, enabled), self.envs)

    async def m_create_event_key(self, info: Any, name: str, filter: Any = None) -> dict[str, Any]:  # noqa: A002
        self._check_start()
        rec, secret = await self.envs.create_event_key(self.envs.keys_env(env_of(info)), name, filter)
        return event_key(rec, secret)

    async def m_update_event_key(self, info: Any, id: str, name: str | None = None, filter: Any = None,  # noqa: A002
                                 clearFilter: bool = False) -> dict[str, Any]:  # noqa: N803
        self._check_start()
        new_filter: Any = None if clearFilter else (filter if filter is not None else ...)
        return event_key(await self.envs.update_event_key(env_of(info), id, name=name, filter_=new_filter))

    async def m_rotate_event_key(self, info: Any, id: str) -> dict[str, Any]:  # noqa: A002
        self._check_start()
        rec, secret = await self.envs.rotate_event_key(env_of(info), id)
        return event_key(rec, secret)

    async def m_delete_event_key(self, info: Any, id: str) -> bool:  # noqa: A002
        self._check_start()
        await self.envs.delete_event_key(env_of(info), id)
        return True

    async def m_create_signing_key(self, info: Any) -> dict[str, Any]:
        self._check_start()
        return signing_key(await self.envs.create_signing_key(env_of(info)))

    async def m_rotate_signing_key(self, info: Any) -> dict[str, Any]:
        self._check_start()
        return signing_key(await self.envs.rotate_signing_key(env_of(info)))

    async def m_delete_signing_key(self, info: Any, id: str) -> bool:  # noqa: A002
        self._check_start()
        await self.envs.delete_signing_key(env_of(info), id)
        return True
