// Conformance app: the official `inngest` npm SDK (v4, default checkpointing on) served by a
// plain node:http server at /api/inngest.
//
// Configured like the Python apps (see ../apps/common.py): PORT, CONFORMANCE_APP_ID,
// CONFORMANCE_PREFIX, CONFORMANCE_LOG, and the SDK's own INNGEST_* variables. It defines the
// same function ids as ../apps/py_fastapi.py, plus `fetch` (step.fetch exists only in this SDK),
// and serves GET /echo for that function to fetch.

import { AsyncLocalStorage } from "node:async_hooks";
import { createHash, randomUUID } from "node:crypto";
import { appendFileSync } from "node:fs";
import http from "node:http";
import {
  Inngest,
  Middleware,
  NonRetriableError,
  RetryAfterError,
  referenceFunction,
} from "inngest";
import { serve } from "inngest/node";
import { channel } from "inngest/realtime";

const KIND = "js";
const P = process.env.CONFORMANCE_PREFIX || KIND;
const APP_ID = process.env.CONFORMANCE_APP_ID || `conformance-${KIND}`;
const PORT = Number(process.env.PORT);
const LOG = process.env.CONFORMANCE_LOG;

// One appendFileSync per line: a single write() on an O_APPEND file, like the Python apps.
const record = (fields) => {
  if (!LOG) return;
  const line = JSON.stringify({ app: KIND, t: Date.now() / 1000, pid: process.pid, ...fields });
  appendFileSync(LOG, `${line}\n`);
};

const blob = (index, size) => {
  const seed = createHash("sha256").update(`blob-${index}`).digest("hex");
  return seed.repeat(Math.floor(size / seed.length) + 1).slice(0, size);
};
const digest = (text) => createHash("sha256").update(text).digest("hex");
const nonce = () => randomUUID().replaceAll("-", "");

const inngest = new Inngest({ id: APP_ID });

// Observe the SDK fetching a run's state through the REST API, which it does only when the
// server sets `ctx.use_api` (state too large to send in the request body).
const api = inngest["inngestApi"];
const originalGetRunSteps = api.getRunSteps.bind(api);
api.getRunSteps = async (runId) => {
  record({ kind: "use_api", run_id: runId });
  return originalGetRunSteps(runId);
};

// Observe every checkpoint attempt (v4 async checkpointing): when it was sent, for which
// dispatch (`generation`, from the request's x-inngest-generation-id) and steps, and how it
// ended: "ok" (2xx: the server stored the steps), "stale" (409: the dispatch is no longer in
// flight, and the SDK abandons the call) or "error" (the SDK retries, then falls back to
// returning the steps in its response). The SDK looks the method up on each attempt.
const originalCheckpoint = api.checkpointStepsAsync.bind(api);
api.checkpointStepsAsync = async (args) => {
  const entry = {
    kind: "checkpoint",
    run_id: args.runId,
    generation: args.generationId ?? null,
    steps: (args.steps || []).map((op) => op.displayName ?? op.name ?? op.id),
    sent: Date.now() / 1000,
  };
  try {
    const out = await originalCheckpoint(args);
    record({ ...entry, outcome: "ok" });
    return out;
  } catch (err) {
    const stale = err?.name === "StaleDispatchError";
    record({ ...entry, outcome: stale ? "stale" : "error", error: String(err?.message ?? err) });
    throw err;
  }
};

// The generation of the request being served, for the function to log (see `crash-ten`).
const dispatch = new AsyncLocalStorage();

const stepRecord = (ctx, fn, step, extra = {}) =>
  record({
    kind: "step",
    fn,
    step,
    tag: ctx.event.data?.tag,
    run_id: ctx.runId,
    attempt: ctx.attempt,
    ...extra,
  });

const ev = (name) => ({ event: `${P}/${name}` });

const stepsMemo = inngest.createFunction(
  { id: "steps-memo", triggers: [ev("steps-memo")] },
  async (ctx) => {
    const values = [];
    for (let i = 0; i < 3; i++) {
      const previous = values.length ? values[values.length - 1] : 0;
      values.push(
        await ctx.step.run("add", () => {
          stepRecord(ctx, "steps-memo", `add#${i}`);
          return previous + 1;
        }),
      );
    }
    record({ kind: "body-end", fn: "steps-memo", tag: ctx.event.data?.tag, run_id: ctx.runId });
    return { values };
  },
);

const sleepFn = inngest.createFunction({ id: "sleep", triggers: [ev("sleep")] }, async (ctx) => {
  const now = (name) => () => {
    stepRecord(ctx, "sleep", name);
    return Date.now() / 1000;
  };
  const before = await ctx.step.run("before", now("before"));
  await ctx.step.sleep("nap", `${ctx.event.data.seconds}s`);
  const after = await ctx.step.run("after", now("after"));
  return { before, after };
});

const sleepUntilFn = inngest.createFunction(
  { id: "sleep-until", triggers: [ev("sleep-until")] },
  async (ctx) => {
    await ctx.step.sleepUntil("wake", ctx.event.data.until);
    const after = await ctx.step.run("after", () => {
      stepRecord(ctx, "sleep-until", "after");
      return Date.now() / 1000;
    });
    return { after };
  },
);

const waitForEventFn = inngest.createFunction(
  { id: "wait-for-event", triggers: [ev("wait")] },
  async (ctx) => {
    const started = await ctx.step.run("started", () => {
      stepRecord(ctx, "wait-for-event", "started");
      return Date.now() / 1000;
    });
    const received = await ctx.step.waitForEvent("wait", {
      event: `${P}/wait.reply`,
      if: "async.data.key == event.data.key",
      timeout: `${ctx.event.data.timeout_s}s`,
    });
    return { started, received: received ? received.data : null };
  },
);

// Invoke-only: no trigger at all, as the npm SDK registers a function that is only invoked.
const invokeChild = inngest.createFunction(
  { id: "invoke-child", triggers: [] },
  async (ctx) => {
    const doubled = await ctx.step.run("double", () => {
      stepRecord(ctx, "invoke-child", "double");
      return Number(ctx.event.data.x) * 2;
    });
    return { doubled };
  },
);

const invokeChildFail = inngest.createFunction(
  { id: "invoke-child-fail", retries: 0, triggers: [ev("never.child-fail")] },
  async (ctx) => {
    record({ kind: "body", fn: "invoke-child-fail", tag: ctx.event.data?.tag, run_id: ctx.runId });
    throw new NonRetriableError("child failed on purpose");
  },
);

const invokeChildSlow = inngest.createFunction(
  { id: "invoke-child-slow", triggers: [ev("never.child-slow")] },
  async (ctx) => {
    await ctx.step.sleep("slow", `${ctx.event.data.sleep_s}s`);
    return { slow: "done" };
  },
);

const invokeParent = inngest.createFunction(
  { id: "invoke-parent", triggers: [ev("invoke")] },
  async (ctx) => {
    const { mode, tag } = ctx.event.data;
    try {
      let result;
      if (mode === "ok") {
        result = await ctx.step.invoke("call", {
          function: referenceFunction({ functionId: "invoke-child" }),
          data: { x: 21, tag },
        });
      } else if (mode === "fail") {
        result = await ctx.step.invoke("call", {
          function: referenceFunction({ functionId: "invoke-child-fail" }),
          data: { tag },
        });
      } else {
        result = await ctx.step.invoke("call", {
          function: referenceFunction({ functionId: "invoke-child-slow" }),
          data: { tag, sleep_s: ctx.event.data.child_sleep_s },
          timeout: `${ctx.event.data.timeout_s}s`,
        });
      }
      return { result };
    } catch (err) {
      if (ctx.event.data.reraise) throw err; // the run fails with the SDK's error for it
      return { error: { caught: err.constructor.name, name: err.name, message: err.message } };
    }
  },
);

const parallelFn = inngest.createFunction(
  { id: "parallel", triggers: [ev("parallel")] },
  async (ctx) => {
    const branch = (name, value) =>
      ctx.step.run(name, () => {
        stepRecord(ctx, "parallel", name);
        return value;
      });
    const parts = await Promise.all([branch("p1", 1), branch("p2", 2), branch("p3", 4)]);
    const sum = await ctx.step.run("sum", () => {
      stepRecord(ctx, "parallel", "sum");
      return parts.reduce((a, b) => a + b, 0);
    });
    return { parts, sum };
  },
);

const retryFn = inngest.createFunction(
  { id: "retry", retries: 3, triggers: [ev("retry")] },
  async (ctx) => {
    const attempt = await ctx.step.run("flaky", () => {
      stepRecord(ctx, "retry", "flaky");
      if (ctx.attempt < ctx.event.data.fail_times) {
        throw new Error(`flaky failure on attempt ${ctx.attempt}`);
      }
      return ctx.attempt;
    });
    return { succeeded_on_attempt: attempt };
  },
);

const retryAfterFn = inngest.createFunction(
  { id: "retry-after", retries: 2, triggers: [ev("retry-after")] },
  async (ctx) => {
    const attempt = await ctx.step.run("later", () => {
      stepRecord(ctx, "retry-after", "later");
      if (ctx.attempt === 0) {
        throw new RetryAfterError("not yet", `${ctx.event.data.retry_after_s}s`);
      }
      return ctx.attempt;
    });
    return { succeeded_on_attempt: attempt };
  },
);

const nonRetriableFn = inngest.createFunction(
  { id: "non-retriable", retries: 3, triggers: [ev("non-retriable")] },
  async (ctx) => {
    await ctx.step.run("refuse", () => {
      stepRecord(ctx, "non-retriable", "refuse");
      throw new NonRetriableError("no retry please");
    });
    return { unreachable: true };
  },
);

const onFailureFn = inngest.createFunction(
  {
    id: "on-failure",
    retries: 0,
    triggers: [ev("on-failure")],
    onFailure: async ({ event, runId }) => {
      const data = event.data || {};
      record({
        kind: "on-failure",
        fn: "on-failure",
        event_name: event.name,
        function_id: data.function_id,
        failed_run_id: data.run_id,
        error_message: data.error?.message,
        tag: data.event?.data?.tag,
        run_id: runId,
      });
    },
  },
  async (ctx) => {
    record({ kind: "body", fn: "on-failure", tag: ctx.event.data?.tag, run_id: ctx.runId });
    throw new NonRetriableError("boom: on-failure test");
  },
);

const markStep = (ctx, fn) => (name) =>
  ctx.step.run(name, () => {
    stepRecord(ctx, fn, name);
    return name;
  });

const cancellableFn = inngest.createFunction(
  {
    id: "cancellable",
    triggers: [ev("cancellable")],
    cancelOn: [{ event: `${P}/cancel`, if: "async.data.key == event.data.key" }],
  },
  async (ctx) => {
    const mark = markStep(ctx, "cancellable");
    await mark("start");
    await ctx.step.sleep("hold", `${ctx.event.data.sleep_s}s`);
    await mark("end");
    return { finished: true };
  },
);

const timeoutFinishFn = inngest.createFunction(
  { id: "timeout-finish", triggers: [ev("timeout-finish")], timeouts: { finish: "2s" } },
  async (ctx) => {
    const mark = markStep(ctx, "timeout-finish");
    await mark("start");
    await ctx.step.sleep("hold", `${ctx.event.data.sleep_s}s`);
    await mark("end");
    return { finished: true };
  },
);

const timeoutStartFn = inngest.createFunction(
  {
    id: "timeout-start",
    triggers: [ev("timeout-start")],
    concurrency: { limit: 1 },
    timeouts: { start: "2s" },
  },
  async (ctx) => {
    const hold = await ctx.step.run("hold", async () => {
      stepRecord(ctx, "timeout-start", "hold");
      await new Promise((resolve) => setTimeout(resolve, ctx.event.data.hold_s * 1000));
      return "held";
    });
    return { hold };
  },
);

const cronFn = inngest.createFunction(
  { id: "cron", triggers: [{ cron: "* * * * *" }] },
  async (ctx) => {
    record({
      kind: "cron",
      fn: "cron",
      event_name: ctx.event.name,
      event_id: ctx.event.id,
      cron: ctx.event.data?.cron,
      run_id: ctx.runId,
    });
    return { event: ctx.event.name };
  },
);

const multiTriggerFn = inngest.createFunction(
  {
    id: "multi-trigger",
    triggers: [
      ev("multi.a"),
      ev("multi.b"),
      { event: `${P}/multi.cond`, if: "event.data.ok == true" },
    ],
  },
  async (ctx) => {
    record({
      kind: "body",
      fn: "multi-trigger",
      tag: ctx.event.data?.tag,
      event_name: ctx.event.name,
    });
    return { event: ctx.event.name };
  },
);

const dedupFn = inngest.createFunction({ id: "dedup", triggers: [ev("dedup")] }, async (ctx) => {
  const eventId = await ctx.step.run("once", () => {
    stepRecord(ctx, "dedup", "once", { event_id: ctx.event.id });
    return ctx.event.id;
  });
  return { event_id: eventId };
});

const largeStateFn = inngest.createFunction(
  { id: "large-state", triggers: [ev("large-state")] },
  async (ctx) => {
    const { size, count } = ctx.event.data;
    const pieces = [];
    for (let i = 0; i < count; i++) {
      pieces.push(
        await ctx.step.run(`piece-${i}`, () => {
          stepRecord(ctx, "large-state", `piece-${i}`);
          return blob(i, size);
        }),
      );
    }
    // A sleep ends the request: the run resumes in a new one, which must carry all the state
    // (with checkpointing, every step would otherwise run in one request that never needs it).
    await ctx.step.sleep("pause", "1s");
    const summary = await ctx.step.run("check", () => {
      stepRecord(ctx, "large-state", "check");
      return pieces.map((p) => ({ len: p.length, sha256: digest(p) }));
    });
    return { pieces: summary };
  },
);

const crashTenFn = inngest.createFunction(
  { id: "crash-ten", triggers: [ev("crash-ten")] },
  async (ctx) => {
    // `call` tells the handler's calls apart: one per request, which with checkpointing may run
    // several steps (see ../test_crash.py).
    const call = nonce();
    const delay = ctx.event.data?.step_sleep_s || 0;
    const seen = [];
    for (let i = 0; i < 10; i++) {
      const observed = [...seen];
      seen.push(
        await ctx.step.run(`s${i}`, async () => {
          const mine = nonce();
          stepRecord(ctx, "crash-ten", `s${i}`, {
            index: i,
            nonce: mine,
            seen: observed,
            call,
            generation: dispatch.getStore()?.generation ?? null,
          });
          // uniform in [0, 2 * delay]: kills land in every phase of a step
          if (delay) await new Promise((resolve) => setTimeout(resolve, Math.random() * 2 * delay * 1000));
          return mine;
        }),
      );
    }
    record({ kind: "body-end", fn: "crash-ten", tag: ctx.event.data?.tag, run_id: ctx.runId, seen, call });
    return { nonces: seen };
  },
);

// step.fetch: the server performs the HTTP request (a `Gateway` op) and hands the response back.
const fetchFn = inngest.createFunction({ id: "fetch", triggers: [ev("fetch")] }, async (ctx) => {
  const res = await ctx.step.fetch(`${ctx.event.data.url}?tag=${encodeURIComponent(ctx.event.data.tag)}`);
  const body = await res.json();
  return { status: res.status, body };
});

// The npm SDK's own "info hooks for parallel steps" case (inngest-js
// src/test/integration/middleware/parallelSteps.test.ts): its middleware hooks and the function's
// body log, in order, what each request does. After the parallel group (a step and a sleep), the
// request that follows the sleep must still plan step-3 rather than run it (the server keeps
// disable_immediate_execution), so each request's hooks come in the order that test expects.
const hookLog = (ctx, what) =>
  record({ kind: "hook", fn: "parallel-sleep", tag: ctx.event.data?.tag, run_id: ctx.runId, what });

class HookRecorder extends Middleware.BaseMiddleware {
  id = "conformance-hooks";
  onMemoizationEnd({ ctx }) { hookLog(ctx, "onMemoizationEnd"); }
  onStepStart({ ctx }) { hookLog(ctx, "onStepStart"); }
  onStepComplete({ ctx }) { hookLog(ctx, "onStepComplete"); }
  onRunStart({ ctx }) { hookLog(ctx, "onRunStart"); }
  onRunComplete({ ctx }) { hookLog(ctx, "onRunComplete"); }
}

const parallelSleepFn = inngest.createFunction(
  { id: "parallel-sleep", retries: 0, middleware: [HookRecorder], triggers: [ev("parallel-sleep")] },
  async (ctx) => {
    const { step } = ctx;
    hookLog(ctx, "fn: top");
    const step1 = await step.run("step-1", () => {
      hookLog(ctx, "step-1: inside");
      return "step-1: output";
    });
    const parallel = await Promise.all([
      step.run("step-2-a", () => {
        hookLog(ctx, "step-2-a: inside");
        return "step-2-a: output";
      }),
      step.sleep("step-2-b", "1s"),
    ]);
    const step3 = await step.run("step-3", async () => {
      hookLog(ctx, "step-3: inside");
      await new Promise((resolve) => setTimeout(resolve, 500)); // as upstream's case
      return "step-3: output";
    });
    hookLog(ctx, "fn: bottom");
    return { step1, parallel, step3 };
  },
);

// Realtime: `step.realtime.publish` (a step of its own) for all but the last message, and the
// client's `realtime.publish` inside a step for the last, each to the channel the event names.
const realtimePublishFn = inngest.createFunction(
  { id: "realtime-publish", triggers: [ev("realtime-publish")] },
  async ({ event, step, runId }) => {
    const ch = channel({ name: event.data.channel, topics: { progress: {} } });
    const count = Number(event.data.count ?? 3);
    for (let i = 0; i < count - 1; i++) {
      await step.realtime.publish(`publish-${i}`, ch.progress, { i, run_id: runId });
    }
    await step.run(`publish-${count - 1}`, () =>
      inngest.realtime.publish(ch.progress, { i: count - 1, run_id: runId }),
    );
    return count;
  },
);

const functions = [
  stepsMemo,
  sleepFn,
  sleepUntilFn,
  waitForEventFn,
  invokeChild,
  invokeChildFail,
  invokeChildSlow,
  invokeParent,
  parallelFn,
  retryFn,
  retryAfterFn,
  nonRetriableFn,
  onFailureFn,
  cancellableFn,
  timeoutFinishFn,
  timeoutStartFn,
  cronFn,
  multiTriggerFn,
  dedupFn,
  largeStateFn,
  crashTenFn,
  fetchFn,
  parallelSleepFn,
  realtimePublishFn,
];

// Functions only the connect tests use (as ../apps/connect_functions.py): which worker ran a
// step, a step long enough to kill or drain its worker in the middle of, an invoke across apps.
const INSTANCE = process.env.CONNECT_INSTANCE_ID || "";
const whoFn = inngest.createFunction({ id: "who", triggers: [ev("who")] }, async ({ event, step, runId }) =>
  step.run("here", async () => {
    record({ kind: "step", fn: "who", step: "here", tag: event.data?.tag, run_id: runId, instance: INSTANCE });
    await new Promise((resolve) => setTimeout(resolve, 1000 * Number(event.data?.hold_s || 0)));
    return { pid: process.pid, instance: INSTANCE };
  }),
);
const slowStepFn = inngest.createFunction(
  { id: "slow-step", retries: 2, triggers: [ev("slow-step")] },
  async ({ event, step, runId, attempt }) =>
    step.run("slow", async () => {
      const tag = event.data?.tag;
      record({ kind: "step-start", fn: "slow-step", step: "slow", tag, run_id: runId, attempt, instance: INSTANCE });
      await new Promise((resolve) => setTimeout(resolve, 1000 * Number(event.data.seconds)));
      record({ kind: "step-end", fn: "slow-step", step: "slow", tag, run_id: runId, attempt, instance: INSTANCE });
      return { instance: INSTANCE, attempt };
    }),
);
const invokeOtherFn = inngest.createFunction(
  { id: "invoke-other", triggers: [ev("invoke-other")] },
  async ({ event, step }) => {
    const { app, fn, x, tag } = event.data;
    const target = referenceFunction({ functionId: fn, appId: app });
    const result = await step.invoke("call", { function: target, data: { x, tag } });
    return { result };
  },
);

if (process.env.CONFORMANCE_CONNECT) {
  // A connect worker: it dials the server's gateway instead of serving HTTP, and drains on
  // SIGTERM (in-flight steps finish, no new ones come), then exits.
  const { connect } = await import("inngest/connect");
  const limit = process.env.CONNECT_MAX_CONCURRENCY;
  const connection = await connect({
    apps: [{ client: inngest, functions: [...functions, whoFn, slowStepFn, invokeOtherFn] }],
    instanceId: INSTANCE || undefined,
    maxWorkerConcurrency: limit ? Number(limit) : undefined,
  });
  await connection.closed;
  process.exit(0);
}

const handler = serve({ client: inngest, functions });

const server = http.createServer((req, res) => {
  const url = new URL(req.url, `http://${req.headers.host || "127.0.0.1"}`);
  if (url.pathname === "/api/inngest") {
    const generation = Number(req.headers["x-inngest-generation-id"]) || null;
    return dispatch.run({ generation }, () => handler(req, res));
  }
  if (url.pathname === "/echo") {
    const tag = url.searchParams.get("tag");
    record({ kind: "echo", tag, method: req.method, user_agent: req.headers["user-agent"] || null });
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify({ echoed: tag, method: req.method }));
  }
  if (url.pathname === "/healthz") {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify({ ok: true, app_id: APP_ID }));
  }
  res.writeHead(404);
  res.end();
});

server.listen(PORT, "127.0.0.1");

// The tests stop the app with SIGTERM; keep-alive connections from the server would hold a
// graceful close open, and nothing in flight needs finishing.
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
