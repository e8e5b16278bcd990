"""Realtime subscription tokens: JWTs as upstream issues them (PROTOCOL.md §13).

HS256, issuer ``rt.inngest.com``, a minute of validity by default, claims ``sub`` (account id),
``env`` (environment id), ``topics`` (``[{"kind", "env_id", "channel", "name"}]``) and
``publish`` (whether the bearer may publish), plus ``iat``, ``exp`` and a ULID ``jti``.

The secret: with a signing key, the key's text without its ``signkey-<env>-`` prefix (the same
bytes the request signatures use), so whoever holds the signing key can mint tokens as the
server does; the fallback key is accepted too. In ``pyngest start`` each environment's tokens
are signed with that environment's active key (a branch's with its parent's) and checked
against that environment's keys only: a token names its environment (``env``), and a key of
one environment cannot make a token of another. Without a signing key (``dev``), upstream's dev
secret ``dev-mode-is-not-secret``. Upstream's OSS server uses that dev secret even for
``inngest start`` (docs/compatibility.md).

Written here rather than with a JWT library: one algorithm, a handful of claims, and the checks
upstream's verifier makes (HS256 only, strict base64, issuer, expiry required, ``iat`` not in
the future).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from pyngest.protocol import signing
from pyngest.protocol.ids import new_ulid

ISSUER = "rt.inngest.com"
DEFAULT_EXPIRY_S = 60
DEV_SECRET = b"dev-mode-is-not-secret"
# upstream's fixed dev-server account and environment
DEV_ACCOUNT_ID = "00000000-0000-4000-a000-000000000000"
DEV_ENV_ID = "00000000-0000-4000-b000-000000000000"
# clocks of two processes of a cluster may differ a little: a token issued by one is used on another
IAT_LEEWAY_S = 5
_HEADER = base64.urlsafe_b64encode(orjson.dumps({"alg": "HS256", "typ": "JWT"})).rstrip(b"=")


class InvalidToken(ValueError):
    """The token cannot be used; the message says why."""


@dataclass(frozen=True)
class Topic:
    """One topic of one channel a token grants (``kind`` is ``run`` for published data)."""

    channel: str
    name: str
    env_id: str = DEV_ENV_ID
    kind: str = "run"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "env_id": self.env_id, "channel": self.channel, "name": self.name}


@dataclass(frozen=True)
class Claims:
    account_id: str
    env_id: str
    topics: tuple[Topic, ...]
    publish: bool
    expires_s: int


def secrets_for(signing_keys: list[str]) -> list[bytes]:
    """The keys tokens are signed with (the first) and checked against (all)."""
    if not signing_keys:
        return [DEV_SECRET]
    return [signing.strip_prefix(k).encode() for k in signing_keys]


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(part: str) -> bytes:
    if "=" in part:
        raise InvalidToken("invalid realtime token: padded base64")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("invalid realtime token: malformed base64") from exc


def _mac(secret: bytes, signing_input: bytes) -> bytes:
    return hmac.new(secret, signing_input, hashlib.sha256).digest()


def issue(secret: bytes, *, account_id: str, env_id: str, topics: list[Topic], now_s: int,
          expiry_s: int = DEFAULT_EXPIRY_S, publish: bool = False) -> str:
    claims: dict[str, Any] = {
        "iss": ISSUER, "sub": account_id, "exp": now_s + expiry_s, "iat": now_s, "jti": new_ulid(now_s * 1000),
        "env": env_id, "topics": [t.to_json() for t in topics], "publish": publish,
    }
    signing_input = _HEADER + b"." + _b64(orjson.dumps(claims))
    return (signing_input + b"." + _b64(_mac(secret, signing_input))).decode()


def claimed_env(token: str) -> str:
    """The environment a token says it is for, read before its signature is checked: it says
    which environment's keys to check the signature with ("" if unreadable: verify says why)."""
    parts = token.split(".")
    if len(parts) != 3:
        return ""
    try:
        payload = orjson.loads(_unb64(parts[1]))
    except (InvalidToken, orjson.JSONDecodeError):
        return ""
    env = payload.get("env") if isinstance(payload, dict) else None
    return env if isinstance(env, str) else ""


def verify(secrets: list[bytes], token: str, now_s: int) -> Claims:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise InvalidToken("invalid realtime token: not a JWT (three dot-separated parts)")
    try:
        header = orjson.loads(_unb64(parts[0]))
        payload = orjson.loads(_unb64(parts[1]))
    except orjson.JSONDecodeError as exc:
        raise InvalidToken("invalid realtime token: its header or claims are not JSON") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise InvalidToken("invalid realtime token: only HS256 tokens are accepted")
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    signature = _unb64(parts[2])
    if not any(hmac.compare_digest(_mac(s, signing_input), signature) for s in secrets):
        raise InvalidToken("invalid realtime token: the signature does not match this server's key")
    if not isinstance(payload, dict):
        raise InvalidToken("invalid realtime token: the claims are not an object")
    if payload.get("iss") != ISSUER:
        raise InvalidToken(f"invalid realtime token: the issuer is not {ISSUER}")
    exp, iat = payload.get("exp"), payload.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidToken("invalid realtime token: no expiry (exp)")
    if exp <= now_s:
        raise InvalidToken("invalid realtime token: expired (subscription tokens last a minute; get a new one)")
    if isinstance(iat, int | float) and not isinstance(iat, bool) and iat > now_s + IAT_LEEWAY_S:
        raise InvalidToken("invalid realtime token: issued in the future (iat)")
    env = payload.get("env")
    topics: list[Topic] = []
    for raw in payload.get("topics") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("channel"), str) or not isinstance(raw.get("name"), str):
            raise InvalidToken("invalid realtime token: a topic is not {channel, name}")
        topic_env = str(raw.get("env_id") or env)
        if env and topic_env != env:
            # a token is for one environment: its topics are that environment's
            raise InvalidToken("invalid realtime token: a topic names another environment than the token's")
        topics.append(Topic(channel=raw["channel"], name=raw["name"], env_id=topic_env,
                            kind=str(raw.get("kind") or "run")))
    return Claims(account_id=str(payload.get("sub") or ""), env_id=str(env or ""), topics=tuple(topics),
                  publish=payload.get("publish") is True, expires_s=int(exp))
