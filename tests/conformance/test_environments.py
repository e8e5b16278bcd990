"""``pyngest start`` with branch environments, against the official SDKs: an app whose client has
``env`` (``INNGEST_ENV``) syncs into that branch environment (created on demand, sharing the
production keys), and only events sent to the branch (``x-inngest-env``) start its functions.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .harness import App, Server, hashed_signing_key, new_tag, poll

pytestmark = pytest.mark.conformance

SIGNING_KEY = secrets.token_hex(32)
EVENT_KEY = f"evt-{secrets.token_hex(16)}"
OFFICIAL = ("py_fastapi", "js")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    with Server.running(workdir / "server", mode="start", signing_key=SIGNING_KEY, event_key=EVENT_KEY) as srv:
        yield srv


def _get(server: Server, path: str, branch: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {hashed_signing_key(SIGNING_KEY)}"}
    if branch:
        headers["x-inngest-env"] = branch
    res = requests.get(f"{server.url}{path}", headers=headers, timeout=10)
    res.raise_for_status()
    return res.json()["data"]


@pytest.mark.parametrize("kind", OFFICIAL)
def test_an_app_with_env_syncs_into_its_branch(kind: str, server: Server, workdir: Path) -> None:
    branch = f"feature-{kind.replace('_', '-')}"
    app = App(kind, workdir, server.url, signing_key=SIGNING_KEY, event_key=EVENT_KEY,
              app_id=f"branch-{kind}", env={"INNGEST_ENV": branch})
    app.start()
    try:
        assert app.sync_error() is None
        envs = {e["name"]: e for e in _get(server, "/v1/envs")}
        assert envs[branch]["type"] == "branch"
        # the app is the branch's, not production's
        assert [a["name"] for a in _get(server, "/v1/apps", branch)] == [app.id]
        assert app.id not in [a["name"] for a in _get(server, "/v1/apps")]
        tag = new_tag()
        event = {"name": app.event("steps-memo"), "data": {"tag": tag}}
        # sent to production, the event starts nothing of the branch's app
        prod = requests.post(f"{server.url}/e/{EVENT_KEY}", json=event, timeout=10)
        assert prod.status_code == 200, prod.text
        sent = requests.post(f"{server.url}/e/{EVENT_KEY}", json=event, headers={"x-inngest-env": branch},
                             timeout=10)
        assert sent.status_code == 200, sent.text
        event_id = sent.json()["ids"][0]
        runs = poll(lambda: (r := _get(server, f"/v1/events/{event_id}/runs", branch))
                    and r[0]["status"] == "Completed" and r, what="the branch's run to complete")
        assert runs[0]["environment_id"] == envs[branch]["id"]
        assert runs[0]["output"] == {"values": [1, 2, 3]}  # signed with the production key it shares
        assert _get(server, f"/v1/events/{prod.json()['ids'][0]}/runs") == []
        assert len(app.observations(kind="body-end", tag=tag)) == 1
    finally:
        app.stop()
