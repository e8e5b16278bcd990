"""The testing guide's ``greet`` function, run end to end on a real server: served from a
FastAPI app, synced, triggered, its run awaited. Also copied into a user-style test suite by
``test_real_server.test_pytest_plugin_as_documented``, so it imports only public modules."""

from __future__ import annotations

from typing import Any

import fastapi

import pyngest as inngest
import pyngest.fast_api
from pyngest.experimental.dev_server import serve_app


def run_greet(client: inngest.Inngest, server: Any, name: str) -> tuple[str, Any]:
    """(status, output) of a ``greet`` run for ``name``."""

    @client.create_function(fn_id="greet", trigger=inngest.TriggerEvent(event="user.login"))
    async def greet(ctx: inngest.Context, step: inngest.Step) -> str:
        return await step.run("create-message", lambda: f"Hello, {ctx.event.data['name']}!")

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [greet])
    with serve_app(app) as base:
        server.sync(base + "/api/inngest")
        (eid,) = client.send_sync(inngest.Event(name="user.login", data={"name": name}))
        run = server.wait_for_run(eid)
    return run.status, run.output
