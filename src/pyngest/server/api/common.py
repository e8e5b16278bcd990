"""Helpers shared by the HTTP routes: fast JSON responses, upstream's error shapes, auth."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pyngest.server.config import ServerConfig


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def public_error(message: str, status: int, data: Any = None, code: str | None = None) -> Response:
    """Upstream's ``publicerr`` shape: ``{"error", "status", "data", "code"?}``."""
    body: dict[str, Any] = {"error": message, "status": status, "data": data}
    if code:
        body["code"] = code
    return json_response(body, status)


def api_error(message: str, status: int) -> Response:
    """REST error shape."""
    return json_response({"error": message, "status": status}, status)


# Set on a request's scope by the auth middleware when it carries a valid dashboard session.
SESSION_KEY = "pyngest.session"
# Set by api/envs.py when the Bearer token is an environment's signing key: that environment.
BEARER_ENV = "pyngest.bearer_env"


def bearer_ok(request: Request, config: ServerConfig) -> bool:
    """In start mode the SDK and management APIs need ``Authorization: Bearer <signing key>``
    (raw or hashed, with or without its ``signkey-<env>-`` prefix), or a dashboard session."""
    if not config.requires_auth and not config.signing_key:
        return True
    # The signing keys are the environments' (the flags' seed the default one): api/envs.py found
    # the token among them, so a key retired in the product stops working though a flag names it.
    return bool(request.scope.get(SESSION_KEY) or request.scope.get(BEARER_ENV))


def unauthorized() -> Response:
    return public_error(
        "Unauthorized: send 'Authorization: Bearer <signing key>' (the key given to the server "
        "with --signing-key, raw or sha256-hashed as the SDKs send it)",
        401,
    )


async def read_json(request: Request) -> Any:
    body = await request.body()
    return orjson.loads(body) if body.strip() else None
