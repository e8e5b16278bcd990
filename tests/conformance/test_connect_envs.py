"""Connect per environment (``pyngest start``): official-SDK workers started with the production
signing key connect in production, or, with ``INNGEST_ENV``, in that branch (the SDKs send it as
``X-Inngest-Env`` on ``/v0/connect/start`` and as ``environment`` in WORKER_CONNECT). Each
worker's app syncs into its own environment; one app id connected in both environments is two
apps, and each environment's runs go to its own workers only; ``/v0/connect/envs/{envId}/conns``
lists one environment's connections. Bare-protocol cases pin what the SDKs do not exercise: a
custom environment's key, and a handshake that names another environment than its start."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets

from pyngest.protocol.connectpb import connect_pb2 as pb
from pyngest.server.model import DEFAULT_ENV

from . import raw_worker
from .harness import Api, App, Server, free_port, hashed_signing_key, new_tag

pytestmark = pytest.mark.conformance

SIGNING_KEY = secrets.token_hex(32)
EVENT_KEY = f"evt-{secrets.token_hex(16)}"
KEY_SPELLING = {"py_connect": f"signkey-prod-{SIGNING_KEY}", "js_connect": f"signkey-test-{SIGNING_KEY}",
                "pyngest_connect": SIGNING_KEY}
ADMIN = {"Authorization": f"Bearer {hashed_signing_key(SIGNING_KEY)}"}


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    srv = Server(workdir / "server", mode="start", signing_key=SIGNING_KEY, event_key=EVENT_KEY,
                 extra_args=["--connect-gateway-port", str(free_port())])
    srv.workdir.mkdir()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server: Server) -> Api:
    return server.api()


def _conns(server: Server, env: str, headers: dict[str, str] | None = None, **params: str) -> requests.Response:
    return requests.get(f"{server.url}/v0/connect/envs/{env}/conns", params=params, headers=headers or ADMIN,
                        timeout=10)


def _apps(api: Api) -> dict[str, dict[str, Any]]:
    res = api.session.get(f"{api.url}/v1/apps", timeout=10)
    res.raise_for_status()
    return {a["name"]: a for a in res.json()["data"]}


@pytest.fixture(scope="module", params=["py_connect", "js_connect", "pyngest_connect"])
def two_envs(request: pytest.FixtureRequest, server: Server, workdir: Path) -> Iterator[tuple[App, App, str]]:
    """One app id, a worker in production and one in a branch: (production's, the branch's,
    the branch's name)."""
    kind = request.param
    app_id = f"cx-env-{kind.replace('_', '-')}"
    branch = f"preview-{kind.replace('_', '-')}"
    common = {"CONFORMANCE_PREFIX": app_id}
    prod = App(kind, workdir, server.url, signing_key=KEY_SPELLING[kind], event_key=EVENT_KEY, app_id=app_id,
               env={**common, "CONNECT_INSTANCE_ID": f"{kind}-production"})
    preview = App(kind, workdir, server.url, signing_key=KEY_SPELLING[kind], event_key=EVENT_KEY, app_id=app_id,
                  env={**common, "CONNECT_INSTANCE_ID": f"{kind}-{branch}", "INNGEST_ENV": branch})
    try:
        prod.start()
        preview.start()  # waits until /v0/connect/envs/<branch>/conns lists it
        yield prod, preview, branch
    finally:
        prod.stop()
        preview.stop()


def test_each_environment_lists_only_its_own_connections(two_envs: tuple[App, App, str], server: Server) -> None:
    prod, preview, branch = two_envs
    envs = {e["name"]: e for e in requests.get(f"{server.url}/v1/envs", headers=ADMIN, timeout=10).json()["data"]}
    assert envs[branch]["type"] == "branch"
    for ident in ("Production", DEFAULT_ENV):
        listed = _conns(server, ident, app=prod.id).json()["data"]
        assert [c["instance_id"] for c in listed] == [prod.instance], listed
        assert listed[0]["env_id"] == DEFAULT_ENV
    for ident in (branch, envs[branch]["id"]):
        listed = _conns(server, ident, app=preview.id).json()["data"]
        assert [c["instance_id"] for c in listed] == [preview.instance], listed
        assert listed[0]["env_id"] == envs[branch]["id"]
    missing = _conns(server, "no-such-env")
    assert missing.status_code == 404 and "no-such-env" in missing.json()["error"], missing.text


def test_the_worker_syncs_its_app_into_its_environment(two_envs: tuple[App, App, str], server: Server,
                                                       api: Api) -> None:
    prod, preview, branch = two_envs
    in_prod, in_branch = _apps(api)[prod.id], _apps(api.in_env(branch))[preview.id]
    assert in_prod["framework"] == in_branch["framework"] == "connect"
    assert in_prod["id"] != in_branch["id"]  # one app id, two environments: two apps
    assert _conns(server, "Production", app=prod.id).json()["data"][0]["app_ids"] == [in_prod["id"]]
    assert _conns(server, branch, app=preview.id).json()["data"][0]["app_ids"] == [in_branch["id"]]


def test_each_environment_runs_go_to_its_own_workers(two_envs: tuple[App, App, str], api: Api) -> None:
    prod, preview, branch = two_envs
    tag = new_tag()
    branch_api = api.in_env(branch)
    sent = [(api, prod, api.send(prod.event("who"), {"tag": f"{tag}-p{i}"})) for i in range(3)]
    sent += [(branch_api, preview, branch_api.send(preview.event("who"), {"tag": f"{tag}-b{i}"})) for i in range(3)]
    for where, worker, event_id in sent:
        run = where.wait_run(event_id)
        assert run["status"] == "Completed", run
        assert run["output"]["instance"] == worker.instance, (worker.instance, run)
    # production's events started nothing in the branch and the other way round
    assert len(prod.observations(kind="step", fn="who")) == len(preview.observations(kind="step", fn="who"))
    assert {o["tag"] for o in prod.observations(kind="step", fn="who") if o["tag"].startswith(tag)} == {
        f"{tag}-p{i}" for i in range(3)}
    assert {o["tag"] for o in preview.observations(kind="step", fn="who") if o["tag"].startswith(tag)} == {
        f"{tag}-b{i}" for i in range(3)}


def test_a_run_whose_environment_has_no_worker_does_not_go_to_another_environments(
        two_envs: tuple[App, App, str], api: Api) -> None:
    """The branch's worker stops; a branch run waits for a branch worker rather than run on
    production's, and runs when one connects again."""
    prod, preview, branch = two_envs
    branch_api = api.in_env(branch)
    preview.stop()
    tag = new_tag()
    event_id = branch_api.send(preview.event("who"), {"tag": tag})
    run_id = branch_api.wait_runs(event_id)[0]["run_id"]
    preview.start()
    run = branch_api.wait_ended(run_id)
    assert run["status"] == "Completed", run
    assert run["output"]["instance"] == preview.instance
    assert not [o for o in prod.observations(kind="step", fn="who") if o["tag"] == tag]


# ---------------------------------------------------------------- the bare protocol


def _raw_fns(app: str) -> list[dict[str, Any]]:
    return [raw_worker.function(app, "fn", f"{app}/go")]


def test_a_custom_environments_key_connects_in_that_environment(server: Server, api: Api) -> None:
    made = requests.post(f"{server.url}/v1/envs", json={"name": f"staging-{new_tag()}"}, headers=ADMIN, timeout=10)
    assert made.status_code in (200, 201), made.text
    body = made.json()["data"] if "data" in made.json() else made.json()
    env_id, key = body["id"], body["signing_key"]
    own = {"Authorization": f"Bearer {hashed_signing_key(key)}"}
    app = f"cx-custom-{new_tag()}"

    async def scenario() -> None:
        ws = await raw_worker.open_worker(server.url, app, _raw_fns(app), "custom-1", headers=own)
        try:
            listed = _conns(server, env_id, headers=own).json()["data"]
            assert [c["instance_id"] for c in listed] == ["custom-1"] and listed[0]["env_id"] == env_id
            # the custom environment's key does not reach production's connections
            assert _conns(server, "Production", headers=own).status_code == 404
            assert "custom-1" not in [c["instance_id"] for c in _conns(server, "Production").json()["data"]]
        finally:
            await ws.close()

    asyncio.run(scenario())
    in_custom = requests.get(f"{server.url}/v1/apps", headers=own, timeout=10).json()["data"]
    assert app in [a["name"] for a in in_custom]
    assert app not in _apps(api)


def test_a_branch_named_only_in_the_handshake_is_the_workers_environment(server: Server, api: Api) -> None:
    app, branch = f"cx-hs-{new_tag()}", f"hs-{new_tag()}"

    async def scenario() -> None:
        ws = await raw_worker.open_worker(server.url, app, _raw_fns(app), "hs-1", headers=ADMIN, environment=branch)
        try:
            assert [c["instance_id"] for c in _conns(server, branch).json()["data"]] == ["hs-1"]
        finally:
            await ws.close()

    asyncio.run(scenario())
    assert app in _apps(api.in_env(branch)) and app not in _apps(api)


def test_a_handshake_naming_another_environment_than_its_start_is_refused(server: Server) -> None:
    app = f"cx-mismatch-{new_tag()}"

    async def scenario() -> tuple[int, str, int | None]:
        ws, answer = await raw_worker.handshake(server.url, app, _raw_fns(app), "mm-1",
                                                headers={**ADMIN, "x-inngest-env": "branch-a"}, environment="branch-b")
        err = pb.SystemError.FromString(answer.payload)
        try:
            await ws.recv()
        except websockets.ConnectionClosed as closed:
            return answer.kind, err.message, closed.rcvd.code if closed.rcvd else None
        return answer.kind, err.message, None

    kind, message, code = asyncio.run(scenario())
    assert kind == pb.SYNC_FAILED and code == 4001
    assert "branch-b" in message and "branch-a" in message, message
