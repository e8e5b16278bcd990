"""The conformance functions with async handlers (``inngest.Context``), for any Python SDK
with the official ``inngest`` API: the PyPI ``inngest`` package (``py_fastapi.py``) and pyngest
(``pyngest_fastapi.py``, ``pyngest_django.py``). ``functions_sync.py`` is the same set with sync
handlers; ``../js/app.mjs`` the same in JavaScript.

``functions(inngest, client, kind)`` defines every function on ``client``, where ``inngest`` is
the SDK's module, and returns them. Event names carry the app's prefix (``common.prefix``) and
observations go to the log as ``kind`` (``common.record``).
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import random
import time
from types import ModuleType
from typing import Any

from common import (
    CRASH_MIXED_LIMIT,
    TORTURE_THROTTLE,
    blob,
    digest,
    nonce,
    prefix,
    record,
    request_count,
)


def observe_state_fetches(client: Any, kind: str) -> None:
    """Log the SDK fetching a run's state through the REST API, which it does only when the
    server sets ``use_api`` (state too large to send in the request body)."""
    original = client._get_steps

    async def observed(run_id: str) -> Any:
        record(kind, kind="use_api", run_id=run_id)
        return await original(run_id)

    client._get_steps = observed


def functions(inngest: ModuleType, client: Any, kind: str) -> list[Any]:
    P = prefix(kind)

    def _tag(ctx: inngest.Context) -> Any:
        return ctx.event.data.get("tag")

    def _step_record(ctx: inngest.Context, fn: str, step: str, **fields: Any) -> None:
        record(
            kind,
            kind="step",
            fn=fn,
            step=step,
            tag=_tag(ctx),
            run_id=ctx.run_id,
            attempt=ctx.attempt,
            **fields,
        )

    @client.create_function(
        fn_id="steps-memo", trigger=inngest.TriggerEvent(event=f"{P}/steps-memo")
    )
    async def steps_memo(ctx: inngest.Context) -> Any:
        # Three steps with the same id: the SDK hashes them as "add", "add:1", "add:2".
        values: list[int] = []
        for i in range(3):
            previous = values[-1] if values else 0

            async def add(i: int = i, previous: int = previous) -> int:
                _step_record(ctx, "steps-memo", f"add#{i}")
                return previous + 1

            values.append(await ctx.step.run("add", add))
        record(kind, kind="body-end", fn="steps-memo", tag=_tag(ctx), run_id=ctx.run_id)
        return {"values": values}

    @client.create_function(fn_id="sleep", trigger=inngest.TriggerEvent(event=f"{P}/sleep"))
    async def sleep_fn(ctx: inngest.Context) -> Any:
        async def now(name: str) -> float:
            _step_record(ctx, "sleep", name)
            return time.time()

        before = await ctx.step.run("before", now, "before")
        await ctx.step.sleep("nap", datetime.timedelta(seconds=ctx.event.data["seconds"]))
        after = await ctx.step.run("after", now, "after")
        return {"before": before, "after": after}

    @client.create_function(
        fn_id="sleep-until", trigger=inngest.TriggerEvent(event=f"{P}/sleep-until")
    )
    async def sleep_until_fn(ctx: inngest.Context) -> Any:
        until = datetime.datetime.fromisoformat(ctx.event.data["until"].replace("Z", "+00:00"))
        await ctx.step.sleep_until("wake", until)

        async def now() -> float:
            _step_record(ctx, "sleep-until", "after")
            return time.time()

        return {"after": await ctx.step.run("after", now)}

    @client.create_function(fn_id="wait-for-event", trigger=inngest.TriggerEvent(event=f"{P}/wait"))
    async def wait_for_event_fn(ctx: inngest.Context) -> Any:
        async def started() -> float:
            _step_record(ctx, "wait-for-event", "started")
            return time.time()

        start = await ctx.step.run("started", started)
        received = await ctx.step.wait_for_event(
            "wait",
            event=f"{P}/wait.reply",
            if_exp="async.data.key == event.data.key",
            timeout=datetime.timedelta(seconds=ctx.event.data["timeout_s"]),
        )
        return {"started": start, "received": None if received is None else received.data}

    @client.create_function(
        fn_id="invoke-child", trigger=inngest.TriggerEvent(event=f"{P}/never.child")
    )
    async def invoke_child(ctx: inngest.Context) -> Any:
        async def double() -> int:
            _step_record(ctx, "invoke-child", "double")
            return int(ctx.event.data["x"]) * 2

        return {"doubled": await ctx.step.run("double", double)}

    @client.create_function(
        fn_id="invoke-child-fail",
        retries=0,
        trigger=inngest.TriggerEvent(event=f"{P}/never.child-fail"),
    )
    async def invoke_child_fail(ctx: inngest.Context) -> Any:
        record(kind, kind="body", fn="invoke-child-fail", tag=_tag(ctx), run_id=ctx.run_id)
        raise inngest.NonRetriableError("child failed on purpose")

    @client.create_function(
        fn_id="invoke-child-slow", trigger=inngest.TriggerEvent(event=f"{P}/never.child-slow")
    )
    async def invoke_child_slow(ctx: inngest.Context) -> Any:
        await ctx.step.sleep("slow", datetime.timedelta(seconds=ctx.event.data["sleep_s"]))
        return {"slow": "done"}

    @client.create_function(
        fn_id="invoke-parent", trigger=inngest.TriggerEvent(event=f"{P}/invoke")
    )
    async def invoke_parent(ctx: inngest.Context) -> Any:
        mode = ctx.event.data["mode"]
        tag = _tag(ctx)
        try:
            if mode == "ok":
                result = await ctx.step.invoke_by_id(
                    "call", function_id="invoke-child", data={"x": 21, "tag": tag}
                )
            elif mode == "fail":
                result = await ctx.step.invoke_by_id(
                    "call", function_id="invoke-child-fail", data={"tag": tag}
                )
            else:
                result = await ctx.step.invoke_by_id(
                    "call",
                    function_id="invoke-child-slow",
                    data={"tag": tag, "sleep_s": ctx.event.data["child_sleep_s"]},
                    timeout=datetime.timedelta(seconds=ctx.event.data["timeout_s"]),
                )
        except inngest.StepError as err:
            if ctx.event.data.get("reraise"):
                raise  # the run fails with the error the SDK builds from the step's
            return {
                "error": {"caught": type(err).__name__, "name": err.name, "message": err.message}
            }
        return {"result": result}

    @client.create_function(fn_id="parallel", trigger=inngest.TriggerEvent(event=f"{P}/parallel"))
    async def parallel_fn(ctx: inngest.Context) -> Any:
        def branch(name: str, value: int) -> Any:
            async def body() -> int:
                _step_record(ctx, "parallel", name)
                return value

            return lambda: ctx.step.run(name, body)

        results = await ctx.group.parallel((branch("p1", 1), branch("p2", 2), branch("p3", 4)))

        async def total() -> int:
            _step_record(ctx, "parallel", "sum")
            return sum(results)

        return {"parts": list(results), "sum": await ctx.step.run("sum", total)}

    @client.create_function(
        fn_id="retry", retries=3, trigger=inngest.TriggerEvent(event=f"{P}/retry")
    )
    async def retry_fn(ctx: inngest.Context) -> Any:
        async def flaky() -> int:
            _step_record(ctx, "retry", "flaky")
            if ctx.attempt < ctx.event.data["fail_times"]:
                raise ValueError(f"flaky failure on attempt {ctx.attempt}")
            return ctx.attempt

        return {"succeeded_on_attempt": await ctx.step.run("flaky", flaky)}

    @client.create_function(
        fn_id="retry-after", retries=2, trigger=inngest.TriggerEvent(event=f"{P}/retry-after")
    )
    async def retry_after_fn(ctx: inngest.Context) -> Any:
        async def later() -> int:
            _step_record(ctx, "retry-after", "later")
            if ctx.attempt == 0:
                raise inngest.RetryAfterError(
                    "not yet", datetime.timedelta(seconds=ctx.event.data["retry_after_s"])
                )
            return ctx.attempt

        return {"succeeded_on_attempt": await ctx.step.run("later", later)}

    @client.create_function(
        fn_id="non-retriable", retries=3, trigger=inngest.TriggerEvent(event=f"{P}/non-retriable")
    )
    async def non_retriable_fn(ctx: inngest.Context) -> Any:
        async def refuse() -> None:
            _step_record(ctx, "non-retriable", "refuse")
            raise inngest.NonRetriableError("no retry please")

        await ctx.step.run("refuse", refuse)
        return {"unreachable": True}

    async def _on_failure_handler(ctx: inngest.Context) -> None:
        data = ctx.event.data
        error = data.get("error") or {}
        original = data.get("event") or {}
        record(
            kind,
            kind="on-failure",
            fn="on-failure",
            event_name=ctx.event.name,
            function_id=data.get("function_id"),
            failed_run_id=data.get("run_id"),
            error_message=error.get("message"),
            tag=(original.get("data") or {}).get("tag"),
            run_id=ctx.run_id,
        )

    @client.create_function(
        fn_id="on-failure",
        retries=0,
        on_failure=_on_failure_handler,
        trigger=inngest.TriggerEvent(event=f"{P}/on-failure"),
    )
    async def on_failure_fn(ctx: inngest.Context) -> Any:
        record(kind, kind="body", fn="on-failure", tag=_tag(ctx), run_id=ctx.run_id)
        raise inngest.NonRetriableError("boom: on-failure test")

    @client.create_function(
        fn_id="cancellable",
        cancel=[inngest.Cancel(event=f"{P}/cancel", if_exp="async.data.key == event.data.key")],
        trigger=inngest.TriggerEvent(event=f"{P}/cancellable"),
    )
    async def cancellable_fn(ctx: inngest.Context) -> Any:
        async def mark(name: str) -> str:
            _step_record(ctx, "cancellable", name)
            return name

        await ctx.step.run("start", mark, "start")
        await ctx.step.sleep("hold", datetime.timedelta(seconds=ctx.event.data["sleep_s"]))
        await ctx.step.run("end", mark, "end")
        return {"finished": True}

    @client.create_function(
        fn_id="timeout-finish",
        timeouts=inngest.Timeouts(finish=datetime.timedelta(seconds=2)),
        trigger=inngest.TriggerEvent(event=f"{P}/timeout-finish"),
    )
    async def timeout_finish_fn(ctx: inngest.Context) -> Any:
        async def mark(name: str) -> str:
            _step_record(ctx, "timeout-finish", name)
            return name

        await ctx.step.run("start", mark, "start")
        await ctx.step.sleep("hold", datetime.timedelta(seconds=ctx.event.data["sleep_s"]))
        await ctx.step.run("end", mark, "end")
        return {"finished": True}

    @client.create_function(
        fn_id="timeout-start",
        concurrency=[inngest.Concurrency(limit=1)],
        timeouts=inngest.Timeouts(start=datetime.timedelta(seconds=2)),
        trigger=inngest.TriggerEvent(event=f"{P}/timeout-start"),
    )
    async def timeout_start_fn(ctx: inngest.Context) -> Any:
        async def hold() -> str:
            _step_record(ctx, "timeout-start", "hold")
            await asyncio.sleep(ctx.event.data["hold_s"])
            return "held"

        return {"hold": await ctx.step.run("hold", hold)}

    @client.create_function(fn_id="cron", trigger=inngest.TriggerCron(cron="* * * * *"))
    async def cron_fn(ctx: inngest.Context) -> Any:
        record(
            kind,
            kind="cron",
            fn="cron",
            event_name=ctx.event.name,
            event_id=ctx.event.id,
            cron=ctx.event.data.get("cron"),
            run_id=ctx.run_id,
        )
        return {"event": ctx.event.name}

    @client.create_function(
        fn_id="multi-trigger",
        trigger=[
            inngest.TriggerEvent(event=f"{P}/multi.a"),
            inngest.TriggerEvent(event=f"{P}/multi.b"),
            inngest.TriggerEvent(event=f"{P}/multi.cond", expression="event.data.ok == true"),
        ],
    )
    async def multi_trigger_fn(ctx: inngest.Context) -> Any:
        record(kind, kind="body", fn="multi-trigger", tag=_tag(ctx), event_name=ctx.event.name)
        return {"event": ctx.event.name}

    @client.create_function(fn_id="dedup", trigger=inngest.TriggerEvent(event=f"{P}/dedup"))
    async def dedup_fn(ctx: inngest.Context) -> Any:
        async def once() -> str:
            _step_record(ctx, "dedup", "once", event_id=ctx.event.id)
            return ctx.event.id

        return {"event_id": await ctx.step.run("once", once)}

    @client.create_function(
        fn_id="large-state", trigger=inngest.TriggerEvent(event=f"{P}/large-state")
    )
    async def large_state_fn(ctx: inngest.Context) -> Any:
        size = ctx.event.data["size"]
        pieces: list[str] = []
        for i in range(ctx.event.data["count"]):

            async def make(i: int = i) -> str:
                _step_record(ctx, "large-state", f"piece-{i}")
                return blob(i, size)

            pieces.append(await ctx.step.run(f"piece-{i}", make))
        # A sleep ends the request: the run resumes in a new one, which must carry all the state
        # (JS, checkpointing, would otherwise run every step in one request and never need it).
        await ctx.step.sleep("pause", datetime.timedelta(seconds=1))

        async def check() -> Any:
            _step_record(ctx, "large-state", "check")
            return [{"len": len(p), "sha256": digest(p)} for p in pieces]

        return {"pieces": await ctx.step.run("check", check)}

    @client.create_function(fn_id="crash-ten", trigger=inngest.TriggerEvent(event=f"{P}/crash-ten"))
    async def crash_ten_fn(ctx: inngest.Context) -> Any:
        # Each step returns a fresh nonce and records, as it runs, the nonces of the earlier steps
        # as the SDK received them from the server (memoized state): see test_crash.py. `call`
        # tells the handler's calls (one per request) apart.
        call = nonce()
        delay = ctx.event.data.get("step_sleep_s", 0)
        seen: list[str] = []
        for i in range(10):
            observed = list(seen)

            async def body(i: int = i, observed: list[str] = observed) -> str:
                mine = nonce()
                _step_record(
                    ctx, "crash-ten", f"s{i}", index=i, nonce=mine, seen=observed, call=call
                )
                if delay:
                    # uniform in [0, 2 * delay]: kills land in every phase of a step
                    await asyncio.sleep(random.uniform(0, 2 * delay))
                return mine

            seen.append(await ctx.step.run(f"s{i}", body))
        record(
            kind,
            kind="body-end",
            fn="crash-ten",
            tag=_tag(ctx),
            run_id=ctx.run_id,
            seen=seen,
            call=call,
        )
        return {"nonces": seen}

    in_flight = {"now": 0}

    @client.create_function(
        fn_id="crash-mixed",
        concurrency=[inngest.Concurrency(limit=CRASH_MIXED_LIMIT)],
        trigger=inngest.TriggerEvent(event=f"{P}/crash-mixed"),
    )
    async def crash_mixed_fn(ctx: inngest.Context) -> Any:
        # A concurrency-limited run that also sleeps and waits for an event (the multi-node crash
        # test): every request logs how many requests of this function the app is serving.
        in_flight["now"] += 1
        try:
            record(kind, kind="enter", fn="crash-mixed", tag=_tag(ctx), run_id=ctx.run_id,
                   in_flight=in_flight["now"])

            async def first() -> str:
                mine = nonce()
                _step_record(ctx, "crash-mixed", "first", nonce=mine)
                await asyncio.sleep(random.uniform(0, 0.2))
                return mine

            token = await ctx.step.run("first", first)
            await ctx.step.sleep("nap", datetime.timedelta(seconds=1))
            record(kind, kind="waiting", fn="crash-mixed", tag=_tag(ctx), run_id=ctx.run_id)
            reply = await ctx.step.wait_for_event(
                "reply", event=f"{P}/crash-mixed.reply", if_exp="async.data.tag == event.data.tag",
                timeout=datetime.timedelta(minutes=10),
            )

            async def last() -> str:
                _step_record(ctx, "crash-mixed", "last")
                return token

            again = await ctx.step.run("last", last)
            return {"token": again, "reply": None if reply is None else reply.data}
        finally:
            in_flight["now"] -= 1

    @client.create_function(
        fn_id="torture-retry",
        retries=3,
        throttle=inngest.Throttle(limit=TORTURE_THROTTLE, period=datetime.timedelta(seconds=1)),
        trigger=inngest.TriggerEvent(event=f"{P}/torture-retry"),
    )
    async def torture_retry_fn(ctx: inngest.Context) -> Any:
        # The torture test: throttled runs whose second step fails on its first attempt; the
        # run's output says which attempt of that step succeeded.
        async def flaky() -> int:
            _step_record(ctx, "torture-retry", "flaky")
            if ctx.attempt == 0:
                raise RuntimeError("fails on its first attempt")
            return ctx.attempt

        async def first() -> str:
            mine = nonce()
            _step_record(ctx, "torture-retry", "first", nonce=mine)
            return mine

        token = await ctx.step.run("first", first)
        attempt = await ctx.step.run("flaky", flaky)
        return {"token": token, "attempt": attempt}

    @client.create_function(
        fn_id="torture-debounce",
        debounce=inngest.Debounce(period=datetime.timedelta(seconds=1), key="event.data.tag"),
        trigger=inngest.TriggerEvent(event=f"{P}/torture-debounce"),
    )
    async def torture_debounce_fn(ctx: inngest.Context) -> Any:
        # The torture test: one run per burst of events of one key, with the burst's last event.
        async def echo() -> Any:
            return ctx.event.data

        return await ctx.step.run("echo", echo)

    @client.create_function(
        fn_id="parallel-disappears",
        retries=0,
        trigger=inngest.TriggerEvent(event=f"{P}/parallel-disappears"),
    )
    async def parallel_disappears_fn(ctx: inngest.Context) -> Any:
        # A non-deterministic function: its first request plans three parallel steps, later
        # ones only two, so the request targeting the third finds "after" instead.
        first = request_count(ctx.run_id) == 1
        branches: tuple[Any, ...] = (
            lambda: ctx.step.run("1a", lambda: None),
            lambda: ctx.step.run("1b", lambda: None),
        )
        if first:
            branches += (lambda: ctx.step.run("1c", lambda: None),)
        await ctx.group.parallel(branches)
        await ctx.step.run("after", lambda: None)

    @client.create_function(
        fn_id="unexpected-step",
        retries=0,
        trigger=inngest.TriggerEvent(event=f"{P}/unexpected-step"),
    )
    async def unexpected_step_fn(ctx: inngest.Context) -> Any:
        # Requests after the first one (those targeting a planned parallel step) meet a step
        # that was not there before.
        if request_count(ctx.run_id) > 1:
            await ctx.step.run("unexpected", lambda: None)
        await ctx.group.parallel(
            (
                lambda: ctx.step.run("parallel_1", lambda: None),
                lambda: ctx.step.run("parallel_2", lambda: None),
            )
        )

    @client.create_function(
        fn_id="unserializable",
        retries=0,
        trigger=inngest.TriggerEvent(event=f"{P}/unserializable"),
    )
    async def unserializable_fn(ctx: inngest.Context) -> Any:
        class Opaque:
            pass

        await ctx.step.run("step_1", lambda: Opaque())  # type: ignore[arg-type]

    @client.create_function(
        fn_id="realtime-publish", trigger=inngest.TriggerEvent(event=f"{P}/realtime-publish")
    )
    async def realtime_publish_fn(ctx: inngest.Context) -> Any:
        # the SDK's realtime module: inngest.experimental.realtime or pyngest.experimental.realtime
        realtime = importlib.import_module(f"{inngest.__name__}.experimental.realtime")
        channel, count = ctx.event.data["channel"], int(ctx.event.data.get("count", 3))
        for i in range(count):
            async def send(i: int = i) -> int:
                await realtime.publish(client, channel, "progress", {"i": i, "run_id": ctx.run_id})
                return i

            await ctx.step.run(f"publish-{i}", send)
        return count

    return [
        steps_memo,
        sleep_fn,
        sleep_until_fn,
        wait_for_event_fn,
        invoke_child,
        invoke_child_fail,
        invoke_child_slow,
        invoke_parent,
        parallel_fn,
        retry_fn,
        retry_after_fn,
        non_retriable_fn,
        on_failure_fn,
        cancellable_fn,
        timeout_finish_fn,
        timeout_start_fn,
        cron_fn,
        multi_trigger_fn,
        dedup_fn,
        large_state_fn,
        crash_ten_fn,
        crash_mixed_fn,
        torture_retry_fn,
        torture_debounce_fn,
        parallel_disappears_fn,
        unexpected_step_fn,
        unserializable_fn,
        realtime_publish_fn,
    ]
