"""Realtime subscription tokens: the JWT upstream issues, and every way one is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from pyngest.server.realtime import tokens
from pyngest.server.realtime.tokens import InvalidToken, Topic

NOW = 1_800_000_000
KEY = "signkey-prod-" + "ab" * 32


def _part(data: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def _sign(secret: bytes, header: object, claims: object) -> str:
    signing_input = f"{_part(header)}.{_part(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _claims(**over: object) -> dict[str, object]:
    claims: dict[str, object] = {"iss": "rt.inngest.com", "sub": tokens.DEV_ACCOUNT_ID, "exp": NOW + 60,
                                 "iat": NOW, "jti": "01J0000000000000000000000", "env": tokens.DEV_ENV_ID,
                                 "topics": [{"kind": "run", "env_id": tokens.DEV_ENV_ID, "channel": "c", "name": "t"}],
                                 "publish": False}
    claims.update(over)
    return claims


def test_issued_token_has_upstreams_header_and_claims() -> None:
    secret = tokens.secrets_for([KEY])[0]
    assert secret == ("ab" * 32).encode()  # the key's text without its prefix
    jwt = tokens.issue(secret, account_id="acct", env_id="env", topics=[Topic("user:1", "ai", env_id="env")],
                       now_s=NOW)
    header, claims, signature = jwt.split(".")
    assert orjson.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    body = orjson.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert set(body) == {"iss", "sub", "exp", "iat", "jti", "env", "topics", "publish"}
    assert body["iss"] == "rt.inngest.com" and body["exp"] - body["iat"] == 60 and body["publish"] is False
    assert body["topics"] == [{"kind": "run", "env_id": "env", "channel": "user:1", "name": "ai"}]
    # an HS256 signature any JWT library checks: HMAC-SHA256 of "header.claims"
    mac = hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert signature == base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    got = tokens.verify([secret], jwt, NOW + 59)
    assert got.topics == (Topic("user:1", "ai", env_id="env"),) and got.account_id == "acct"


def test_a_token_signed_elsewhere_with_the_same_secret_is_accepted() -> None:
    jwt = _sign(tokens.DEV_SECRET, {"alg": "HS256", "typ": "JWT"}, _claims(publish=True))
    claims = tokens.verify([tokens.DEV_SECRET], jwt, NOW)
    assert claims.publish and claims.topics[0] == Topic("c", "t")


def test_the_fallback_key_verifies_too() -> None:
    secrets = tokens.secrets_for([KEY, "cd" * 32])
    jwt = _sign(secrets[1], {"alg": "HS256"}, _claims())
    assert tokens.verify(secrets, jwt, NOW).topics
    assert tokens.secrets_for([]) == [tokens.DEV_SECRET]


@pytest.mark.parametrize(("header", "claims", "now", "why"), [
    ({"alg": "HS256"}, _claims(), NOW + 60, "expired"),
    ({"alg": "HS256"}, _claims(exp=None), NOW, "no expiry"),
    ({"alg": "HS256"}, _claims(iss="someone.else"), NOW, "issuer"),
    ({"alg": "HS256"}, _claims(iat=NOW + 3600), NOW, "future"),
    ({"alg": "none"}, _claims(), NOW, "only HS256"),
    ({"alg": "HS512"}, _claims(), NOW, "only HS256"),
    ({"alg": "HS256"}, [1, 2], NOW, "not an object"),
    ({"alg": "HS256"}, _claims(topics=[{"channel": 1}]), NOW, "topic"),
])
def test_refused(header: object, claims: object, now: int, why: str) -> None:
    jwt = _sign(tokens.DEV_SECRET, header, claims)
    with pytest.raises(InvalidToken, match=why):
        tokens.verify([tokens.DEV_SECRET], jwt, now)


@pytest.mark.parametrize(("mangle", "why"), [
    (lambda j: j + "x", "signature|base64"),
    (lambda j: j.rsplit(".", 1)[0] + ".", "not a JWT"),
    (lambda j: "a.b", "not a JWT"),
    (lambda j: j.replace(".", "=.", 1), "padded"),
    (lambda j: "e30." + j.split(".", 1)[1], "HS256"),
])
def test_malformed_or_tampered(mangle: object, why: str) -> None:
    jwt = _sign(tokens.DEV_SECRET, {"alg": "HS256"}, _claims())
    with pytest.raises(InvalidToken, match=why):
        tokens.verify([tokens.DEV_SECRET], mangle(jwt), NOW)  # type: ignore[operator]


def test_another_secret_is_refused() -> None:
    jwt = _sign(b"other", {"alg": "HS256"}, _claims())
    with pytest.raises(InvalidToken, match="signature"):
        tokens.verify([tokens.DEV_SECRET], jwt, NOW)


def test_a_token_names_its_environment_before_it_is_verified() -> None:
    staging = "11111111-1111-4111-8111-111111111111"
    jwt = tokens.issue(tokens.secrets_for([KEY])[0], account_id=tokens.DEV_ACCOUNT_ID, env_id=staging,
                       topics=[Topic("c", "t", staging)], now_s=NOW)
    # which environment's keys to check it with: read from the claims, unverified
    assert tokens.claimed_env(jwt) == staging
    assert tokens.claimed_env("not.a-token") == "" and tokens.claimed_env("a.b.c") == ""
    assert tokens.verify(tokens.secrets_for([KEY]), jwt, NOW).env_id == staging


def test_a_topic_of_another_environment_than_the_tokens_is_refused() -> None:
    secret = tokens.secrets_for([KEY])[0]
    jwt = _sign(secret, {"alg": "HS256", "typ": "JWT"}, _claims(
        env="11111111-1111-4111-8111-111111111111",
        topics=[{"kind": "run", "env_id": tokens.DEV_ENV_ID, "channel": "c", "name": "t"}]))
    with pytest.raises(InvalidToken, match="another environment"):
        tokens.verify([secret], jwt, NOW)
