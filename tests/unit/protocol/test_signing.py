import hashlib
import hmac

import pytest

from pyngest.protocol import signing

KEY = "signkey-test-12345678abcdef"


def test_sign_uses_stripped_key_text_and_timestamp_suffix() -> None:
    body = b'{"a":1}'
    header = signing.sign(body, KEY, unix_s=1700000000)
    expected = hmac.new(b"12345678abcdef", body + b"1700000000", hashlib.sha256).hexdigest()
    assert header == f"t=1700000000&s={expected}"


def test_verify_accepts_fallback_key_and_reports_which_matched() -> None:
    body = b"{}"
    header = signing.sign(body, "signkey-prod-aa", unix_s=100)
    used = signing.verify(body, header, [KEY, "signkey-prod-aa"], now_s=100)
    assert used == "signkey-prod-aa"


def test_verify_refuses_old_signatures_and_wrong_keys() -> None:
    header = signing.sign(b"{}", KEY, unix_s=100)
    with pytest.raises(signing.SignatureError, match="away from now"):
        signing.verify(b"{}", header, [KEY], now_s=100 + 301)
    assert signing.verify(b"{}", header, [KEY], now_s=100 + 301, max_age_s=None) == KEY
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(b"{}", header, ["signkey-test-00"], now_s=100)
    with pytest.raises(signing.SignatureError, match="missing"):
        signing.verify(b"{}", None, [KEY])
    with pytest.raises(signing.SignatureError, match="t=<unix seconds>"):
        signing.verify(b"{}", "garbage", [KEY])


def test_bearer_token_is_sha256_of_hex_decoded_key() -> None:
    hashed = hashlib.sha256(bytes.fromhex("12345678abcdef")).hexdigest()
    assert signing.hash_signing_key(KEY) == hashed
    assert signing.bearer_matches(hashed, [KEY])
    assert signing.bearer_matches("signkey-test-" + hashed, [KEY])  # JS and Go keep the prefix
    assert signing.bearer_matches(KEY, [KEY])
    assert not signing.bearer_matches("nope", [KEY])
    assert not signing.bearer_matches("", [KEY])
