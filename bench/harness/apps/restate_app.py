"""The benchmark workflows as a Restate service on the Python SDK (``restate-sdk``).

    python -m hypercorn --config <file.toml> bench.harness.apps.restate_app:app

A plain (keyless) service ``bench`` with two handlers: ``ten`` runs ten durable steps
(``ctx.run_typed``), step n returning n, and answers their sum; ``one`` runs one step
returning 1. Every step's result is journaled by the Restate server before the handler
goes on. Served by Hypercorn over HTTP/2 (h2c), which the SDK discovers as its
bidirectional-streaming protocol, as the SDK's docs recommend.
"""

from __future__ import annotations

from collections.abc import Callable

import restate

bench = restate.Service("bench")


def step_value(n: int) -> Callable[[], int]:
    return lambda: n


@bench.handler()
async def ten(ctx: restate.Context, i: int) -> int:
    total = 0
    for n in range(10):
        total += await ctx.run_typed(f"s{n}", step_value(n))
    return total


@bench.handler()
async def one(ctx: restate.Context, i: int) -> int:
    return await ctx.run_typed("s0", step_value(1))


app = restate.app(services=[bench])
