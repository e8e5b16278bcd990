"""Functions only the connect tests use: which worker ran a step, a step long enough to kill
or drain its worker in the middle of, and an invoke across apps (connect ↔ HTTP)."""

from __future__ import annotations

import asyncio
import os
from types import ModuleType
from typing import Any

from common import prefix, record


def functions(inngest: ModuleType, client: Any, kind: str) -> list[Any]:
    P = prefix(kind)
    instance = os.environ.get("CONNECT_INSTANCE_ID", "")

    @client.create_function(fn_id="who", trigger=inngest.TriggerEvent(event=f"{P}/who"))
    async def who(ctx: inngest.Context) -> Any:
        async def here() -> dict[str, Any]:
            record(kind, kind="step", fn="who", step="here", tag=ctx.event.data.get("tag"),
                   run_id=ctx.run_id, instance=instance)
            await asyncio.sleep(float(ctx.event.data.get("hold_s", 0)))
            return {"pid": os.getpid(), "instance": instance}

        return await ctx.step.run("here", here)

    @client.create_function(fn_id="slow-step", retries=2,
                            trigger=inngest.TriggerEvent(event=f"{P}/slow-step"))
    async def slow_step(ctx: inngest.Context) -> Any:
        async def slow() -> dict[str, Any]:
            tag = ctx.event.data.get("tag")
            record(kind, kind="step-start", fn="slow-step", step="slow", tag=tag, run_id=ctx.run_id,
                   attempt=ctx.attempt, instance=instance)
            await asyncio.sleep(float(ctx.event.data["seconds"]))
            record(kind, kind="step-end", fn="slow-step", step="slow", tag=tag, run_id=ctx.run_id,
                   attempt=ctx.attempt, instance=instance)
            return {"instance": instance, "attempt": ctx.attempt}

        return await ctx.step.run("slow", slow)

    @client.create_function(fn_id="invoke-other", trigger=inngest.TriggerEvent(event=f"{P}/invoke-other"))
    async def invoke_other(ctx: inngest.Context) -> Any:
        data = ctx.event.data
        result = await ctx.step.invoke_by_id(
            "call", app_id=data["app"], function_id=data["fn"], data={"x": data["x"], "tag": data.get("tag")})
        return {"result": result}

    return [who, slow_step, invoke_other]
