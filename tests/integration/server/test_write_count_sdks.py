"""Writes per run with real SDK apps (issue 16): the npm ``inngest`` SDK v4 with its
checkpointing on (its default), and pyngest's SDK with its checkpointing on (its default), each
as its own process against an in-process server on a real port, whose commits are observed.

A run's writes are counted as in test_write_count.py: the batches committed about it, each a
commit the run waits for. The two SDKs differ where they make a step durable:

- pyngest's SDK runs on after a step; when the function then returns, the step and the result
  leave in one answer (``[StepRun, RunComplete]``): two writes for a one-step run, one more per
  further step (each checkpointed before the code after it runs);
- the npm SDK awaits each step's checkpoint (``/v1/checkpoint/{run}/async``) before the code
  after the step runs, which needs the step durable when the checkpoint is answered, and sends
  the result in its answer afterwards: one write more (the last step's checkpoint), whatever the
  server does. Its checkpoint carries the run's start, as the pyngest SDK's first answer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from pyngest.server.api.app import build_app
from pyngest.server.executor import starts
from pyngest.server.model import InsertEvents, SaveStep, UpdateRun
from tests.conformance.harness import App
from tests.integration.server.harness import Harness
from tests.integration.server.test_write_count import WriteLog, kinds


def bound_socket() -> socket.socket:
    """A listening socket on a free loopback port, for an in-process uvicorn (``serve(sockets=...)``)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextlib.asynccontextmanager
async def served(harness: Harness) -> AsyncIterator[str]:
    """The harness's service on a loopback port, for an app in another process to reach."""
    sock = bound_socket()  # bound before uvicorn has it: no other process can take the port meanwhile
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(harness.service), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def started_app(harness: Harness, kind: str, url: str, workdir: Path) -> App:
    workdir.mkdir(exist_ok=True)
    app = App(kind, workdir, url)
    # blocking calls (the app registers with the server while the sync is open): off the loop
    await asyncio.to_thread(app.start)
    resp = await asyncio.to_thread(app.sync)
    assert resp.status_code == 200, resp.text
    # (on several processes, runs start with their event once this process has read the
    # registry version the sync made; an event sent before that is matched from the log)
    await harness.settle()
    return app


async def writes_of(harness: Harness, writes: WriteLog, app: App, fn: str) -> tuple[dict, list]:
    [eid] = await harness.send({"name": app.event(fn), "data": {}})
    [run] = await harness.run_ended(eid, timeout=30)
    await harness.settle()
    return run, writes.about(run["run_id"], eid)


@pytest.fixture(autouse=True)
def patient_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's start waits for its first result at most ``starts.GRACE_S`` (real time), then is
    committed alone: on a loaded machine an SDK's first request (a Node.js app's, with its
    checkpoint) can take longer, which would count a write these tests are not about."""
    monkeypatch.setattr(starts, "GRACE_S", 30.0)


def summary(batches: list) -> list[dict[str, int]]:
    return [dict(kinds(b)) for b in batches]


def ends_the_run(batch) -> bool:
    return any(isinstance(op, UpdateRun) and "ended_ms" in op.fields for op in batch.ops)


async def test_pyngest_sdk_one_step_two_writes_and_one_per_further_step(harness: Harness, tmp_path: Path) -> None:
    async with served(harness) as url:
        app = await started_app(harness, "pyngest_fastapi", url, tmp_path / "app")
        try:
            writes = WriteLog(harness)
            run, batches = await writes_of(harness, writes, app, "dedup")
            assert run["status"] == "Completed", run
            assert len(batches) == 2, summary(batches)
            assert kinds(batches[0])["InsertEvents"] == 1 and kinds(batches[0])["CreateRun"] == 1
            last = batches[1]
            assert kinds(last)["SaveStep"] == 1 and ends_the_run(last), summary(batches)

            run, batches = await writes_of(harness, writes, app, "steps-memo")
            assert run["status"] == "Completed" and run["output"] == {"values": [1, 2, 3]}, run
            assert len(batches) == 4, summary(batches)  # event with run; three steps, the last with the end
            assert [kinds(b)["SaveStep"] for b in batches[1:]] == [1, 1, 1]
            assert ends_the_run(batches[-1])
        finally:
            await asyncio.to_thread(app.stop)


async def test_npm_sdk_v4_checkpointing_one_write_per_step_and_one_for_the_end(harness: Harness, tmp_path: Path) -> None:
    async with served(harness) as url:
        app = await started_app(harness, "js", url, tmp_path / "app")
        try:
            writes = WriteLog(harness)
            run, batches = await writes_of(harness, writes, app, "dedup")
            assert run["status"] == "Completed", run
            assert len(batches) == 3, summary(batches)
            first, step, end = batches
            assert kinds(first)["InsertEvents"] == 1 and kinds(first)["CreateRun"] == 1
            assert not any(isinstance(op, InsertEvents) for op in step.ops)
            assert kinds(step)["SaveStep"] == 1 and not ends_the_run(step)
            assert any(getattr(op, "kind", None) == "FunctionStarted" for op in step.ops), \
                "the checkpoint carries the run's start"
            assert ends_the_run(end) and not any(isinstance(op, SaveStep) for op in end.ops)

            run, batches = await writes_of(harness, writes, app, "steps-memo")
            assert run["status"] == "Completed" and run["output"] == {"values": [1, 2, 3]}, run
            assert len(batches) == 5, summary(batches)  # event with run; three checkpoints; the end
            assert [kinds(b)["SaveStep"] for b in batches[1:4]] == [1, 1, 1]
            assert ends_the_run(batches[-1])
        finally:
            await asyncio.to_thread(app.stop)
