"""Functions written once against the documented API and built with either SDK
(``import inngest`` or ``import pyngest as inngest``), for the differential tests."""

from __future__ import annotations

import datetime
import functools
from types import ModuleType
from typing import Any


def build(sdk: ModuleType, ai_mod: ModuleType, **client_kwargs: Any) -> tuple[Any, dict[str, Any]]:
    inngest = sdk
    client = inngest.Inngest(app_id="diff-app", **client_kwargs)
    fns: dict[str, Any] = {}

    def fn(fn_id: str, **kw: Any) -> Any:
        kw.setdefault("trigger", inngest.TriggerEvent(event="app/test"))

        def deco(handler: Any) -> Any:
            f = client.create_function(fn_id=fn_id, **kw)(handler)
            fns[fn_id] = f
            return f

        return deco

    @fn("hello")
    async def hello(ctx: Any) -> Any:
        return {"got": ctx.event.data, "name": ctx.event.name, "n": len(ctx.events), "attempt": ctx.attempt}

    def add(a: int, b: int) -> int:
        return a + b

    @fn("steps", retries=2)
    async def steps(ctx: Any) -> Any:
        total = 0
        for i in range(4):  # repeated step ids: "add", "add:1", ...
            total = await ctx.step.run("add", add, total, i)
        kw = await ctx.step.run("kw", functools.partial(lambda a, *, b: [a, b], 1, b="x"))
        none = await ctx.step.run("none", lambda: None)
        return {"total": total, "kw": kw, "none": none}

    @fn("flaky", retries=3)
    async def flaky(ctx: Any) -> Any:
        def unstable() -> str:
            if ctx.attempt < 2:
                raise ValueError(f"attempt {ctx.attempt} failed")
            return "ok"

        return await ctx.step.run("unstable", unstable)

    @fn("caught", retries=1)
    async def caught(ctx: Any) -> Any:
        def boom() -> None:
            raise KeyError("missing")

        try:
            await ctx.step.run("boom", boom)
        except inngest.StepError as err:
            name, message = err.name, err.message
            return await ctx.step.run("fallback", lambda: {"recovered": name, "message": message})
        return "unreachable"

    @fn("uncaught", retries=0)
    async def uncaught(ctx: Any) -> Any:
        await ctx.step.run("boom", lambda: 1 / 0)

    @fn("non-retriable")
    async def non_retriable(ctx: Any) -> Any:
        def stop() -> None:
            raise inngest.NonRetriableError("give up")

        await ctx.step.run("stop", stop)

    @fn("fn-non-retriable")
    async def fn_non_retriable(ctx: Any) -> Any:
        raise inngest.NonRetriableError("no retries for the function")

    @fn("retry-after")
    async def retry_after(ctx: Any) -> Any:
        raise inngest.RetryAfterError("later", datetime.timedelta(seconds=30))

    @fn("fn-error", retries=1)
    async def fn_error(ctx: Any) -> Any:
        await ctx.step.run("a", lambda: 1)
        raise RuntimeError("plain function error")

    @fn("sleeps")
    async def sleeps(ctx: Any) -> Any:
        await ctx.step.sleep("nap", datetime.timedelta(minutes=5))
        await ctx.step.sleep("ms-nap", 90_000)
        await ctx.step.sleep_until("until", datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC))
        return "rested"

    @fn("waits")
    async def waits(ctx: Any) -> Any:
        got = await ctx.step.wait_for_event(
            "wait", event="app/reply", if_exp="async.data.id == event.data.id", timeout=datetime.timedelta(hours=1)
        )
        missed = await ctx.step.wait_for_event("wait-2", event="app/other", timeout=60_000)
        return {"got": None if got is None else [got.name, dict(got.data), got.id, got.ts], "missed": missed}

    @fn("parallel")
    async def parallel(ctx: Any) -> Any:
        res = await ctx.group.parallel(
            (
                lambda: ctx.step.run("p1", lambda: 1),
                lambda: ctx.step.run("p2", lambda: 2),
                functools.partial(ctx.step.run, "p3", lambda: 3),
            )
        )
        after = await ctx.step.run("after", lambda: sum(res))
        return {"res": list(res), "after": after}

    @fn("race")
    async def race(ctx: Any) -> Any:
        async def seq(i: int) -> Any:
            a = await ctx.step.run(f"r{i}-a", lambda: i)
            return await ctx.step.run(f"r{i}-b", lambda: a * 10)

        res = await ctx.group.parallel(
            (functools.partial(seq, 1), functools.partial(seq, 2)), parallel_mode=inngest.ParallelMode.RACE
        )
        return list(res)

    @fn("invokes")
    async def invokes(ctx: Any) -> Any:
        a = await ctx.step.invoke("call-hello", function=hello, data={"x": 1})
        b = await ctx.step.invoke_by_id("call-other", app_id="other-app", function_id="remote", data={"y": 2},
                                        timeout=datetime.timedelta(minutes=2))
        try:
            await ctx.step.invoke_by_id("call-missing", function_id="missing")
        except inngest.StepError as err:
            return {"a": a, "b": b, "err": err.message}
        return "unreachable"

    @fn("sends")
    async def sends(ctx: Any) -> Any:
        ids = await ctx.step.send_event("send", inngest.Event(name="app/sent", data={"k": 1}, id="dedupe-1"))
        more = await ctx.step.send_event("send-many", [inngest.Event(name="app/a"), inngest.Event(name="app/b", data={"v": 2})])
        return {"ids": ids, "more": more}

    @fn("ai")
    async def ai(ctx: Any) -> Any:
        res = await ctx.step.ai.infer(
            "infer",
            adapter=ai_mod.openai.Adapter(auth_key="sk-test", model="gpt-4o"),
            body={"messages": [{"role": "user", "content": "hi"}]},
        )
        return res

    @fn("nested")
    async def nested(ctx: Any) -> Any:
        async def outer() -> Any:
            return await ctx.step.run("inner", lambda: 1)

        return await ctx.step.run("outer", outer)

    @fn("unserializable")
    async def unserializable(ctx: Any) -> Any:
        return await ctx.step.run("bad", lambda: object())

    @fn("fn-unserializable")
    async def fn_unserializable(ctx: Any) -> Any:
        return {1, 2}

    async def failure_handler(ctx: Any) -> Any:
        return {"failed": ctx.event.name, "original": ctx.event.data.get("function_id")}

    @fn("with-failure", on_failure=failure_handler, retries=0)
    async def with_failure(ctx: Any) -> Any:
        raise ValueError("always")

    @fn("batch", batch_events=inngest.Batch(max_size=3, timeout=datetime.timedelta(seconds=5)))
    async def batch(ctx: Any) -> Any:
        return [e.data.get("i") for e in ctx.events]

    # plain (non-async) handlers: StepSync

    @fn("sync-steps", retries=1)
    def sync_steps(ctx: Any) -> Any:
        a = ctx.step.run("a", add, 1, 2)
        try:
            ctx.step.run("fail", lambda: [][1])
        except inngest.StepError as err:
            b = err.name
        ctx.step.sleep("nap", datetime.timedelta(seconds=10))
        got = ctx.step.wait_for_event("wait", event="app/reply", timeout=datetime.timedelta(minutes=1))
        res = ctx.group.parallel((lambda: ctx.step.run("s1", lambda: "x"), lambda: ctx.step.run("s2", lambda: "y")))
        inv = ctx.step.invoke_by_id("inv", function_id="hello", data={})
        return {"a": a, "b": b, "got": got is not None, "res": list(res), "inv": inv}

    @fn("sync-sends")
    def sync_sends(ctx: Any) -> Any:
        return ctx.step.send_event("send", inngest.Event(name="app/sent-sync", data={"s": True}))

    @fn("options", name="All the options", retries=7,
        trigger=[inngest.TriggerEvent(event="app/a", expression="event.data.ok == true"),
                 inngest.TriggerCron(cron="TZ=Europe/Paris 0 12 * * 5")],
        cancel=[inngest.Cancel(event="app/cancel", if_exp="async.data.id == event.data.id", timeout=datetime.timedelta(days=1))],
        concurrency=[inngest.Concurrency(limit=2, key="event.data.user", scope="env"), inngest.Concurrency(limit=5)],
        debounce=inngest.Debounce(period=datetime.timedelta(seconds=30), key="event.data.user", timeout=3_600_000),
        idempotency="event.data.id",
        priority=inngest.Priority(run="event.data.prio"),
        rate_limit=inngest.RateLimit(limit=10, period=datetime.timedelta(hours=1), key="event.data.user"),
        throttle=inngest.Throttle(limit=3, period=60_000, key="event.data.user", burst=2),
        timeouts=inngest.Timeouts(start=datetime.timedelta(minutes=1), finish=datetime.timedelta(hours=2)),
        singleton=inngest.Singleton(key="event.data.user", mode="cancel"),
        )
    async def options(ctx: Any) -> Any:
        return None

    @fn("memos")
    async def memos(ctx: Any) -> Any:
        out = [await ctx.step.run(sid, lambda: "fresh") for sid in ("a", "b", "c", "d", "f")]
        try:
            await ctx.step.run("e", lambda: "fresh")
        except inngest.StepError as err:
            out.append([err.name, err.message, err.stack])
        return out

    return client, fns
