"""Refuse what a web page in someone's browser makes the server do (both modes).

A page on any site can make the browser send a "simple" cross-site request (a form post, a
``text/plain`` fetch) to the server: it cannot read the answer, but the request is acted on. And a
page on a name the attacker controls can re-point that name to 127.0.0.1 (DNS rebinding) and then
read the dev server's answers as if it were same-origin.

- A request that may change something (any method but GET, HEAD and OPTIONS) is refused (403)
  when the browser says it comes from another site or origin: ``Sec-Fetch-Site`` ``cross-site``
  or ``same-site`` (another port of localhost is the same *site*), or, from browsers that do not
  send that header, an ``Origin`` other than the server's own. Requests without those headers
  (the SDKs, curl, other servers) and the dashboard's own (same origin) pass.
- In dev mode, bound to loopback or to one address, the ``Host`` a request names must be a
  loopback name or address, an IP address, or the configured ``--host``: a rebinding name is
  refused (421). Bound to every interface (``--host 0.0.0.0``), dev trusts its network and any
  name passes.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from pyngest.server.config import ServerConfig

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WILDCARDS = frozenset({"0.0.0.0", "::", "*", ""})
_LOOKED_AT = frozenset({b"host", b"sec-fetch-site", b"origin", b"x-forwarded-host"})


def _hostname(host: str) -> str:
    """The name in a Host header (``[::1]:8288`` -> ``::1``), lower-case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class BrowserGuard:
    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app = app
        self.trust_proxy = config.trust_proxy
        self.check_host = config.mode == "dev" and (config.host is None or config.host.strip() not in _WILDCARDS)
        self.hosts = {"localhost"} | ({_hostname(config.host)} if config.host else set())

    def host_allowed(self, host: str) -> bool:
        name = _hostname(host).rstrip(".")
        return (not name or name in self.hosts or name.endswith(".localhost") or _is_ip(name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # only the headers looked at below
        headers = {name.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []
                   if (name := k.lower()) in _LOOKED_AT}
        host = headers.get("host", "")
        if self.check_host and not self.host_allowed(host):
            await _refuse(send, 421, f"this dev server answers only to loopback names and addresses, not to "
                                     f"Host {host!r} (start it with --host to allow another name)")
            return
        if scope["method"] not in _SAFE_METHODS:
            reason = self.cross_site(headers)
            if reason:
                await _refuse(send, 403, f"cross-site request refused: {reason}")
                return
        await self.app(scope, receive, send)

    def cross_site(self, headers: dict[str, str]) -> str | None:
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"Sec-Fetch-Site is {site}"
        origin = headers.get("origin")
        if origin is None:
            return None
        own = {headers.get("host", "")}
        if self.trust_proxy and headers.get("x-forwarded-host"):
            own.add(headers["x-forwarded-host"].split(",", 1)[0].strip())
        if origin == "null" or urlsplit(origin).netloc.lower() not in {h.lower() for h in own}:
            return f"Origin {origin} is not this server"
        return None


async def _refuse(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"error": message, "status": status})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
