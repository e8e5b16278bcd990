"""Signing keys: request/response HMAC signatures and the bearer token derived from a key.

Facts (PROTOCOL.md §3.3, §3.7, §10):
- a key looks like ``signkey-<env>-<hex>``; the prefix is stripped before use;
- the HMAC key is the stripped key's *text* bytes (not hex-decoded);
- a signature header is ``t=<unix seconds>&s=<hex(HMAC_SHA256(key, body || str(t)))>``;
- the bearer token SDKs present to the server is ``sha256_hex(hex_decode(stripped key))``,
  optionally with the ``signkey-<env>-`` prefix kept (JS and Go keep it, Python does not).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

_PREFIX = re.compile(r"^signkey-\w+-")

# The JS and Go SDKs refuse signatures more than five minutes away from their clock.
MAX_SIGNATURE_AGE_S = 5 * 60


class SignatureError(Exception):
    """A signature header is missing, malformed, expired or does not match."""


def strip_prefix(key: str) -> str:
    return _PREFIX.sub("", key, count=1)


def key_prefix(key: str) -> str:
    m = _PREFIX.match(key)
    return m.group(0) if m else ""


def hash_signing_key(key: str) -> str:
    """The bearer token form of a signing key (without any prefix)."""
    stripped = strip_prefix(key)
    try:
        raw = bytes.fromhex(stripped)
    except ValueError as exc:
        raise ValueError(
            "signing key must be hex (optionally prefixed with 'signkey-<env>-')"
        ) from exc
    return hashlib.sha256(raw).hexdigest()


def hash_event_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def validate_signing_key(key: str) -> None:
    """Raise ValueError with an actionable message if ``key`` cannot be a signing key."""
    stripped = strip_prefix(key)
    if not stripped:
        raise ValueError("signing key is empty")
    if len(stripped) % 2:
        raise ValueError("signing key must be an even-length hex string")
    hash_signing_key(key)


def sign(body: bytes, key: str, unix_s: int | None = None) -> str:
    """The ``X-Inngest-Signature`` header value for ``body``."""
    t = int(time.time()) if unix_s is None else unix_s
    mac = hmac.new(strip_prefix(key).encode("utf-8"), body + str(t).encode(), hashlib.sha256)
    return f"t={t}&s={mac.hexdigest()}"


def parse_header(header: str) -> tuple[int, str]:
    fields: dict[str, str] = {}
    for part in header.split("&"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    try:
        return int(fields["t"]), fields["s"]
    except (KeyError, ValueError) as exc:
        raise SignatureError(
            "X-Inngest-Signature must look like 't=<unix seconds>&s=<hex digest>'"
        ) from exc


def verify(
    body: bytes,
    header: str | None,
    keys: list[str],
    *,
    now_s: float | None = None,
    max_age_s: int | None = MAX_SIGNATURE_AGE_S,
) -> str:
    """Check ``header`` against ``body`` with each key in turn; return the key that matched.

    ``max_age_s=None`` disables the timestamp window.
    """
    if not header:
        raise SignatureError("missing X-Inngest-Signature header")
    t, digest = parse_header(header)
    if max_age_s is not None:
        now = time.time() if now_s is None else now_s
        if abs(now - t) > max_age_s:
            raise SignatureError(
                f"signature timestamp is {int(now - t)}s away from now; "
                f"more than {max_age_s}s is refused (check the clocks)"
            )
    for key in keys:
        if not key:
            continue
        expected = hmac.new(
            strip_prefix(key).encode("utf-8"), body + str(t).encode(), hashlib.sha256
        ).hexdigest()
        if hmac.compare_digest(expected, digest):
            return key
    raise SignatureError("signature does not match the signing key")


def bearer_matches(token: str, keys: list[str]) -> bool:
    """Server side: does an ``Authorization: Bearer`` token identify one of ``keys``?

    Accepts the raw key or its hash, with or without the ``signkey-<env>-`` prefix.
    """
    presented = strip_prefix(token.strip())
    if not presented:
        return False
    ok = False
    for key in keys:
        if not key:
            continue
        raw = strip_prefix(key)
        ok |= hmac.compare_digest(presented, raw)
        try:
            ok |= hmac.compare_digest(presented, hash_signing_key(key))
        except ValueError:
            pass
    return ok
