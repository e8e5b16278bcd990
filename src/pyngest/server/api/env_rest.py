"""REST for environments and their keys (start mode): ``/v1/envs``, ``/v1/keys/event``,
``/v1/keys/signing``. A key's environment is the one the caller's signing key (or, for a dashboard
session, ``x-inngest-env``) selects; an event key's secret is shown once, when it is made."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pyngest.protocol.durations import iso_ms
from pyngest.server.api.common import BEARER_ENV, api_error, bearer_ok, json_response, unauthorized
from pyngest.server.api.envs import admin, request_env
from pyngest.server.environments import EnvError, Environments
from pyngest.server.service import Service
from pyngest.server.store.base import EnvRecord, EventKeyRecord, SigningKeyRecord


def env_json(env: EnvRecord, envs: Environments) -> dict[str, Any]:
    archived_at = envs.archived_at(env)
    auto = env.auto_archive_ms
    return {"id": env.id, "name": env.name, "type": env.kind, "parent_id": env.parent_id or None,
            "archived": archived_at is not None,
            "archived_at": iso_ms(archived_at) if archived_at is not None else None,
            "created_at": iso_ms(env.created_ms),
            # branches only: the latest deploy, and when auto-archive archives it (None: turned off)
            "auto_archive": auto is not None,
            "auto_archive_at": iso_ms(auto) if auto is not None and archived_at is None else None,
            "deployed_at": iso_ms(env.deployed_ms) if env.deployed_ms is not None else None}


def event_key_json(key: EventKeyRecord, secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": key.id, "environment_id": key.env_id, "name": key.name,
                           "hint": f"…{key.hint}", "filter": key.filter, "created_at": iso_ms(key.created_ms)}
    if secret is not None:
        out["key"] = secret  # shown this once: only its hash is kept
    return out


def signing_key_json(key: SigningKeyRecord) -> dict[str, Any]:
    return {"id": key.id, "environment_id": key.env_id, "state": key.state, "key": key.key,
            "created_at": iso_ms(key.created_ms)}


class EnvREST:
    def __init__(self, service: Service) -> None:
        self.s = service
        self.envs = service.registry.envs

    async def _call(self, request: Request, act: Any) -> Response:
        """Authenticate, find the environment, read the body; EnvError becomes its 4xx."""
        if not bearer_ok(request, self.s.config):
            return unauthorized()
        if self.s.config.mode == "dev":
            return api_error("environments and keys are managed in start mode; pyngest dev is one local "
                             "environment that needs no keys", 400)
        try:
            raw = await request.body()
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as exc:
            return api_error(f"the body must be JSON: {exc}", 400)
        if not isinstance(body, dict):
            return api_error("the body must be a JSON object", 400)
        try:
            env_id = await request_env(request, self.s)
            result = await act(env_id, body)
        except EnvError as exc:
            return api_error(exc.message, exc.status)
        status = 201 if request.method == "POST" and isinstance(result, dict) and result.get("_created") else 200
        if isinstance(result, dict):
            result.pop("_created", None)
        return json_response({"data": result}, status)

    # ------------------------------------------------------------------------ environments

    async def list_envs(self, request: Request) -> Response:
        async def act(env_id: str, body: dict[str, Any]) -> Any:
            base = request.scope.get(BEARER_ENV)
            envs = list(self.envs.envs.values())
            if not admin(base):  # a key sees its own environment and its branches
                envs = [e for e in envs if base in (e.id, e.parent_id)]
            return [env_json(e, self.envs) for e in envs]

        return await self._call(request, act)

    async def create_env(self, request: Request) -> Response:
        async def act(env_id: str, body: dict[str, Any]) -> Any:
            if not admin(request.scope.get(BEARER_ENV)):
                raise EnvError("environments are created with the default environment's signing key or a "
                               "dashboard session", 403)
            env, key = await self.envs.create(body.get("name"), str(body.get("type") or "custom"))  # type: ignore[arg-type]
            return {**env_json(env, self.envs), "signing_key": key, "_created": True}

        return await self._call(request, act)

    async def archive(self, request: Request) -> Response:
        archived = request.url.path.endswith("/archive")

        async def act(env_id: str, body: dict[str, Any]) -> Any:
            target = request.path_params["env_id"]
            self._may_reach(request, target)
            return env_json(await self.envs.set_archived(target, archived), self.envs)

        return await self._call(request, act)

    async def update_env(self, request: Request) -> Response:
        """``PATCH /v1/envs/{id}`` ``{"auto_archive": false}``: a branch's auto-archive toggle."""

        async def act(env_id: str, body: dict[str, Any]) -> Any:
            target = request.path_params["env_id"]
            self._may_reach(request, target)
            unknown = set(body) - {"auto_archive"}
            if unknown:
                raise EnvError(f"unknown field(s) {sorted(unknown)}: an environment's only setting is "
                               "'auto_archive' (true or false)")
            env = self.envs.require(target)
            if "auto_archive" in body:
                if not isinstance(body["auto_archive"], bool):
                    raise EnvError("auto_archive must be true or false")
                env = await self.envs.set_auto_archive(target, body["auto_archive"])
            return env_json(env, self.envs)

        return await self._call(request, act)

    def _may_reach(self, request: Request, target: str) -> None:
        base = request.scope.get(BEARER_ENV)
        env = self.envs.require(target)
        if not admin(base) and base not in (env.id, env.parent_id):
            raise EnvError(f"environment {target!r} not found", 404)

    # -------------------------------------------------------------------------- event keys

    async def list_event_keys(self, request: Request) -> Response:
        async def act(env_id: str, body: dict[str, Any]) -> Any:
            return [event_key_json(k) for k in self.envs.event_keys_of(env_id)]

        return await self._call(request, act)

    async def create_event_key(self, request: Request) -> Response:
        async def act(env_id: str, body: dict[str, Any]) -> Any:
            rec, secret = await self.envs.create_event_key(self.envs.keys_env(env_id), body.get("name") or "Event key",
                                                           body.get("filter"))
            return {**event_key_json(rec, secret), "_created": True}

        return await self._call(request, act)

    async def update_event_key(self, request: Request) -> Response:
        async def act(env_id: str, body: dict[str, Any]) -> Any:
            rec = await self.envs.update_event_key(env_id, request.path_params["key_id"], name=body.get("name"),
                                                   filter_=body.get("filter", ...))
            return event_key_json(rec)

        return await self._call(request, act)

    async def rotate_event_key(self, request: Request) -> Response:
        async def act(env_id: str, body: dict[str, Any]) -> Any:
            rec, secret = await self.envs.rotate_event_key(env_id, request.path_params["key_id"])
            return event_key_json(rec, secret)

        return await self._call(request, act)

    async def delete_event_key(self, request: Request) -> Response:
        async def act(env_id: str, body: dict[str, Any]) -> Any:
            await self.envs.delete_event_key(env_id, request.path_params["key_id"])
            return {"deleted": request.path_params["key_id"]}

        return await self._call(request, act)

    # ------------------------------------------------------------------------ signing keys

    async def list_signing_keys(self, request: Request) -> Response:
        async def act(env_id: str, body: dict[str, Any]) -> Any:
            owner = self.envs.keys_env(env_id)
            return [signing_key_json(k) for k in self.envs.signing_keys if k.env_id == owner]

        return await self._call(request, act)

    async def create_signing_key(self, request: Request) -> Response:
        async def act(env_id: str, body: dict[str, Any]) -> Any:
            return {**signing_key_json(await self.envs.create_signing_key(env_id)), "_created": True}

        return await self._call(request, act)

    async def rotate_signing_key(self, request: Request) -> Response:
        async def act(env_id: str, body: dict[str, Any]) -> Any:
            return signing_key_json(await self.envs.rotate_signing_key(env_id))

        return await self._call(request, act)

    async def delete_signing_key(self, request: Request) -> Response:
        async def act(env_id: str, body: dict[str, Any]) -> Any:
            await self.envs.delete_signing_key(env_id, request.path_params["key_id"])
            return {"deleted": request.path_params["key_id"]}

        return await self._call(request, act)
