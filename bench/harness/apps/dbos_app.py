"""The benchmark workflows as a DBOS app: FastAPI on uvicorn, DBOS's engine in the same process.

    python -m bench.harness.apps.dbos_app <port> <sync|async>

with ``DBOS_SYSTEM_DATABASE_URL`` naming the (fresh) Postgres database. ``POST /run/{kind}``
starts workflow ``ten`` (ten ``@DBOS.step()`` calls, step n returning n; the result is their
sum) or ``one`` (one step returning 1), waits for it and answers its result. DBOS checkpoints
the workflow's start, every step's output and its end in Postgres, each a committed
transaction, before going on; everything about that is left at DBOS's defaults.

``sync`` is the style of DBOS's own FastAPI starter template (plain functions; FastAPI runs the
request on its thread pool), ``async`` the coroutine style (DBOS hops to its own thread pool
for each database call). One process: DBOS runs one executor per process, as its docs deploy it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from dbos import DBOS, DBOSConfig
from fastapi import FastAPI, HTTPException


def build(style: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        DBOS.launch()
        try:
            yield
        finally:
            DBOS.destroy()

    app = FastAPI(lifespan=lifespan)
    config: DBOSConfig = {
        "name": "bench-dbos",
        "system_database_url": os.environ["DBOS_SYSTEM_DATABASE_URL"],
    }
    DBOS(config=config)
    workflows: dict[str, Callable[[int], Any]]

    if style == "sync":

        @DBOS.step()
        def step(n: int) -> int:
            return n

        @DBOS.workflow()
        def ten(i: int) -> int:
            return sum(step(n) for n in range(10))

        @DBOS.workflow()
        def one(i: int) -> int:
            return step(1)

        workflows = {"ten": ten, "one": one}

        @app.post("/run/{kind}")
        def run(kind: str, i: int = 0) -> int:
            if kind not in workflows:
                raise HTTPException(404)
            return int(workflows[kind](i))

    elif style == "async":

        @DBOS.step()
        async def astep(n: int) -> int:
            return n

        @DBOS.workflow()
        async def aten(i: int) -> int:
            total = 0
            for n in range(10):
                total += await astep(n)
            return total

        @DBOS.workflow()
        async def aone(i: int) -> int:
            return await astep(1)

        workflows = {"ten": aten, "one": aone}

        @app.post("/run/{kind}")
        async def arun(kind: str, i: int = 0) -> int:
            if kind not in workflows:
                raise HTTPException(404)
            return int(await workflows[kind](i))

    else:
        raise SystemExit(f"unknown style {style!r}")

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


if __name__ == "__main__":
    import uvicorn

    logging.getLogger("uvicorn.access").disabled = True
    uvicorn.run(build(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False, loop="uvloop", http="httptools", lifespan="on")
