"""Stopping the HTTP server: the steps that must happen before it stops (realtime subscribers
told why their connections end) run first, and a second signal does not wait for them."""

from __future__ import annotations

import asyncio
import signal
import socket

import uvicorn

from pyngest.server.cli import _Server


async def app(scope: dict, receive: object, send: object) -> None:  # never called: nothing connects
    raise AssertionError(scope)


def _bound() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


async def _started() -> tuple[_Server, asyncio.Task[None]]:
    server = _Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[_bound()]))
    while not server.started:
        await asyncio.sleep(0.01)
    return server, serving


async def test_the_http_server_stops_only_after_the_steps_before_it() -> None:
    server, serving = await _started()
    release = asyncio.Event()
    order: list[str] = []

    async def tell_subscribers() -> None:
        order.append("hook started")
        await release.wait()
        order.append("hook done")

    server.before_exit.append(tell_subscribers)
    server.request_exit(signal.SIGTERM)
    await asyncio.sleep(0.3)  # uvicorn looks at should_exit every 0.1 s
    assert order == ["hook started"] and not serving.done()
    release.set()
    await asyncio.wait_for(serving, 10)
    assert order == ["hook started", "hook done"]


async def test_a_failing_step_still_stops_the_server() -> None:
    server, serving = await _started()

    async def broken() -> None:
        raise RuntimeError("boom")

    server.before_exit.append(broken)
    server.request_exit(signal.SIGTERM)
    await asyncio.wait_for(serving, 10)


async def test_a_second_signal_does_not_wait_for_the_steps() -> None:
    server, serving = await _started()
    server.before_exit.append(asyncio.Event().wait)  # never ends
    server.request_exit(signal.SIGTERM)
    await asyncio.sleep(0.2)
    assert not serving.done()
    server.request_exit(signal.SIGINT)
    await asyncio.wait_for(serving, 10)
    assert server._exiting is not None
    server._exiting.cancel()
