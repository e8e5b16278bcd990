"""The app the operations tests drive: FastAPI on uvicorn, with the SDK chosen by ``OPS_SDK``.

``OPS_SDK=pyngest`` imports this project's SDK the way its users do (``import pyngest as
inngest``, ``pyngest.fast_api``); ``OPS_SDK=official`` imports PyPI ``inngest`` (0.5.19). The
function code below is the same for both: the two SDKs share their public API.

Run as a script with the conformance apps' environment (``PORT``, ``CONFORMANCE_APP_ID``,
``CONFORMANCE_PREFIX``, ``CONFORMANCE_LOG``, ``INNGEST_DEV``, ``INNGEST_BASE_URL``) plus
``OPS_FLAGS``: a folder where the tests put flag files that change what the functions do
while the app keeps running:

- ``broken``: the ``work`` step of ``flaky`` raises (retries are 0, so its run fails);
- ``hold``: ``flaky`` runs whose event has ``data.hold`` sleep a minute before working.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo, for tests.conformance

import fastapi  # noqa: E402
import uvicorn  # noqa: E402

from tests.conformance.apps.common import app_id, port, prefix, record  # noqa: E402

SDK = os.environ["OPS_SDK"]
if SDK == "pyngest":
    import pyngest as inngest
    import pyngest.fast_api as fast_api
else:
    import inngest  # type: ignore[no-redef]
    import inngest.fast_api as fast_api  # type: ignore[no-redef]

FLAGS = Path(os.environ["OPS_FLAGS"])
P = prefix(SDK)
client = inngest.Inngest(app_id=app_id(SDK), logger=logging.getLogger("ops"))


def _step(ctx: Any, fn: str, step: str) -> None:
    record(SDK, kind="step", fn=fn, step=step, run_id=ctx.run_id, n=ctx.event.data.get("n"))


def _nap_function(fn_id: str) -> Any:
    """Step ``a`` (taking ``data.slow`` seconds), a sleep of ``data.nap`` seconds, step ``b``: a
    run that is in a step, or between steps, for a known time."""

    @client.create_function(fn_id=fn_id, trigger=inngest.TriggerEvent(event=f"{P}/{fn_id}"), retries=0)
    async def nap(ctx: inngest.Context) -> Any:
        async def a() -> None:
            _step(ctx, fn_id, "a")
            if slow := float(ctx.event.data.get("slow", 0)):
                await asyncio.sleep(slow)
                _step(ctx, fn_id, "a-end")

        await ctx.step.run("a", a)
        await ctx.step.sleep("nap", datetime.timedelta(seconds=float(ctx.event.data.get("nap", 1))))
        await ctx.step.run("b", lambda: _step(ctx, fn_id, "b"))
        return {"n": ctx.event.data.get("n")}

    return nap


@client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event=f"{P}/waiter"), retries=0)
async def waiter(ctx: inngest.Context) -> Any:
    """Waits for an event nobody sends: a run that stays Running until it is cancelled."""
    await ctx.step.run("a", lambda: _step(ctx, "waiter", "a"))
    await ctx.step.wait_for_event("never", event=f"{P}/never", timeout=datetime.timedelta(minutes=2))
    return "timed out"


@client.create_function(fn_id="gate", trigger=inngest.TriggerEvent(event=f"{P}/gate"), retries=0)
async def gate(ctx: inngest.Context) -> Any:
    """Waits for ``open`` with the same ``data.n``."""
    await ctx.step.run("a", lambda: _step(ctx, "gate", "a"))
    opened = await ctx.step.wait_for_event("open", event=f"{P}/open", if_exp="async.data.n == event.data.n",
                                           timeout=datetime.timedelta(minutes=2))
    await ctx.step.run("b", lambda: _step(ctx, "gate", "b"))
    return {"n": ctx.event.data.get("n"), "opened": opened is not None}


@client.create_function(fn_id="flaky", trigger=inngest.TriggerEvent(event=f"{P}/flaky"), retries=0)
async def flaky(ctx: inngest.Context) -> Any:
    def held() -> bool:
        _step(ctx, "flaky", "held")
        return bool(ctx.event.data.get("hold")) and (FLAGS / "hold").exists()

    if await ctx.step.run("held", held):
        await ctx.step.sleep("held-sleep", datetime.timedelta(minutes=1))

    def work() -> dict[str, Any]:
        _step(ctx, "flaky", "work")
        if (FLAGS / "broken").exists():
            raise RuntimeError("the app is broken")
        return {"n": ctx.event.data.get("n")}

    return await ctx.step.run("work", work)


@client.create_function(fn_id="on-cancelled", trigger=inngest.TriggerEvent(event="inngest/function.cancelled"))
async def on_cancelled(ctx: inngest.Context) -> None:
    """Every app gets every cancellation; the tests pick theirs by run id."""
    data = ctx.event.data
    record(SDK, kind="cancelled", run_id=data.get("run_id"), function_id=data.get("function_id"),
           event_data=(data.get("event") or {}).get("data"))


functions = [_nap_function("hold"), _nap_function("witness"), _nap_function("doomed"), waiter, gate, flaky,
             on_cancelled]
app = fastapi.FastAPI()
fast_api.serve(app, client, functions)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port(), log_level="warning")
