"""Header names on the server's outgoing requests, in the form Go's HTTP client sends."""

from __future__ import annotations

import pytest

from pyngest.server.executor.gateway import canonical_header


@pytest.mark.parametrize(
    ("name", "sent"),
    [
        ("x-api-key", "X-Api-Key"),
        ("content-TYPE", "Content-Type"),
        ("x-my-header", "X-My-Header"),
        ("WWW-authenticate", "Www-Authenticate"),
        ("x_my_header", "X_my_header"),  # "_" is a token character but not a separator
        ("bad header", "bad header"),  # not a token: Go leaves it as it is
        ("", ""),
    ],
)
def test_canonical_header(name: str, sent: str) -> None:
    assert canonical_header(name) == sent
