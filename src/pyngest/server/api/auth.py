"""Authentication of the dashboard and the management APIs in ``start`` mode.

Upstream's self-hosted dashboard has none; here, in ``start`` mode:
- the dashboard pages need a signed session cookie, obtained on ``/login`` with the credential
  given by ``--dashboard-user``/``--dashboard-password`` (or ``INNGEST_DASHBOARD_*``; without a
  password the server's signing key is the password);
- the management APIs (GraphQL, REST ``/v1``, live updates, metrics, the OpenAPI document) take
  either that cookie or ``Authorization: Bearer <signing key>``, as upstream's REST API does;
- the Event API keeps its event keys and the SDK routes their signing-key checks.
``dev`` stays open.

The cookie is ``<user>.<expiry>.<nonce>.<HMAC-SHA256>``, keyed by the signing key and the password, so
changing either signs everyone out. It is ``HttpOnly`` and ``SameSite=Strict`` (a cross-site page
cannot make the browser send it); writes from another site or origin are refused for every caller
(``guard.py``). Signing out stores the session as revoked until its expiry, so the cookie stays
refused after a restart and on every process of a cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import time
from collections import deque
from urllib.parse import parse_qs, quote

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from pyngest.server.api.common import BEARER_ENV, SESSION_KEY
from pyngest.server.config import ServerConfig
from pyngest.server.store.base import Store, StoreUnavailable

COOKIE = "pyngest_session"
SESSION_S = 7 * 86_400
# wrong passwords allowed per window, from one client and from everyone together
FAILURE_WINDOW_S = 15 * 60
MAX_FAILURES_PER_CLIENT = 10
MAX_FAILURES = 100
MAX_REVOKED = 100_000  # signed-out sessions this process remembers (the store keeps them all)
MAX_CLIENTS = 100_000  # clients whose wrong passwords are remembered

# Routes with their own authentication (or none by design).
_OPEN_PREFIXES = ("/e/", "/invoke/", "/fn/register", "/v0/runs/", "/v1/signals", "/v1/checkpoint/",
                  "/v1/http/", "/v1/realtime/", "/static/", "/auth/")
_OPEN_PATHS = {"/health", "/login", "/dev", "/favicon.ico"}
_API_PREFIXES = ("/v0/", "/v1/", "/metrics", "/openapi.json")


class SignIns:
    """What sign-in remembers between requests (kept by the service, shared by its ASGI apps)."""

    def __init__(self) -> None:
        self.failures: dict[str, deque[float]] = {}  # client -> times of its wrong passwords
        self.all_failures: deque[float] = deque()
        # signed-out sessions seen by this process (session id -> expiry), so that a revoked
        # cookie is refused without asking the store again
        self.revoked: dict[str, int] = {}


def session_id(mac: str) -> str:
    """What the store keeps of a signed-out cookie: a hash of its MAC, not the MAC itself."""
    return hashlib.sha256(mac.encode()).hexdigest()


class DashboardAuth:
    def __init__(self, config: ServerConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store
        self.user = config.dashboard_user or "admin"
        secret = config.dashboard_password or config.signing_key or ""
        self.password = secret
        self._key = hashlib.sha256(b"pyngest-session\0" + (config.signing_key or "").encode() + b"\0"
                                   + secret.encode()).digest()

        self.sessions = SignIns()

    @property
    def required(self) -> bool:
        return self.config.requires_auth

    # -------------------------------------------------------------- guessing, signing out

    def client_of(self, request: Request) -> str:
        """Who is signing in: the peer's address, or (--trust-proxy) the address the proxy saw."""
        if self.config.trust_proxy:
            forwarded = request.headers.get("x-forwarded-for", "")
            last = forwarded.rsplit(",", 1)[-1].strip()
            if last:
                return last
        return request.client.host if request.client is not None else ""

    def locked_for(self, client: str, now: float) -> float:
        """Seconds until this client may try a password again (0: now)."""
        horizon = now - FAILURE_WINDOW_S
        while self.sessions.all_failures and self.sessions.all_failures[0] <= horizon:
            self.sessions.all_failures.popleft()
        mine = self.sessions.failures.get(client)
        while mine and mine[0] <= horizon:
            mine.popleft()
        if mine is not None and not mine:
            del self.sessions.failures[client]
        wait = 0.0
        if mine is not None and len(mine) >= MAX_FAILURES_PER_CLIENT:
            wait = mine[-MAX_FAILURES_PER_CLIENT] - horizon
        if len(self.sessions.all_failures) >= MAX_FAILURES:
            wait = max(wait, self.sessions.all_failures[-MAX_FAILURES] - horizon)
        return wait

    def failed(self, client: str, now: float) -> None:
        self.sessions.failures.setdefault(client, deque()).append(now)
        self.sessions.all_failures.append(now)
        if len(self.sessions.failures) > MAX_CLIENTS:  # many addresses: forget the oldest
            self.sessions.failures.pop(next(iter(self.sessions.failures)))

    async def revoke(self, cookie: str | None) -> None:
        """Sign the cookie's session out for good: in the store (which every process and every
        restart reads), then in this process's memory."""
        session = self._session(cookie)
        if session is None:
            return
        sid, expires = session[1], session[2]
        now = int(time.time())
        if self.store is not None:
            await self.store.revoke_session(sid, expires * 1000, now * 1000)
        self._remember_revoked(sid, expires, now)

    def _remember_revoked(self, sid: str, expires: int, now: int) -> None:
        if len(self.sessions.revoked) >= MAX_REVOKED:
            self.sessions.revoked = {m: e for m, e in self.sessions.revoked.items() if e >= now}
            while len(self.sessions.revoked) >= MAX_REVOKED:
                self.sessions.revoked.pop(next(iter(self.sessions.revoked)))
        self.sessions.revoked[sid] = expires

    async def signed_in_user(self, cookie: str | None) -> str | None:
        """The user of a valid session that was not signed out here, after a restart, or on
        another process (the store says)."""
        session = self._session(cookie)
        if session is None:
            return None
        user, sid, expires = session
        if self.store is not None and await self.store.session_revoked(sid):
            self._remember_revoked(sid, expires, int(time.time()))
            return None
        return user

    def secure(self, request: Request) -> bool:
        """Whether the browser reached us over https (--trust-proxy: as the proxy says)."""
        if request.url.scheme == "https":
            return True
        proto = request.headers.get("x-forwarded-proto", "") if self.config.trust_proxy else ""
        return proto.split(",", 1)[0].strip().lower() == "https"

    def make_cookie(self, user: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + SESSION_S)
        # the nonce makes each sign-in its own session: two sign-ins in the same second would
        # otherwise share a cookie, and signing out one would sign out the other
        payload = f"{quote(user, safe='')}.{expires}.{secrets.token_hex(8)}"
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()
        return f"{payload}.{mac}"

    def _session(self, cookie: str | None) -> tuple[str, str, int] | None:
        """(user, session id, expiry in s) of a cookie this server made that has not expired
        nor been signed out in this process; None for any other."""
        if not cookie or cookie.count(".") != 3:
            return None
        user, expires, nonce, mac = cookie.split(".")
        good = hmac.new(self._key, f"{user}.{expires}.{nonce}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(good, mac) or not expires.isdigit() or int(expires) < time.time():
            return None
        sid = session_id(mac)
        return None if sid in self.sessions.revoked else (user, sid, int(expires))

    def session_user(self, cookie: str | None) -> str | None:
        """The user of a valid cookie, as far as this process knows (see :meth:`signed_in_user`)."""
        session = self._session(cookie)
        return session[0] if session else None

    def credentials_ok(self, user: str, password: str) -> bool:
        if not self.password:
            return False
        user_ok = hmac.compare_digest(user.encode(), self.user.encode())
        pass_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return user_ok and pass_ok

    # ---------------------------------------------------------------------------- routes

    async def login_page(self, request: Request) -> Response:
        if not self.required:
            return RedirectResponse("/", 303)
        return HTMLResponse(_login_html(_safe_next(request.query_params.get("next")),
                                        error=request.query_params.get("error") == "1"))

    async def login(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "")
        body = await request.body()
        if ctype.startswith("application/json"):
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = {}
            fields = {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        else:
            fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        user = fields.get("username") or fields.get("email") or ""
        nxt = _safe_next(fields.get("next"))
        as_json = ctype.startswith("application/json")
        if not self.required:
            return JSONResponse({"ok": True}) if as_json else RedirectResponse(nxt, 303)
        client, now = self.client_of(request), time.monotonic()
        wait = self.locked_for(client, now)
        if wait > 0:
            message = (f"Too many wrong passwords; sign-in is locked for {int(wait) + 1} s "
                       f"(at most {MAX_FAILURES_PER_CLIENT} per client and {MAX_FAILURES} in all "
                       f"per {FAILURE_WINDOW_S // 60} minutes)")
            headers = {"Retry-After": str(int(wait) + 1)}
            if as_json:
                return JSONResponse({"ok": False, "error": message}, 429, headers=headers)
            return HTMLResponse(_login_html(nxt, error=False, notice=message), 429, headers=headers)
        if not self.credentials_ok(user, fields.get("password", "")):
            self.failed(client, now)
            if as_json:
                return JSONResponse({"ok": False, "error": "wrong user name or password"}, 401)
            return RedirectResponse(f"/login?error=1&next={quote(nxt, safe='')}", 303)
        resp: Response = JSONResponse({"ok": True}) if as_json else RedirectResponse(nxt, 303)
        resp.set_cookie(COOKIE, self.make_cookie(user), max_age=SESSION_S, httponly=True, samesite="strict",
                        secure=self.secure(request), path="/")
        return resp

    async def logout(self, request: Request) -> Response:
        await self.revoke(request.cookies.get(COOKIE))
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=self.secure(request))
        return resp

    async def status(self, request: Request) -> Response:
        user = request.scope.get(SESSION_KEY)
        return JSONResponse({"authRequired": self.required, "authenticated": (not self.required) or bool(user),
                             "user": user if self.required else None})


class AuthMiddleware:
    """Pure ASGI: marks requests with a valid session, turns away unauthenticated ones."""

    def __init__(self, app: ASGIApp, auth: DashboardAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.auth.required:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            user = await self.auth.signed_in_user(request.cookies.get(COOKIE))
        except StoreUnavailable as exc:  # cannot tell whether the session was signed out
            resp: Response = JSONResponse({
                "error": f"the server's database is unavailable, so the session cannot be checked; try again: {exc}",
                "status": 503}, 503, headers={"Retry-After": "1"})
            await resp(scope, receive, send)
            return
        if user is not None:
            scope[SESSION_KEY] = user
        path = scope["path"]
        if path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        api = path.startswith(_API_PREFIXES)
        if user is not None:  # (cross-site writes were refused before: see guard.py)
            await self.app(scope, receive, send)
            return
        if api and scope.get(BEARER_ENV):  # one of an environment's signing keys (api/envs.py)
            await self.app(scope, receive, send)
            return
        if api:
            resp = JSONResponse({
                "error": "Unauthorized: sign in to the dashboard, or send 'Authorization: Bearer <signing key>'",
                "status": 401}, 401)
        else:
            target = path + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
            resp = RedirectResponse(f"/login?next={quote(target, safe='')}", 303)
        await resp(scope, receive, send)


def _safe_next(value: str | None) -> str:
    # only same-site paths: "//evil.example" or "https://..." would be an open redirect
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _login_html(next_path: str, *, error: bool, notice: str = "") -> str:
    message = '<p class="login-error" role="alert">Wrong user name or password.</p>' if error else ""
    if notice:
        message = f'<p class="login-error" role="alert">{html.escape(notice)}</p>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sign in · pyngest</title><link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/app.css"></head>
<body class="login-body"><main class="login-card">
<h1><span class="logo-dot"></span> pyngest</h1>
<p class="muted">Sign in to the dashboard of this server.</p>{message}
<form method="post" action="/auth/login">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label>User name <input name="username" autocomplete="username" required autofocus value="admin"></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button class="btn primary" type="submit">Sign in</button>
</form>
<p class="muted small">The password is set with <code>--dashboard-password</code>
(<code>INNGEST_DASHBOARD_PASSWORD</code>); without one, it is the server's signing key.</p>
</main></body></html>"""
