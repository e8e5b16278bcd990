// The functions list (triggers, volume, failure rate) and a function's page (metrics, actions).
import { useState } from "preact/hooks";
import { fmtCount, fmtTime, gql, sinceIso } from "./api.js";
import { Area, Bars, COLORS, Donut, Meter } from "./charts.js";
import { Empty, ErrorNote, JsonModal, Modal, Pill, RangeSelect, Status, Tabs, html, queryParam, setQuery, toast, useData } from "./ui.js";
import { RunsTable, runFilter } from "./runs.js";

const LIST = `query Fns($from: Time!) {
  functions { id name slug paused triggers { type value condition } app { id name } }
  functionStats(from: $from) { functionID total failed completed cancelled running queued failureRate } }`;

function Triggers({ triggers }) {
  return html`<div class="triggers">${(triggers || []).map((t) => html`
    <span class="trigger ${t.type.toLowerCase()}" title=${t.condition || ""}>${t.type === "CRON" ? "⏱ " : "⚡ "}${t.value}</span>`)}</div>`;
}

export async function invoke(fn, payload) {
  await gql(`mutation($slug: String!, $data: Map, $user: Map) { invokeFunction(functionSlug: $slug, data: $data, user: $user) }`,
    { slug: fn.slug, data: payload.data || {}, user: payload.user || null });
  toast(`Invoked ${fn.name}`);
}

export function FunctionsPage() {
  const range = queryParam("range", "24h");
  const [invoking, setInvoking] = useState(null);
  const data = useData(() => gql(LIST, { from: sinceIso(range) }), [range], (m) => m.newRuns > 0 || m.many);
  const stats = {};
  if (data.data) data.data.functionStats.forEach((s) => { stats[s.functionID] = s; });
  const max = Math.max(1, ...Object.values(stats).map((s) => s.total));
  return html`<section class="page">
    <header class="page-head"><div><h1>Functions</h1><p class="muted">Registered functions, their triggers and recent activity.</p></div>
      <${RangeSelect} value=${range} onChange=${(v) => setQuery({ range: v })} /></header>
    <${ErrorNote} error=${data.error} />
    ${data.data && (data.data.functions.length === 0
      ? html`<${Empty}>No functions yet. <a href="/apps">Sync an app</a> to register its functions.<//>`
      : html`<table class="table"><thead><tr><th>Function</th><th>Triggers</th><th>App</th>
          <th>Volume (${range})</th><th>Failure rate</th><th></th></tr></thead>
        <tbody>${data.data.functions.map((f) => {
          const s = stats[f.id] || { total: 0, failureRate: 0, failed: 0 };
          return html`<tr data-function=${f.slug}>
            <td><a href="/functions/${encodeURIComponent(f.slug)}"><b>${f.name}</b></a>
              ${f.paused && html` <${Pill} kind="warn">Paused<//>`}<div class="muted small mono">${f.slug}</div></td>
            <td><${Triggers} triggers=${f.triggers} /></td>
            <td>${f.app.name}</td>
            <td class="vol"><${Meter} value=${s.total} max=${max} /> <b>${fmtCount(s.total)}</b></td>
            <td class=${s.failureRate > 0 ? "bad-text" : ""}>${(100 * s.failureRate).toFixed(1)}%
              <span class="muted small">(${s.failed})</span></td>
            <td class="right"><button class="btn small" onClick=${() => setInvoking(f)}>Invoke</button></td>
          </tr>`;
        })}</tbody></table>`)}
    ${invoking && html`<${JsonModal} title="Invoke ${invoking.name}" action="Invoke function"
      hint="The payload's data becomes event.data of the run (user is optional)."
      initial=${JSON.stringify({ data: {} }, null, 2)} onClose=${() => setInvoking(null)}
      onSubmit=${(p) => invoke(invoking, p).then(data.reload)} />`}
  </section>`;
}

// ------------------------------------------------------------------------- function page

const FN = `query Fn($slug: String!, $from: Time!, $buckets: Int) {
  functionBySlug(query: {functionSlug: $slug}) { id name slug paused config triggers { type value condition } app { id name } }
  functionMetrics(functionID: $slug, from: $from, buckets: $buckets) { from until bucketMS
    status { total completed failed cancelled running queued skipped failureRate }
    runs { queued started completed failed cancelled backlog } steps { completed failed errored } } }`;

const fnRuns = `query R($first: Int!, $filter: RunsFilterV2!) { runs(first: $first, orderBy: [{field: QUEUED_AT, direction: DESC}], filter: $filter) {
  edges { node { id status queuedAt startedAt endedAt eventName cronSchedule function { id name slug } app { id name } } } pageInfo { hasNextPage endCursor } } }`;

function isoLocal(d) {
  const off = d.getTimezoneOffset() * 60e3;
  return new Date(d.getTime() - off).toISOString().slice(0, 16);
}

function RangeFields({ from, until, setFrom, setUntil }) {
  return html`<div class="row2">
    <label class="field"><span>From</span><input type="datetime-local" value=${from} onInput=${(e) => setFrom(e.target.value)} /></label>
    <label class="field"><span>Until</span><input type="datetime-local" value=${until} onInput=${(e) => setUntil(e.target.value)} /></label></div>`;
}

function PauseModal({ fn, onClose, onDone }) {
  const [cancel, setCancel] = useState(false);
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    try {
      await gql(`mutation($id: ID!, $c: Boolean) { pauseFunction(fnID: $id, cancelRunning: $c) { id paused } }`, { id: fn.id, c: cancel });
      toast(`${fn.name} paused`);
      onDone();
      onClose();
    } catch (e) {
      toast(e.message, "bad");
      setBusy(false);
    }
  };
  return html`<${Modal} title="Pause ${fn.name}" onClose=${onClose} footer=${html`<button class="btn" onClick=${onClose}>Cancel</button>
      <button class="btn danger" disabled=${busy} onClick=${go}>Pause function</button>`}>
    <p>Events are still stored, but they no longer start <b>${fn.name}</b> until you resume it.
      Events received meanwhile are not replayed automatically.</p>
    <fieldset class="options"><legend>Runs already under way</legend>
      <label><input type="radio" name="running" checked=${!cancel} onChange=${() => setCancel(false)} />
        Hold them between steps: they go on when you resume (cancelled if still paused after 7 days)</label>
      <label><input type="radio" name="running" checked=${cancel} onChange=${() => setCancel(true)} />
        Cancel them now (a step in flight finishes first)</label></fieldset>
  <//>`;
}

function BulkCancelModal({ fn, onClose, onDone }) {
  const [name, setName] = useState("");
  const [from, setFrom] = useState(isoLocal(new Date(Date.now() - 86400e3)));
  const [until, setUntil] = useState(isoLocal(new Date(Date.now() + 60e3)));
  const [expr, setExpr] = useState("");
  const vars = { fn: fn.id, a: from ? new Date(from).toISOString() : null, b: until ? new Date(until).toISOString() : null, e: expr || null };
  const count = useData(() => gql(`query($fn: String!, $a: Time, $b: Time, $e: String) {
    cancellationRunCount(functionID: $fn, queuedAfter: $a, queuedBefore: $b, expression: $e) }`, vars), [from, until, expr]);
  const n = count.data ? count.data.cancellationRunCount : null;
  const go = async () => {
    try {
      await gql(`mutation($i: CreateCancellationInput!) { createCancellation(input: $i) { id matched } }`,
        { i: { functionID: fn.id, name, queuedAfter: vars.a, queuedBefore: vars.b, expression: vars.e } });
      toast(`Cancelling ${n} run${n === 1 ? "" : "s"}`);
      onDone();
      onClose();
    } catch (e) {
      toast(e.message, "bad");
    }
  };
  return html`<${Modal} title="Bulk cancel" onClose=${onClose} footer=${html`<button class="btn" onClick=${onClose}>Close</button>
      <button class="btn danger" disabled=${!n} onClick=${go}>Cancel ${n ?? "…"} run${n === 1 ? "" : "s"}</button>`}>
    <label class="field"><span>Name</span><input value=${name} placeholder="e.g. Stop the duplicate import" onInput=${(e) => setName(e.target.value)} /></label>
    <${RangeFields} from=${from} until=${until} setFrom=${setFrom} setUntil=${setUntil} />
    <label class="field"><span>Only runs whose event matches (CEL, optional)</span>
      <input class="mono" value=${expr} placeholder='event.data.userId == "u_123"' onInput=${(e) => setExpr(e.target.value)} /></label>
    <${ErrorNote} error=${count.error} />
    <p class="estimate" aria-live="polite">${n === null ? "Counting…" : html`<b>${n}</b> unfinished run${n === 1 ? "" : "s"} match.`}</p>
  <//>`;
}

const REPLAYABLE = ["FAILED", "CANCELLED", "COMPLETED", "SKIPPED"];

function ReplayModal({ fn, onClose, onDone }) {
  const [name, setName] = useState("");
  const [from, setFrom] = useState(isoLocal(new Date(Date.now() - 86400e3)));
  const [until, setUntil] = useState(isoLocal(new Date(Date.now() + 60e3)));
  const [statuses, setStatuses] = useState(["FAILED"]);
  const vars = { fn: fn.id, a: new Date(from).toISOString(), b: new Date(until).toISOString(), s: statuses };
  const count = useData(() => (statuses.length ? gql(`query($fn: String!, $a: Time!, $b: Time!, $s: [FunctionRunStatus!]!) {
    replayRunCount(functionID: $fn, fromRange: $a, toRange: $b, statuses: $s) }`, vars) : Promise.resolve({ replayRunCount: 0 })),
  [from, until, statuses.join()]);
  const n = count.data ? count.data.replayRunCount : null;
  const go = async () => {
    try {
      await gql(`mutation($i: CreateFunctionReplayInput!) { createFunctionReplay(input: $i) { id total } }`,
        { i: { functionID: fn.id, name, fromRange: vars.a, toRange: vars.b, statuses } });
      toast(`Replaying ${n} run${n === 1 ? "" : "s"}`);
      onDone();
      onClose();
    } catch (e) {
      toast(e.message, "bad");
    }
  };
  const flip = (s) => setStatuses(statuses.includes(s) ? statuses.filter((x) => x !== s) : [...statuses, s]);
  return html`<${Modal} title="New replay" onClose=${onClose} footer=${html`<button class="btn" onClick=${onClose}>Close</button>
      <button class="btn primary" disabled=${!n} onClick=${go}>Replay ${n ?? "…"} run${n === 1 ? "" : "s"}</button>`}>
    <label class="field"><span>Name</span><input value=${name} placeholder="e.g. Bug fix from PR #958" onInput=${(e) => setName(e.target.value)} /></label>
    <${RangeFields} from=${from} until=${until} setFrom=${setFrom} setUntil=${setUntil} />
    <fieldset class="options inline"><legend>Run statuses</legend>${REPLAYABLE.map((s) => html`
      <label><input type="checkbox" checked=${statuses.includes(s)} onChange=${() => flip(s)} /> <${Status} status=${s} /></label>`)}</fieldset>
    <${ErrorNote} error=${count.error} />
    <p class="estimate" aria-live="polite">${n === null ? "Counting…" : html`<b>${n}</b> run${n === 1 ? "" : "s"} will be replayed, spread out over time.`}</p>
  <//>`;
}

function History({ fn, kind }) {
  const q = kind === "cancellations"
    ? `query($fn: String) { items: cancellations(functionID: $fn) { id name createdAt matched cancelled finishedAt expression } }`
    : `query($fn: String) { items: replays(functionID: $fn) { id name createdAt total scheduled finishedAt statuses } }`;
  const data = useData(() => gql(q, { fn: fn.id }), [fn.id, kind], (m) => m.newRuns > 0 || m.runs.length > 0);
  if (!data.data) return html`<div class="loading">Loading…</div>`;
  if (!data.data.items.length) return html`<${Empty}>No ${kind} yet.<//>`;
  return html`<table class="table"><thead><tr><th>Name</th><th>Created</th><th>Progress</th><th>Status</th></tr></thead>
    <tbody>${data.data.items.map((r) => {
      const total = kind === "cancellations" ? r.matched : r.total;
      const done = kind === "cancellations" ? r.cancelled : r.scheduled;
      return html`<tr><td><b>${r.name}</b><div class="muted small">${r.expression || (r.statuses || []).join(", ").toLowerCase()}</div></td>
        <td>${fmtTime(r.createdAt)}</td><td><${Meter} value=${done} max=${total || 1} color=${COLORS.completed} /> ${done} / ${total}</td>
        <td>${r.finishedAt ? html`<${Pill} kind="ok">Completed<//>` : html`<${Pill} kind="run">In progress<//>`}</td></tr>`;
    })}</tbody></table>`;
}

export function FunctionPage({ slug }) {
  const range = queryParam("range", "24h");
  const tab = queryParam("tab", "runs");
  const [modal, setModal] = useState(null);
  const data = useData(() => gql(FN, { slug, from: sinceIso(range), buckets: 48 }), [slug, range],
    (m) => m.newRuns > 0 || m.many || m.runs.length > 0);
  const fn = data.data && data.data.functionBySlug;
  const runs = useData(async () => (fn ? (await gql(fnRuns, { first: 20, filter: runFilter({ range, status: [], fn: fn.id, app: "", q: "" }) })).runs : null),
    [fn && fn.id, range], (m) => m.newRuns > 0 || m.runs.length > 0);
  if (data.error && !fn) return html`<section class="page"><${ErrorNote} error=${data.error} /></section>`;
  if (!data.data) return html`<section class="page"><div class="loading">Loading…</div></section>`;
  if (!fn) return html`<section class="page"><${Empty}>Function ${slug} not found.<//></section>`;
  const m = data.data.functionMetrics;
  const st = m.status;
  const resume = async () => {
    await gql(`mutation($id: ID!) { unpauseFunction(fnID: $id) { id paused } }`, { id: fn.id });
    toast(`${fn.name} resumed`);
    data.reload();
  };
  return html`<section class="page">
    <header class="page-head">
      <div><div class="crumbs"><a href="/functions">Functions</a> / <span class="mono">${fn.slug}</span></div>
        <h1>${fn.name} ${fn.paused && html`<${Pill} kind="warn">Paused<//>`}</h1>
        <div class="muted">${fn.app.name} · <${Triggers} triggers=${fn.triggers} /></div></div>
      <div class="actions">
        <${RangeSelect} value=${range} onChange=${(v) => setQuery({ range: v })} />
        <button class="btn primary" onClick=${() => setModal("invoke")}>Invoke</button>
        ${fn.paused ? html`<button class="btn" onClick=${resume}>Resume</button>`
          : html`<button class="btn" onClick=${() => setModal("pause")}>Pause</button>`}
        <button class="btn" onClick=${() => setModal("replay")}>Replay</button>
        <button class="btn danger" onClick=${() => setModal("cancel")}>Bulk cancel</button>
      </div>
    </header>
    <div class="cards">
      <div class="panel"><div class="panel-head"><h3>Function status</h3></div>
        <${Donut} segments=${[
          { label: "Completed", value: st.completed, color: COLORS.completed },
          { label: "Failed", value: st.failed, color: COLORS.failed },
          { label: "Cancelled", value: st.cancelled, color: COLORS.cancelled },
          { label: "Running", value: st.running, color: COLORS.running },
          { label: "Queued", value: st.queued, color: COLORS.queued }]} /></div>
      <div class="panel grow"><div class="panel-head"><h3>Runs throughput</h3><span class="muted small">runs ended per bucket</span></div>
        <${Bars} label="Runs throughput" from=${new Date(m.from).getTime()} bucketMs=${m.bucketMS} series=${[
          { label: "Completed", color: COLORS.completed, values: m.runs.completed },
          { label: "Failed", color: COLORS.failed, values: m.runs.failed },
          { label: "Cancelled", color: COLORS.cancelled, values: m.runs.cancelled }]} /></div>
    </div>
    <div class="cards">
      <div class="panel grow"><div class="panel-head"><h3>Steps throughput</h3></div>
        <${Bars} label="Steps throughput" from=${new Date(m.from).getTime()} bucketMs=${m.bucketMS} series=${[
          { label: "Completed", color: COLORS.completed, values: m.steps.completed },
          { label: "Retried", color: COLORS.errored, values: m.steps.errored },
          { label: "Failed", color: COLORS.failed, values: m.steps.failed }]} /></div>
      <div class="panel grow"><div class="panel-head"><h3>Backlog</h3><span class="muted small">runs queued, not started</span></div>
        <${Area} label="Backlog" values=${m.runs.backlog} from=${new Date(m.from).getTime()} bucketMs=${m.bucketMS} /></div>
    </div>
    <${Tabs} value=${tab} onChange=${(t) => setQuery({ tab: t })}
      tabs=${[["runs", "Recent runs"], ["replays", "Replays"], ["cancellations", "Cancellation history"], ["config", "Configuration"]]} />
    ${tab === "runs" && (runs.data ? html`<${RunsTable} runs=${runs.data.edges.map((e) => e.node)} showFunction=${false} />` : html`<div class="loading">Loading…</div>`)}
    ${tab === "replays" && html`<${History} fn=${fn} kind="replays" />`}
    ${tab === "cancellations" && html`<${History} fn=${fn} kind="cancellations" />`}
    ${tab === "config" && html`<div class="code"><pre>${JSON.stringify(JSON.parse(fn.config), null, 2)}</pre></div>`}
    ${modal === "invoke" && html`<${JsonModal} title="Invoke ${fn.name}" action="Invoke function"
      initial=${JSON.stringify({ data: {} }, null, 2)} onClose=${() => setModal(null)}
      onSubmit=${(p) => invoke(fn, p).then(() => { data.reload(); runs.reload(); })} />`}
    ${modal === "pause" && html`<${PauseModal} fn=${fn} onClose=${() => setModal(null)} onDone=${data.reload} />`}
    ${modal === "cancel" && html`<${BulkCancelModal} fn=${fn} onClose=${() => setModal(null)} onDone=${() => setQuery({ tab: "cancellations" })} />`}
    ${modal === "replay" && html`<${ReplayModal} fn=${fn} onClose=${() => setModal(null)} onDone=${() => setQuery({ tab: "replays" })} />`}
  </section>`;
}
