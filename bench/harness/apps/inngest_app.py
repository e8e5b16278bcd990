"""The benchmark workflows as an Inngest app on FastAPI/uvicorn, written once for two SDKs.

    python -m bench.harness.apps.inngest_app <pyngest|inngest> <port>

``pyngest`` serves them with pyngest's SDK, ``inngest`` with the official PyPI SDK; the code
differs in nothing but the module. ``bench/ten`` runs ten steps, each returning a small
integer; ``bench/one`` runs one. Each function's last act is a completion notice
(:mod:`bench.harness.notify`): the code after the last step runs only once every step is
memoized, in the request whose answer completes the run.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from typing import Any

from bench.harness.notify import Notifier


def build(sdk_name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inngest = importlib.import_module(sdk_name)
        importlib.import_module(f"{sdk_name}.fast_api")
    import fastapi

    logging.getLogger(sdk_name).setLevel(logging.WARNING)
    client = inngest.Inngest(app_id=f"bench-{sdk_name}", logger=logging.getLogger("bench"))
    notifier = Notifier()

    def step_value(n: int) -> Any:
        return lambda: n

    @client.create_function(fn_id="ten", trigger=inngest.TriggerEvent(event="bench/ten"), retries=0)
    async def ten(ctx: Any) -> int:
        step = ctx.step  # both SDKs take ctx alone (0.5.19's style)
        total = 0
        for n in range(10):
            total += await step.run(f"s{n}", step_value(n))
        notifier.done(ctx.event.data["i"])
        return total

    @client.create_function(fn_id="one", trigger=inngest.TriggerEvent(event="bench/one"), retries=0)
    async def one(ctx: Any) -> int:
        value = await ctx.step.run("s0", step_value(1))
        notifier.done(ctx.event.data["i"])
        return int(value)

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, [ten, one])

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
                access_log=False, loop="uvloop", http="httptools")
