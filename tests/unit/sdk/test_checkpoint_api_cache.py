"""A client renders its checkpoint API's URL prefix and request heads once (``checkpoint.API``)
and only puts each run's id in: the bytes sent are those of rendering everything per run, and
the rendering is redone when what it was built from changes."""

from __future__ import annotations

import urllib.parse

import pytest

import pyngest as inngest
from pyngest.httpclient import Prepared
from pyngest.protocol.signing import hash_signing_key
from pyngest.sdk import config
from pyngest.sdk.checkpoint import API

KEY = "signkey-test-" + "ab" * 32
FALLBACK = "signkey-test-" + "cd" * 32


def _rendered_per_run(client: inngest.Inngest, run_id: str) -> tuple[str, list[bytes]]:
    """What the SDK sent before the cache: everything built for the run."""
    url = urllib.parse.urljoin(client.api_origin, f"/v1/checkpoint/{urllib.parse.quote(run_id)}/async")
    headers = config.base_headers(env=client.env, framework=None, server_kind=None)
    headers["content-type"] = "application/json"
    keys = [k for k in (client.signing_key, client.signing_key_fallback) if k] or [None]
    heads = [{**headers, **({"authorization": f"Bearer {hash_signing_key(k)}"} if k else {})} for k in keys]
    return url, [Prepared.render(url, h).request(b'{"x":1}') for h in heads]


@pytest.mark.parametrize("origin", [
    "http://127.0.0.1:8288", "http://127.0.0.1:8288/", "https://api.example.com/prefix/", "http://h:1/base?x=1",
    "http://[::1]:8288/",
])
@pytest.mark.parametrize("run_id", [
    "01HRUNRUNRUNRUNRUNRUNRUNRU", "a b", "ü?#", "a/b", "a//b", "../x", "x.y", "", "/",
])
def test_a_runs_checkpoint_request_is_what_rendering_it_whole_gives(origin: str, run_id: str) -> None:
    client = inngest.Inngest(app_id="c", is_production=False, api_base_url=origin, env="branch-1")
    url, prepared = API(client).for_run(run_id)
    assert (url, [p.request(b'{"x":1}') for p in prepared]) == _rendered_per_run(client, run_id)


def test_one_head_per_signing_key_in_order() -> None:
    client = inngest.Inngest(app_id="c", is_production=True, signing_key=KEY, signing_key_fallback=FALLBACK,
                             api_base_url="http://127.0.0.1:8288")
    api = API(client)
    assert [h["authorization"] for h in api.headers] == [f"Bearer {hash_signing_key(k)}" for k in (KEY, FALLBACK)]
    assert [p.request(b'{"x":1}') for p in api.for_run("r")[1]] == _rendered_per_run(client, "r")[1]


def test_the_cache_is_rebuilt_when_its_inputs_change() -> None:
    client = inngest.Inngest(app_id="c", is_production=False, api_base_url="http://127.0.0.1:8288")
    support = client._checkpoint_support
    first = support.api(client)
    assert support.api(client) is first  # once per client, not per run
    client._api_origin = "http://127.0.0.1:9999/"
    moved = support.api(client)
    assert moved is not first and moved.for_run("r")[0] == "http://127.0.0.1:9999/v1/checkpoint/r/async"
    client._signing_key = KEY
    keyed = support.api(client)
    assert keyed is not moved and keyed.headers[0]["authorization"] == f"Bearer {hash_signing_key(KEY)}"
    client._env = "branch-2"
    assert support.api(client).headers[0]["x-inngest-env"] == "branch-2"
    url, prepared = support.api(client).for_run("r")
    assert (url, [p.request(b'{"x":1}') for p in prepared]) == _rendered_per_run(client, "r")


def test_requests_on_the_defaults_share_one_frozen_settings_object(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import FrozenInstanceError

    from pyngest.sdk.checkpoint import settings

    monkeypatch.delenv("INNGEST_CHECKPOINTING", raising=False)
    shared = settings(None, None)
    assert shared is not None and shared is settings(True, None) is settings(None, True)
    assert shared == inngest.Checkpointing()
    with pytest.raises(FrozenInstanceError):
        shared.max_runtime = 1  # type: ignore[misc]
    own = inngest.Checkpointing(max_runtime=5)
    assert settings(own, True) is own and settings(None, False) is None
    monkeypatch.setenv("INNGEST_CHECKPOINTING", "0")  # read per request, as before
    assert settings(None, None) is None and settings(True, None) is shared
