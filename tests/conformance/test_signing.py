"""``pyngest start``: a server with a signing key and an event key, and apps in cloud mode
(``INNGEST_DEV=0``) that verify every request the server sends them.

A completed run proves the server signs execution requests the way the SDKs verify them; the
apps sync with ``Authorization: Bearer <hashed key>``. Wrong keys are refused: events sent with
an unknown event key, a sync from an app holding another signing key, and API calls without
the key.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .harness import (
    APP_KINDS,
    Api,
    App,
    PollTimeout,
    Server,
    hashed_signing_key,
    large_state_digests,
    new_tag,
    poll,
)

pytestmark = pytest.mark.conformance

SIGNING_KEY = secrets.token_hex(32)
EVENT_KEY = f"evt-{secrets.token_hex(16)}"

# How each app spells the same key: bare, as `inngest start` takes it, or with the
# `signkey-<env>-` prefix that the SDKs strip (JS also keeps it on its Bearer token).
KEY_SPELLING = {
    "py_fastapi": SIGNING_KEY,
    "py_flask": f"signkey-prod-{SIGNING_KEY}",
    "js": f"signkey-test-{SIGNING_KEY}",
    "pyngest_fastapi": f"signkey-prod-{SIGNING_KEY}",
    "pyngest_flask": SIGNING_KEY,
    "pyngest_django": f"signkey-test-{SIGNING_KEY}",
    "pyngest_fastapi_classic": SIGNING_KEY,
}


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    with Server.running(workdir / "server", mode="start", signing_key=SIGNING_KEY, event_key=EVENT_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def signed_apps(server: Server, workdir: Path) -> Iterator[dict[str, App]]:
    started: dict[str, App] = {}
    yield started
    for app in started.values():
        app.stop()


@pytest.fixture(scope="module", params=APP_KINDS)
def app(
    request: pytest.FixtureRequest, server: Server, workdir: Path, signed_apps: dict[str, App]
) -> App:
    kind = request.param
    if kind not in signed_apps:
        app = App(kind, workdir, server.url, signing_key=KEY_SPELLING[kind], event_key=EVENT_KEY)
        signed_apps[kind] = app
        app.start()
        error = app.sync_error()
        assert error is None, f"sync of {kind} in start mode failed: {error}"
    return signed_apps[kind]


def test_signed_execution_completes(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("steps-memo"), {"tag": tag}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"values": [1, 2, 3]}
    assert [o["step"] for o in app.observations(kind="step", tag=tag)] == [
        "add#0",
        "add#1",
        "add#2",
    ]


def test_large_state_signed(app: App, api: Api) -> None:
    """With state over 4 MiB the SDK fetches it from /v0/runs/{id}/actions and /batch with its
    Bearer token (bare hash from Python, `signkey-<env>-<hash>` from JS): the server must
    accept both spellings there too."""
    tag, size, count = new_tag(), 1024 * 1024, 5
    run = api.wait_run(
        api.send(app.event("large-state"), {"tag": tag, "size": size, "count": count}), timeout=180
    )
    assert run["status"] == "Completed", run
    assert run["output"] == {"pieces": large_state_digests(size, count)}
    assert app.observations(kind="use_api", run_id=run["run_id"]), "use_api was never set"


def test_cloud_mode_app_refuses_unsigned_requests(app: App) -> None:
    """The SDK side of the contract the server's signatures satisfy (sanity check of the app)."""
    res = requests.post(
        f"{app.serve_url}?fnId={app.slug('steps-memo')}&stepId=step", json={}, timeout=10
    )
    assert res.status_code == 401, res.text


def test_wrong_event_key_refused(app: App, api: Api) -> None:
    tag = new_tag()
    res = api.send_raw(
        {"name": app.event("steps-memo"), "data": {"tag": tag}}, key=f"not-{EVENT_KEY}"
    )
    assert res.status_code == 401, res.text
    assert res.json().get("error"), res.text
    # The right key still works, and the refused event started nothing.
    run = api.wait_run(api.send(app.event("steps-memo"), {"tag": new_tag()}))
    assert run["status"] == "Completed", run
    assert app.observations(kind="step", tag=tag) == []


@pytest.mark.parametrize("kind", APP_KINDS)
def test_sync_with_wrong_signing_key_refused(
    kind: str, server: Server, workdir: Path, api: Api
) -> None:
    wrong = App(
        kind,
        workdir,
        server.url,
        signing_key=secrets.token_hex(32),
        event_key=EVENT_KEY,
        app_id=f"conformance-{kind}-wrong-key",
    )
    wrong.start()
    try:
        assert wrong.sync_error() is not None, "a sync with a wrong signing key was accepted"
        # Its functions were not registered: its events start no runs.
        event_id = api.send(wrong.event("steps-memo"), {"tag": new_tag()})
        with pytest.raises(PollTimeout):
            poll(lambda: api.event_runs(event_id), timeout=3, what="a run that must not start")
    finally:
        wrong.stop()


def test_register_with_wrong_bearer_refused(server: Server) -> None:
    body = {
        "url": "http://127.0.0.1:9/api/inngest",
        "v": "0.1",
        "deployType": "ping",
        "sdk": "js:v4.24.0",
        "framework": "nodejs",
        "appName": "conformance-intruder",
        "functions": [],
    }
    for headers in ({}, {"Authorization": f"Bearer {hashed_signing_key(secrets.token_hex(32))}"}):
        res = requests.post(f"{server.url}/fn/register", json=body, headers=headers, timeout=10)
        assert res.status_code == 401, (headers, res.status_code, res.text)


def test_api_requires_signing_key(server: Server, app: App, api: Api) -> None:
    run = api.wait_run(api.send(app.event("steps-memo"), {"tag": new_tag()}))
    run_id = run["run_id"]
    for path in (f"/v1/runs/{run_id}", f"/v0/runs/{run_id}/actions", f"/v0/runs/{run_id}/batch"):
        for headers in (
            {},
            {"Authorization": f"Bearer {hashed_signing_key(secrets.token_hex(32))}"},
        ):
            res = requests.get(f"{server.url}{path}", headers=headers, timeout=10)
            assert res.status_code == 401, (path, headers, res.status_code, res.text)
    # With the key (hashed, as SDKs send it) the same read is allowed.
    assert api.session.get(f"{server.url}/v1/runs/{run_id}", timeout=10).status_code == 200
