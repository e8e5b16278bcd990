// The runs list (filters, CEL search, live) and the run page (trigger, output, timeline).
import { useEffect, useState } from "preact/hooks";
import { fmtDuration, fmtTime, gql, ms, sinceIso } from "./api.js";
import { Code, Empty, ErrorNote, RangeSelect, Status, html, navigate, queryParam, setQuery, toast, useData } from "./ui.js";
import { Timeline } from "./timeline.js";

const STATUSES = ["QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"];
const PAGE = 40;

const RUNS = `query Runs($first: Int!, $after: String, $filter: RunsFilterV2!) {
  runs(first: $first, after: $after, orderBy: [{field: QUEUED_AT, direction: DESC}], filter: $filter) {
    edges { node { id status queuedAt startedAt endedAt eventName cronSchedule
      function { id name slug } app { id name } } }
    pageInfo { hasNextPage endCursor } } }`;

const FILTERS = `{ functions { id name slug } apps { id name } }`;

export function runFilter({ range, status, fn, app, q }) {
  const filter = { from: sinceIso(range) };
  if (status.length) filter.status = status;
  if (fn) filter.functionIDs = [fn];
  if (app) filter.appIDs = [app];
  if (q.trim()) filter.query = q;
  return filter;
}

export function RunsTable({ runs, showFunction = true, fresh = new Set() }) {
  if (!runs.length) return html`<${Empty}>No runs match. Send an event or invoke a function to start one.<//>`;
  return html`<table class="table runs-table">
    <thead><tr><th>Status</th><th>Run</th>${showFunction && html`<th>Function</th>`}<th>Trigger</th>
      <th>Queued</th><th>Duration</th></tr></thead>
    <tbody>${runs.map((r) => {
      const end = ms(r.endedAt) ?? Date.now();
      const start = ms(r.startedAt);
      return html`<tr key=${r.id} class="clickable ${fresh.has(r.id) ? "fresh" : ""}" data-run=${r.id}
        onClick=${() => navigate(`/runs/${r.id}`)}>
        <td><${Status} status=${r.status} /></td>
        <td class="mono"><a href="/runs/${r.id}">${r.id.slice(-10)}</a></td>
        ${showFunction && html`<td>${r.function ? r.function.name : "–"}<div class="muted small">${r.app ? r.app.name : ""}</div></td>`}
        <td class="mono small">${r.cronSchedule ? `cron ${r.cronSchedule}` : r.eventName || "–"}</td>
        <td>${fmtTime(r.queuedAt)}</td>
        <td>${start ? fmtDuration(end - start) : "–"}</td>
      </tr>`;
    })}</tbody></table>`;
}

export function RunsPage() {
  const range = queryParam("range", "24h");
  const status = queryParam("status").split(",").filter(Boolean);
  const fn = queryParam("fn");
  const app = queryParam("app");
  const q = queryParam("q");
  const [draft, setDraft] = useState(q);
  const [live, setLive] = useState(true);
  const [pages, setPages] = useState(1);
  // A search reads at most so many runs per request and hands back a cursor; "Load more" goes
  // on from it (asking for more from the start would read the same runs again).
  const [older, setOlder] = useState([]);
  const [fresh, setFresh] = useState(new Set());
  const opts = useData(() => gql(FILTERS), []);
  const filters = [range, status.join(), fn, app, q].join("|");
  const key = [filters, pages].join("|");
  const runs = useData(async () => {
    const data = await gql(RUNS, { first: PAGE * pages, filter: runFilter({ range, status, fn, app, q }) });
    return data.runs;
  }, [key], (msg) => live && (msg.newRuns > 0 || msg.many || msg.runs.length > 0));
  useEffect(() => setOlder([]), [filters]);
  const lastPage = older.length ? older[older.length - 1] : runs.data;
  const loadMore = async () => {
    if (!q) return setPages(pages + 1);
    try {
      const data = await gql(RUNS, { first: PAGE, after: lastPage.pageInfo.endCursor, filter: runFilter({ range, status, fn, app, q }) });
      setOlder([...older, data.runs]);
    } catch (e) {
      toast(e.message, "bad");
    }
  };
  const [seen, setSeen] = useState(null);
  useEffect(() => {
    if (!runs.data) return;
    const ids = runs.data.edges.map((e) => e.node.id);
    if (seen) setFresh(new Set(ids.filter((id) => !seen.has(id))));
    setSeen(new Set(ids));
  }, [runs.data]);
  useEffect(() => setDraft(q), [q]);

  const toggle = (s) => setQuery({ status: status.includes(s) ? status.filter((x) => x !== s) : [...status, s] });
  const shown = new Set();
  const list = runs.data ? [runs.data, ...older].flatMap((r) => r.edges.map((e) => e.node))
    .filter((r) => !shown.has(r.id) && shown.add(r.id)) : [];
  return html`<section class="page">
    <header class="page-head"><div><h1>Runs</h1><p class="muted">Every function run across your apps, newest first.</p></div>
      <label class="switch"><input type="checkbox" checked=${live} onChange=${(e) => setLive(e.target.checked)} />
        <span>Live updates</span></label></header>
    <div class="filters">
      <div class="chips" role="group" aria-label="Status">${STATUSES.map((s) => html`
        <button class="chip ${status.includes(s) ? "on" : ""}" aria-pressed=${status.includes(s)}
          onClick=${() => toggle(s)}><${Status} status=${s} /></button>`)}</div>
      <label class="field inline"><span>Function</span>
        <select aria-label="Function" value=${fn} onChange=${(e) => setQuery({ fn: e.target.value })}>
          <option value="">All functions</option>
          ${opts.data && opts.data.functions.map((f) => html`<option value=${f.id}>${f.name}</option>`)}
        </select></label>
      <label class="field inline"><span>App</span>
        <select aria-label="App" value=${app} onChange=${(e) => setQuery({ app: e.target.value })}>
          <option value="">All apps</option>
          ${opts.data && opts.data.apps.map((a) => html`<option value=${a.id}>${a.name}</option>`)}
        </select></label>
      <${RangeSelect} value=${range} onChange=${(v) => setQuery({ range: v })} label="Queued in" />
    </div>
    <form class="search" onSubmit=${(e) => { e.preventDefault(); setQuery({ q: draft }); }}>
      <textarea aria-label="Search runs (CEL)" rows=${Math.min(4, Math.max(1, draft.split("\n").length))}
        placeholder='Search with CEL, e.g. event.data.userId == "u_123" && output.ok == true'
        value=${draft} onInput=${(e) => setDraft(e.target.value)}
        onKeyDown=${(e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); setQuery({ q: draft }); } }}></textarea>
      <button class="btn" type="submit">Search</button>
      ${q && html`<button class="btn ghost" type="button" onClick=${() => setQuery({ q: "" })}>Clear</button>`}
    </form>
    <p class="muted small">Fields: <code>event.id</code>, <code>event.name</code>, <code>event.ts</code>,
      <code>event.data</code>, <code>output</code>; a new line means <code>&&</code>.</p>
    <${ErrorNote} error=${runs.error} />
    ${runs.data ? html`<${RunsTable} runs=${list} fresh=${fresh} />` : html`<div class="loading">Loading runs…</div>`}
    ${runs.data && lastPage.pageInfo.hasNextPage && html`<div class="more">
      <button class="btn" onClick=${loadMore}>${q ? "Search further back" : "Load more"}</button></div>`}
  </section>`;
}

// -------------------------------------------------------------------------------- run page

const SPAN = `spanID name status attempts duration outputID queuedAt startedAt endedAt stepOp stepID isRoot
  stepInfo { __typename ... on SleepStepInfo { sleepUntil }
    ... on WaitForEventStepInfo { eventName expression timeout timedOut }
    ... on InvokeStepInfo { functionID timeout timedOut } }`;

const RUN = `query Run($id: String!) {
  run(runID: $id) { id status queuedAt startedAt endedAt eventName cronSchedule output triggerIDs
    function { id name slug } app { id name }
    trace { ${SPAN} childrenSpans { ${SPAN} childrenSpans { ${SPAN} } } } }
  runTrigger(runID: $id) { eventName IDs payloads timestamp isBatch cron } }`;

const OUTPUT = `query Output($id: String!) { runTraceSpanOutputByID(outputID: $id) { data error { name message stack } } }`;

function SpanDetail({ span }) {
  // The run's own output (or error) has its panel below the timeline: shown once, there.
  const outputID = span.isRoot ? null : span.outputID;
  const out = useData(async () => (outputID ? (await gql(OUTPUT, { id: outputID })).runTraceSpanOutputByID : null),
    [outputID, span.status]);
  const started = ms(span.startedAt);
  const ended = ms(span.endedAt);
  return html`<div class="panel span-detail">
    <div class="panel-head"><h3>${span.isRoot ? "Run" : span.name}</h3><${Status} status=${span.status} /></div>
    <dl class="facts">
      <dt>Queued</dt><dd>${fmtTime(span.queuedAt)}</dd>
      <dt>Started</dt><dd>${fmtTime(span.startedAt)}</dd>
      <dt>Ended</dt><dd>${fmtTime(span.endedAt)}</dd>
      <dt>Duration</dt><dd>${started && ended ? fmtDuration(ended - started) : "–"}</dd>
      ${span.attempts ? html`<dt>Attempts</dt><dd>${span.attempts}</dd>` : null}
      ${span.stepID && html`<dt>Step ID</dt><dd class="mono small">${span.stepID}</dd>`}
    </dl>
    ${out.data && out.data.error && html`<div class="error-box"><b>${out.data.error.name || "Error"}</b>: ${out.data.error.message}
      ${out.data.error.stack && html`<pre>${out.data.error.stack}</pre>`}</div>`}
    ${out.data && out.data.data !== null && out.data.data !== undefined && html`<${Code} label="Output" value=${out.data.data} />`}
    ${span.isRoot ? html`<p class="muted small">The run's ${span.status === "FAILED" ? "error" : "output"} is below; click a step for its own.</p>`
      : !span.outputID && html`<p class="muted small">No output yet.</p>`}
  </div>`;
}

export function RunPage({ id }) {
  const [selected, setSelected] = useState(null);
  const [busy, setBusy] = useState(false);
  const data = useData(() => gql(RUN, { id }), [id], (msg) => msg.many || msg.runs.includes(id));
  const run = data.data && data.data.run;
  useEffect(() => setSelected(null), [id]);
  if (data.error && !run) return html`<section class="page"><${ErrorNote} error=${data.error} /></section>`;
  if (!data.data) return html`<section class="page"><div class="loading">Loading run…</div></section>`;
  if (!run) return html`<section class="page"><${Empty}>Run ${id} not found.<//></section>`;
  const trigger = data.data.runTrigger;
  const ended = ["COMPLETED", "FAILED", "CANCELLED", "SKIPPED"].includes(run.status);
  const act = async (what) => {
    setBusy(true);
    try {
      if (what === "cancel") {
        await gql(`mutation($id: ULID!) { cancelRun(runID: $id) { id status } }`, { id });
        toast("Run cancelled");
        data.reload();
      } else {
        const res = await gql(`mutation($id: ULID!) { rerun(runID: $id) }`, { id });
        toast("Rerun started");
        navigate(`/runs/${res.rerun}`);
      }
    } catch (e) {
      toast(e.message, "bad");
    } finally {
      setBusy(false);
    }
  };
  const current = selected ? findSpan(run.trace, selected.spanID) || run.trace : run.trace;
  let output = null;
  try {
    output = run.output ? JSON.parse(run.output) : null;
  } catch {
    output = run.output;
  }
  return html`<section class="page run-page">
    <header class="page-head">
      <div><div class="crumbs"><a href="/runs">Runs</a> / <span class="mono">${run.id}</span></div>
        <h1>${run.function ? html`<a href="/functions/${encodeURIComponent(run.function.slug)}">${run.function.name}</a>` : "Run"}
          <${Status} status=${run.status} /></h1></div>
      <div class="actions">
        <button class="btn" disabled=${busy} onClick=${() => act("rerun")}>↻ Rerun</button>
        ${!ended && html`<button class="btn danger" disabled=${busy} onClick=${() => act("cancel")}>Cancel run</button>`}
      </div>
    </header>
    <div class="summary">
      <div><span>App</span><b>${run.app ? run.app.name : "–"}</b></div>
      <div><span>Trigger</span><b class="mono small">${run.cronSchedule ? `cron ${run.cronSchedule}` : run.eventName || "–"}</b></div>
      <div><span>Queued</span><b>${fmtTime(run.queuedAt)}</b></div>
      <div><span>Started</span><b>${fmtTime(run.startedAt)}</b></div>
      <div><span>Ended</span><b>${fmtTime(run.endedAt)}</b></div>
      <div><span>Duration</span><b>${run.startedAt ? fmtDuration((ms(run.endedAt) ?? Date.now()) - ms(run.startedAt)) : "–"}</b></div>
    </div>
    <div class="run-grid">
      <div class="panel">
        <div class="panel-head"><h3>Timeline</h3><span class="muted small">drawn to scale · click a step for its output</span></div>
        <${Timeline} trace=${run.trace} selected=${current} onSelect=${setSelected} />
      </div>
      <${SpanDetail} span=${current} />
    </div>
    <div class="two">
      <div class="panel">
        <div class="panel-head"><h3>${run.status === "FAILED" ? "Error" : "Output"}</h3></div>
        ${run.status === "FAILED" && output && typeof output === "object"
          ? html`<div class="error-box"><b>${output.name || "Error"}</b>: ${output.message || output.error}
              ${output.stack && html`<pre>${output.stack}</pre>`}</div>`
          : ended ? html`<${Code} value=${run.output} />` : html`<p class="muted">The run has not finished yet.</p>`}
      </div>
      <div class="panel">
        <div class="panel-head"><h3>Triggering event${trigger.isBatch ? "s" : ""}</h3>
          ${trigger.IDs.length > 0 && html`<a class="small" href="/events/id/${trigger.IDs[0]}">open event →</a>`}</div>
        ${trigger.payloads.map((p) => html`<${Code} value=${p} />`)}
      </div>
    </div>
  </section>`;
}

function findSpan(span, id) {
  if (!span) return null;
  if (span.spanID === id) return span;
  for (const c of span.childrenSpans || []) {
    const f = findSpan(c, id);
    if (f) return f;
  }
  return null;
}
