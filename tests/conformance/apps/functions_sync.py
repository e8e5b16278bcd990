"""The conformance functions with sync handlers (``inngest.ContextSync``, ``StepSync``,
``GroupSync``), for any Python SDK with the official ``inngest`` API: the PyPI ``inngest``
package (``py_flask.py``) and pyngest (``pyngest_flask.py``). The mirror of
``functions_async.py``, so that each SDK's synchronous code path is driven too.

``functions(inngest, client, kind)`` defines every function on ``client``, where ``inngest`` is
the SDK's module, and returns them. Event names carry the app's prefix (``common.prefix``) and
observations go to the log as ``kind`` (``common.record``).
"""

from __future__ import annotations

import datetime
import importlib
import random
import time
from types import ModuleType
from typing import Any

from common import blob, digest, nonce, prefix, record, request_count


def observe_state_fetches(client: Any, kind: str) -> None:
    """Log the SDK fetching a run's state through the REST API, which it does only when the
    server sets ``use_api`` (state too large to send in the request body)."""
    original = client._get_steps_sync

    def observed(run_id: str) -> Any:
        record(kind, kind="use_api", run_id=run_id)
        return original(run_id)

    client._get_steps_sync = observed


def functions(inngest: ModuleType, client: Any, kind: str) -> list[Any]:
    P = prefix(kind)

    def _tag(ctx: inngest.ContextSync) -> Any:
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
    def steps_memo(ctx: inngest.ContextSync) -> Any:
        # Three steps with the same id: the SDK hashes them as "add", "add:1", "add:2".
        values: list[int] = []
        for i in range(3):
            previous = values[-1] if values else 0

            def add(i: int = i, previous: int = previous) -> int:
                _step_record(ctx, "steps-memo", f"add#{i}")
                return previous + 1

            values.append(ctx.step.run("add", add))
        record(kind, kind="body-end", fn="steps-memo", tag=_tag(ctx), run_id=ctx.run_id)
        return {"values": values}

    @client.create_function(fn_id="sleep", trigger=inngest.TriggerEvent(event=f"{P}/sleep"))
    def sleep_fn(ctx: inngest.ContextSync) -> Any:
        def now(name: str) -> float:
            _step_record(ctx, "sleep", name)
            return time.time()

        before = ctx.step.run("before", now, "before")
        ctx.step.sleep("nap", datetime.timedelta(seconds=ctx.event.data["seconds"]))
        after = ctx.step.run("after", now, "after")
        return {"before": before, "after": after}

    @client.create_function(
        fn_id="sleep-until", trigger=inngest.TriggerEvent(event=f"{P}/sleep-until")
    )
    def sleep_until_fn(ctx: inngest.ContextSync) -> Any:
        until = datetime.datetime.fromisoformat(ctx.event.data["until"].replace("Z", "+00:00"))
        ctx.step.sleep_until("wake", until)

        def now() -> float:
            _step_record(ctx, "sleep-until", "after")
            return time.time()

        return {"after": ctx.step.run("after", now)}

    @client.create_function(fn_id="wait-for-event", trigger=inngest.TriggerEvent(event=f"{P}/wait"))
    def wait_for_event_fn(ctx: inngest.ContextSync) -> Any:
        def started() -> float:
            _step_record(ctx, "wait-for-event", "started")
            return time.time()

        start = ctx.step.run("started", started)
        received = ctx.step.wait_for_event(
            "wait",
            event=f"{P}/wait.reply",
            if_exp="async.data.key == event.data.key",
            timeout=datetime.timedelta(seconds=ctx.event.data["timeout_s"]),
        )
        return {"started": start, "received": None if received is None else received.data}

    @client.create_function(
        fn_id="invoke-child", trigger=inngest.TriggerEvent(event=f"{P}/never.child")
    )
    def invoke_child(ctx: inngest.ContextSync) -> Any:
        def double() -> int:
            _step_record(ctx, "invoke-child", "double")
            return int(ctx.event.data["x"]) * 2

        return {"doubled": ctx.step.run("double", double)}

    @client.create_function(
        fn_id="invoke-child-fail",
        retries=0,
        trigger=inngest.TriggerEvent(event=f"{P}/never.child-fail"),
    )
    def invoke_child_fail(ctx: inngest.ContextSync) -> Any:
        record(kind, kind="body", fn="invoke-child-fail", tag=_tag(ctx), run_id=ctx.run_id)
        raise inngest.NonRetriableError("child failed on purpose")

    @client.create_function(
        fn_id="invoke-child-slow", trigger=inngest.TriggerEvent(event=f"{P}/never.child-slow")
    )
    def invoke_child_slow(ctx: inngest.ContextSync) -> Any:
        ctx.step.sleep("slow", datetime.timedelta(seconds=ctx.event.data["sleep_s"]))
        return {"slow": "done"}

    @client.create_function(
        fn_id="invoke-parent", trigger=inngest.TriggerEvent(event=f"{P}/invoke")
    )
    def invoke_parent(ctx: inngest.ContextSync) -> Any:
        mode = ctx.event.data["mode"]
        tag = _tag(ctx)
        try:
            if mode == "ok":
                result = ctx.step.invoke_by_id(
                    "call", function_id="invoke-child", data={"x": 21, "tag": tag}
                )
            elif mode == "fail":
                result = ctx.step.invoke_by_id(
                    "call", function_id="invoke-child-fail", data={"tag": tag}
                )
            else:
                result = ctx.step.invoke_by_id(
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
    def parallel_fn(ctx: inngest.ContextSync) -> Any:
        def branch(name: str, value: int) -> Any:
            def body() -> int:
                _step_record(ctx, "parallel", name)
                return value

            return lambda: ctx.step.run(name, body)

        results = ctx.group.parallel((branch("p1", 1), branch("p2", 2), branch("p3", 4)))

        def total() -> int:
            _step_record(ctx, "parallel", "sum")
            return sum(results)

        return {"parts": list(results), "sum": ctx.step.run("sum", total)}

    @client.create_function(
        fn_id="retry", retries=3, trigger=inngest.TriggerEvent(event=f"{P}/retry")
    )
    def retry_fn(ctx: inngest.ContextSync) -> Any:
        def flaky() -> int:
            _step_record(ctx, "retry", "flaky")
            if ctx.attempt < ctx.event.data["fail_times"]:
                raise ValueError(f"flaky failure on attempt {ctx.attempt}")
            return ctx.attempt

        return {"succeeded_on_attempt": ctx.step.run("flaky", flaky)}

    @client.create_function(
        fn_id="retry-after", retries=2, trigger=inngest.TriggerEvent(event=f"{P}/retry-after")
    )
    def retry_after_fn(ctx: inngest.ContextSync) -> Any:
        def later() -> int:
            _step_record(ctx, "retry-after", "later")
            if ctx.attempt == 0:
                raise inngest.RetryAfterError(
                    "not yet", datetime.timedelta(seconds=ctx.event.data["retry_after_s"])
                )
            return ctx.attempt

        return {"succeeded_on_attempt": ctx.step.run("later", later)}

    @client.create_function(
        fn_id="non-retriable", retries=3, trigger=inngest.TriggerEvent(event=f"{P}/non-retriable")
    )
    def non_retriable_fn(ctx: inngest.ContextSync) -> Any:
        def refuse() -> None:
            _step_record(ctx, "non-retriable", "refuse")
            raise inngest.NonRetriableError("no retry please")

        ctx.step.run("refuse", refuse)
        return {"unreachable": True}

    def _on_failure_handler(ctx: inngest.ContextSync) -> None:
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
    def on_failure_fn(ctx: inngest.ContextSync) -> Any:
        record(kind, kind="body", fn="on-failure", tag=_tag(ctx), run_id=ctx.run_id)
        raise inngest.NonRetriableError("boom: on-failure test")

    @client.create_function(
        fn_id="cancellable",
        cancel=[inngest.Cancel(event=f"{P}/cancel", if_exp="async.data.key == event.data.key")],
        trigger=inngest.TriggerEvent(event=f"{P}/cancellable"),
    )
    def cancellable_fn(ctx: inngest.ContextSync) -> Any:
        def mark(name: str) -> str:
            _step_record(ctx, "cancellable", name)
            return name

        ctx.step.run("start", mark, "start")
        ctx.step.sleep("hold", datetime.timedelta(seconds=ctx.event.data["sleep_s"]))
        ctx.step.run("end", mark, "end")
        return {"finished": True}

    @client.create_function(
        fn_id="timeout-finish",
        timeouts=inngest.Timeouts(finish=datetime.timedelta(seconds=2)),
        trigger=inngest.TriggerEvent(event=f"{P}/timeout-finish"),
    )
    def timeout_finish_fn(ctx: inngest.ContextSync) -> Any:
        def mark(name: str) -> str:
            _step_record(ctx, "timeout-finish", name)
            return name

        ctx.step.run("start", mark, "start")
        ctx.step.sleep("hold", datetime.timedelta(seconds=ctx.event.data["sleep_s"]))
        ctx.step.run("end", mark, "end")
        return {"finished": True}

    @client.create_function(
        fn_id="timeout-start",
        concurrency=[inngest.Concurrency(limit=1)],
        timeouts=inngest.Timeouts(start=datetime.timedelta(seconds=2)),
        trigger=inngest.TriggerEvent(event=f"{P}/timeout-start"),
    )
    def timeout_start_fn(ctx: inngest.ContextSync) -> Any:
        def hold() -> str:
            _step_record(ctx, "timeout-start", "hold")
            time.sleep(ctx.event.data["hold_s"])
            return "held"

        return {"hold": ctx.step.run("hold", hold)}

    @client.create_function(fn_id="cron", trigger=inngest.TriggerCron(cron="* * * * *"))
    def cron_fn(ctx: inngest.ContextSync) -> Any:
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
    def multi_trigger_fn(ctx: inngest.ContextSync) -> Any:
        record(kind, kind="body", fn="multi-trigger", tag=_tag(ctx), event_name=ctx.event.name)
        return {"event": ctx.event.name}

    @client.create_function(fn_id="dedup", trigger=inngest.TriggerEvent(event=f"{P}/dedup"))
    def dedup_fn(ctx: inngest.ContextSync) -> Any:
        def once() -> str:
            _step_record(ctx, "dedup", "once", event_id=ctx.event.id)
            return ctx.event.id

        return {"event_id": ctx.step.run("once", once)}

    @client.create_function(
        fn_id="large-state", trigger=inngest.TriggerEvent(event=f"{P}/large-state")
    )
    def large_state_fn(ctx: inngest.ContextSync) -> Any:
        size = ctx.event.data["size"]
        pieces: list[str] = []
        for i in range(ctx.event.data["count"]):

            def make(i: int = i) -> str:
                _step_record(ctx, "large-state", f"piece-{i}")
                return blob(i, size)

            pieces.append(ctx.step.run(f"piece-{i}", make))
        # A sleep ends the request: the run resumes in a new one, which must carry all the state
        # (JS, checkpointing, would otherwise run every step in one request and never need it).
        ctx.step.sleep("pause", datetime.timedelta(seconds=1))

        def check() -> Any:
            _step_record(ctx, "large-state", "check")
            return [{"len": len(p), "sha256": digest(p)} for p in pieces]

        return {"pieces": ctx.step.run("check", check)}

    @client.create_function(fn_id="crash-ten", trigger=inngest.TriggerEvent(event=f"{P}/crash-ten"))
    def crash_ten_fn(ctx: inngest.ContextSync) -> Any:
        # Each step returns a fresh nonce and records, as it runs, the nonces of the earlier steps
        # as the SDK received them from the server (memoized state): see test_crash.py. `call`
        # tells the handler's calls (one per request) apart.
        call = nonce()
        delay = ctx.event.data.get("step_sleep_s", 0)
        seen: list[str] = []
        for i in range(10):
            observed = list(seen)

            def body(i: int = i, observed: list[str] = observed) -> str:
                mine = nonce()
                _step_record(
                    ctx, "crash-ten", f"s{i}", index=i, nonce=mine, seen=observed, call=call
                )
                if delay:
                    # uniform in [0, 2 * delay]: kills land in every phase of a step
                    time.sleep(random.uniform(0, 2 * delay))
                return mine

            seen.append(ctx.step.run(f"s{i}", body))
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

    @client.create_function(
        fn_id="parallel-disappears",
        retries=0,
        trigger=inngest.TriggerEvent(event=f"{P}/parallel-disappears"),
    )
    def parallel_disappears_fn(ctx: inngest.ContextSync) -> Any:
        # A non-deterministic function: its first request plans three parallel steps, later
        # ones only two, so the request targeting the third finds "after" instead.
        first = request_count(ctx.run_id) == 1
        branches: tuple[Any, ...] = (
            lambda: ctx.step.run("1a", lambda: None),
            lambda: ctx.step.run("1b", lambda: None),
        )
        if first:
            branches += (lambda: ctx.step.run("1c", lambda: None),)
        ctx.group.parallel(branches)
        ctx.step.run("after", lambda: None)

    @client.create_function(
        fn_id="unexpected-step",
        retries=0,
        trigger=inngest.TriggerEvent(event=f"{P}/unexpected-step"),
    )
    def unexpected_step_fn(ctx: inngest.ContextSync) -> Any:
        # Requests after the first one (those targeting a planned parallel step) meet a step
        # that was not there before.
        if request_count(ctx.run_id) > 1:
            ctx.step.run("unexpected", lambda: None)
        ctx.group.parallel(
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
    def unserializable_fn(ctx: inngest.ContextSync) -> Any:
        class Opaque:
            pass

        ctx.step.run("step_1", lambda: Opaque())  # type: ignore[arg-type]

    @client.create_function(
        fn_id="realtime-publish", trigger=inngest.TriggerEvent(event=f"{P}/realtime-publish")
    )
    def realtime_publish_fn(ctx: inngest.ContextSync) -> Any:
        realtime = importlib.import_module(f"{inngest.__name__}.experimental.realtime")
        channel, count = ctx.event.data["channel"], int(ctx.event.data.get("count", 3))
        for i in range(count):
            def send(i: int = i) -> int:
                realtime.publish_sync(client, channel, "progress", {"i": i, "run_id": ctx.run_id})
                return i

            ctx.step.run(f"publish-{i}", send)
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
        parallel_disappears_fn,
        unexpected_step_fn,
        unserializable_fn,
        realtime_publish_fn,
    ]
