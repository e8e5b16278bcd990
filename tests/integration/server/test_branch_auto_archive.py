"""Branch auto-archive (issue 15): a branch environment is archived 3 days after its latest
deploy (a sync), each deploy moves the date on, archiving only stops triggering, and a toggle per
environment turns it off. Driven by the test clock: three days pass in milliseconds.

Runs on both stores (``PYNGEST_TEST_BACKEND=postgres``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pyngest.server.environments import BRANCH_ARCHIVE_MS
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.store.base import EnvRecord
from tests.integration.server.harness import Harness, Reply, done
from tests.integration.server.test_environments import (
    EVENT_KEY,
    SIGNING_KEY,
    bearer,
    client,
    gql,
    send,
    sync,
)

DAY = 86_400_000
NOT_FOUND = {"status": 401, "message": "", "error": "Event key not found"}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, mode="start", signing_key=SIGNING_KEY, event_keys=[EVENT_KEY])
    await harness.start()

    async def script(call: Any) -> Reply:
        return done("ok")

    harness.app.script = script
    try:
        yield harness
    finally:
        await harness.stop()


async def env_of(h: Harness, name: str) -> dict[str, Any]:
    resp = await client(h).get("/v1/envs", headers=bearer(SIGNING_KEY))
    assert resp.status_code == 200, resp.text
    return next(e for e in resp.json()["data"] if e["name"] == name)


async def stored(h: Harness, env_id: str) -> EnvRecord:
    """The row as the store has it (not this process's copy)."""
    return next(e for e in await h.service.store.list_envs() if e.id == env_id)


async def test_a_branch_is_archived_three_days_after_its_latest_deploy(h: Harness) -> None:
    await sync(h, env="preview-1")
    env = await env_of(h, "preview-1")
    start = h.clock.now_ms()
    assert env["auto_archive"] is True and env["archived"] is False
    assert env["deployed_at"] is not None and env["auto_archive_at"] is not None
    assert (await stored(h, env["id"])).auto_archive_ms == start + BRANCH_ARCHIVE_MS

    await h.advance(2 * DAY)
    await sync(h, env="preview-1")  # a deploy: three days from now
    await h.advance(2 * DAY)  # four days after the first deploy, two after the latest
    assert (await send(h, "shop/order", env="preview-1")).status_code == 200
    assert (await env_of(h, "preview-1"))["archived"] is False

    await h.advance(DAY)  # exactly three days after the latest deploy
    resp = await send(h, "shop/order", env="preview-1")
    assert resp.status_code == 401 and resp.json() == NOT_FOUND
    await h.settle()
    row = await stored(h, env["id"])  # written down once, at the date it came due
    assert row.archived_ms == start + 2 * DAY + BRANCH_ARCHIVE_MS == row.auto_archive_ms
    assert h.service.registry.envs.auto_archived == 1
    env = await env_of(h, "preview-1")
    assert env["archived"] is True and env["auto_archive_at"] is None
    # archiving deletes nothing: the branch keeps its app and function, production is untouched
    assert [f.slug for f in h.service.registry.functions_of(env["id"])] == ["test-order"]
    assert (await send(h, "shop/order")).status_code == 200

    # the next deploy makes an auto-archived branch active again, for three more days
    await sync(h, env="preview-1")
    env = await env_of(h, "preview-1")
    assert env["archived"] is False and env["auto_archive"] is True
    assert (await send(h, "shop/order", env="preview-1")).status_code == 200
    assert (await stored(h, env["id"])).archived_ms is None


async def test_a_branch_made_by_an_event_counts_from_its_creation(h: Harness) -> None:
    assert (await send(h, "shop/order", env="no-deploy")).status_code == 200
    env = await env_of(h, "no-deploy")
    assert env["deployed_at"] is None and env["auto_archive"] is True
    await h.advance(BRANCH_ARCHIVE_MS - 1)
    assert (await send(h, "shop/order", env="no-deploy")).status_code == 200
    await h.advance(1)
    assert (await send(h, "shop/order", env="no-deploy")).json() == NOT_FOUND
    # production and custom environments are never archived by themselves
    created = await client(h).post("/v1/envs", headers=bearer(SIGNING_KEY), json={"name": "staging"})
    assert created.status_code == 201 and created.json()["data"]["auto_archive"] is False
    assert (await env_of(h, "Production"))["auto_archive"] is False


async def test_the_toggle_turns_auto_archive_off_and_on(h: Harness) -> None:
    await sync(h, env="keep-me")
    env = await env_of(h, "keep-me")
    auth = bearer(SIGNING_KEY)
    resp = await client(h).patch(f"/v1/envs/{env['id']}", headers=auth, json={"auto_archive": False})
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["auto_archive"] is False and resp.json()["data"]["auto_archive_at"] is None
    await h.advance(10 * DAY)
    assert (await send(h, "shop/order", env="keep-me")).status_code == 200
    assert (await stored(h, env["id"])).archived_ms is None

    # on again through GraphQL: three days from now, not at once for a deploy ten days ago
    out = await gql(h, "mutation($id: ID!) { setEnvironmentAutoArchive(id: $id, enabled: true) "
                       "{ autoArchive autoArchiveAt archived deployedAt } }", {"id": env["id"]})
    got = out["data"]["setEnvironmentAutoArchive"]
    assert got["autoArchive"] is True and got["archived"] is False and got["deployedAt"] is not None
    assert (await send(h, "shop/order", env="keep-me")).status_code == 200
    await h.advance(BRANCH_ARCHIVE_MS)
    assert (await send(h, "shop/order", env="keep-me")).json() == NOT_FOUND
    out = await gql(h, "{ environments { name archived autoArchive } }")
    assert {"name": "keep-me", "archived": True, "autoArchive": True} in out["data"]["environments"]


async def test_the_toggle_refuses_what_it_cannot_do(h: Harness) -> None:
    await sync(h, env="b1")
    env = await env_of(h, "b1")
    c, auth = client(h), bearer(SIGNING_KEY)
    resp = await c.patch(f"/v1/envs/{DEFAULT_ENV}", headers=auth, json={"auto_archive": False})
    assert resp.status_code == 400 and "branch environments only" in resp.text
    resp = await c.patch(f"/v1/envs/{env['id']}", headers=auth, json={"auto_archive": "no"})
    assert resp.status_code == 400 and "true or false" in resp.text
    resp = await c.patch(f"/v1/envs/{env['id']}", headers=auth, json={"name": "x"})
    assert resp.status_code == 400 and "auto_archive" in resp.text
    resp = await c.patch("/v1/envs/nope", headers=auth, json={"auto_archive": False})
    assert resp.status_code == 404
    out = await gql(h, "mutation { setEnvironmentAutoArchive(id: \"nope\", enabled: false) { id } }")
    assert out.get("errors") and "not found" in out["errors"][0]["message"]


async def test_a_branch_archived_by_hand_stays_archived_after_a_deploy(h: Harness) -> None:
    await sync(h, env="by-hand")
    env = await env_of(h, "by-hand")
    auth = bearer(SIGNING_KEY)
    assert (await client(h).post(f"/v1/envs/{env['id']}/archive", headers=auth)).status_code == 200
    await sync(h, env="by-hand")  # syncs are accepted, but the operator's archive stands
    assert (await send(h, "shop/order", env="by-hand")).json() == NOT_FOUND
    # unarchiving starts three days anew (else the passed date would archive it again at once)
    await h.advance(5 * DAY)
    resp = await client(h).post(f"/v1/envs/{env['id']}/unarchive", headers=auth)
    assert resp.json()["data"]["archived"] is False
    assert (await send(h, "shop/order", env="by-hand")).status_code == 200
    await h.advance(BRANCH_ARCHIVE_MS)
    assert (await send(h, "shop/order", env="by-hand")).json() == NOT_FOUND
