"""Which environment a request is about (start mode; ``pyngest dev`` is one environment).

- A Bearer signing key names the environment that owns it; ``x-inngest-env`` (a header, or a
  query parameter) then picks one of that environment's branches by name.
- A dashboard session, or the default environment's key (the operator's, from the flags), may
  reach any environment: ``x-inngest-env`` names it by id or name.
- Without either, it is the default environment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from pyngest.protocol import headers as H
from pyngest.server.api.common import BEARER_ENV
from pyngest.server.environments import EnvError, Environments
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.service import Service


class BearerEnv:
    """Pure ASGI: marks a request whose Bearer token is one of an environment's signing keys
    with that environment (so the management APIs accept every environment's keys)."""

    def __init__(self, app: ASGIApp, envs: Environments) -> None:
        self.app = app
        self.envs = envs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scheme, _, token = value.decode("latin-1").partition(" ")
                    if scheme.lower() == "bearer" and token:
                        env = self.envs.env_of_bearer(token.strip())
                        if env is not None:
                            scope[BEARER_ENV] = env
                    break
        await self.app(scope, receive, send)


def env_of(info: Any) -> str:
    """The environment of a GraphQL operation (its context, set by the endpoint)."""
    context = getattr(info, "context", None)
    return str(context.get("env") or DEFAULT_ENV) if isinstance(context, dict) else DEFAULT_ENV


def requested_env(request: Request) -> str | None:
    return request.headers.get(H.ENV) or request.query_params.get(H.ENV) or None


async def request_env(request: Request, service: Service, *, create: bool = False) -> str:
    """The environment of this request; ``create``: an unknown branch name makes the branch (a
    sync does, as upstream's). Raises EnvError (404) for an environment that is not there."""
    if service.config.mode == "dev":
        return DEFAULT_ENV  # upstream's dev server is one local environment
    return await select_env(service, request.scope.get(BEARER_ENV), requested_env(request), create=create)


async def select_env(service: Service, base: str | None, name: str | None, *, create: bool = False) -> str:
    """The environment a caller whose key is ``base``'s (None: a dashboard session) reaches by
    naming ``name`` (``x-inngest-env``; a connect worker's handshake)."""
    envs = service.registry.envs
    if not name or name == base:
        return str(base or DEFAULT_ENV)
    if admin(base):  # any environment, by id or name; a new name is a branch of the default one
        if name in envs.envs:
            return name
        found = envs.by_name(name) or envs.by_name(name, DEFAULT_ENV)
        if found is not None:
            return found.id
        if create:
            return (await envs.branch(DEFAULT_ENV, name)).id
        raise EnvError(f"environment {name!r} not found (x-inngest-env names an environment or a branch by id "
                       "or name)", 404)
    base = str(base)
    if create:
        return (await envs.branch(base, name)).id
    found = envs.select(base, name)
    if found is None:
        raise EnvError(f"branch environment {name!r} not found: it is created when an app syncs or an event is "
                       "sent with x-inngest-env", 404)
    return found.id


def admin(base: str | None) -> bool:
    """A dashboard session, or the default environment's signing key (the flags' key), reaches every
    environment; another environment's key reaches that environment and its branches."""
    return base is None or base == DEFAULT_ENV


def reaches(request: Request, service: Service) -> Callable[[str], bool]:
    """Whether the caller may act on a run of an environment: a dashboard session and the default
    environment's key on all; another environment's key on its own and its branches'."""
    base = request.scope.get(BEARER_ENV)
    envs = service.registry.envs
    if service.config.mode == "dev" or admin(base):
        return lambda env_id: True
    return lambda env_id: envs.keys_env(env_id) == base
