// Events: names with volume, a page per name with throughput, one event with its runs.
import { useState } from "preact/hooks";
import { ago, fmtCount, fmtTime, gql, sinceIso } from "./api.js";
import { Bars, COLORS, Meter } from "./charts.js";
import { Code, Empty, ErrorNote, JsonModal, RangeSelect, Status, html, navigate, queryParam, setQuery, toast, useData } from "./ui.js";

export async function sendEvents(payload) {
  const events = Array.isArray(payload) ? payload : [payload];
  const res = await gql(`mutation($e: [Map!]!) { sendEvents(events: $e) }`, { e: events });
  toast(`Sent ${events.length} event${events.length === 1 ? "" : "s"}`);
  return res.sendEvents;
}

export function SendEventModal({ onClose, initial }) {
  const example = initial || JSON.stringify({ name: "shop/order.created", data: { orderId: "ord_123", amount: 42 } }, null, 2);
  return html`<${JsonModal} title="Send event" action="Send event" initial=${example} onClose=${onClose}
    hint="Send any event (or a list of events) as an app would. Functions it triggers start right away."
    onSubmit=${async (p) => { const ids = await sendEvents(p); if (ids.length === 1) navigate(`/events/id/${ids[0]}`); }} />`;
}

const NAMES = `query Names($from: Time!, $internal: Boolean) {
  eventNames(from: $from, includeInternalEvents: $internal) { name volume lastReceivedAt functions { name slug } } }`;

const RECENT = `query Recent($from: Time!, $names: [String!], $first: Int!, $internal: Boolean!) {
  eventsV2(first: $first, filter: {from: $from, eventNames: $names, includeInternalEvents: $internal}) {
    edges { node { id name receivedAt source runs { id status function { name } }
      skippedFunctions { functionSlug reason } } } } }`;

function RecentEvents({ from, names, first = 25, internal = false }) {
  const data = useData(() => gql(RECENT, { from, names, first, internal }), [from, (names || []).join(), internal],
    (m) => m.events.length > 0 || m.runs.length > 0);
  if (!data.data) return html`<div class="loading">Loading…</div>`;
  const edges = data.data.eventsV2.edges;
  if (!edges.length) return html`<${Empty}>No events in this range.<//>`;
  return html`<table class="table"><thead><tr><th>Event</th><th>Received</th><th>Source</th><th>Runs</th></tr></thead>
    <tbody>${edges.map(({ node: e }) => html`<tr class="clickable" data-event=${e.id} onClick=${() => navigate(`/events/id/${e.id}`)}>
      <td><a href="/events/id/${e.id}" class="mono">${e.name}</a><div class="muted small mono">${e.id}</div></td>
      <td>${fmtTime(e.receivedAt)}</td><td class="muted small">${e.source || "–"}</td>
      <td>${e.runs.map((r) => html`<span class="run-chip"><${Status} status=${r.status} /> ${r.function ? r.function.name : ""}</span>`)}
        ${e.skippedFunctions.map((f) => html`<span class="run-chip" title=${SKIP_REASONS[f.reason] || f.reason}>
          <${Status} status="SKIPPED" /> ${f.functionSlug}</span>`)}
        ${!e.runs.length && !e.skippedFunctions.length && html`<span class="muted small">no functions</span>`}</td></tr>`)}</tbody></table>`;
}

export function EventsPage() {
  const range = queryParam("range", "24h");
  const internal = queryParam("internal") === "1";
  const [sending, setSending] = useState(false);
  const from = sinceIso(range);
  const data = useData(() => gql(NAMES, { from, internal }), [range, internal], (m) => m.events.length > 0);
  const max = data.data ? Math.max(1, ...data.data.eventNames.map((n) => n.volume)) : 1;
  return html`<section class="page">
    <header class="page-head"><div><h1>Events</h1><p class="muted">Event names with their volume and the functions they trigger.</p></div>
      <div class="actions"><label class="switch"><input type="checkbox" checked=${internal}
          onChange=${(e) => setQuery({ internal: e.target.checked ? "1" : "" })} /><span>Internal events</span></label>
        <${RangeSelect} value=${range} onChange=${(v) => setQuery({ range: v })} />
        <button class="btn primary" onClick=${() => setSending(true)}>Send event</button></div></header>
    <${ErrorNote} error=${data.error} />
    ${data.data && (data.data.eventNames.length === 0 ? html`<${Empty}>No events yet. Send one with the button above.<//>`
      : html`<table class="table"><thead><tr><th>Event name</th><th>Functions</th><th>Volume (${range})</th><th>Last received</th></tr></thead>
        <tbody>${data.data.eventNames.map((n) => html`<tr class="clickable" data-event-name=${n.name}
            onClick=${() => navigate(`/events/type/${encodeURIComponent(n.name)}`)}>
          <td><a class="mono" href="/events/type/${encodeURIComponent(n.name)}">${n.name}</a></td>
          <td>${n.functions.length ? n.functions.map((f) => html`<span class="pill">${f.name}</span>`) : html`<span class="muted small">none</span>`}</td>
          <td class="vol"><${Meter} value=${n.volume} max=${max} /> <b>${fmtCount(n.volume)}</b></td>
          <td>${ago(n.lastReceivedAt)}</td></tr>`)}</tbody></table>`)}
    <h2 class="section">Recent events</h2>
    <${RecentEvents} from=${from} internal=${internal} />
    ${sending && html`<${SendEventModal} onClose=${() => setSending(false)} />`}
  </section>`;
}

export function EventTypePage({ name }) {
  const range = queryParam("range", "24h");
  const [sending, setSending] = useState(false);
  const from = sinceIso(range);
  const data = useData(() => gql(`query($n: String!, $from: Time!) { eventThroughput(name: $n, from: $from, buckets: 48) { from bucketMS counts } }`,
    { n: name, from }), [name, range], (m) => m.events.includes(name));
  const t = data.data && data.data.eventThroughput;
  return html`<section class="page">
    <header class="page-head"><div><div class="crumbs"><a href="/events">Events</a> / type</div><h1 class="mono">${name}</h1></div>
      <div class="actions"><${RangeSelect} value=${range} onChange=${(v) => setQuery({ range: v })} />
        <button class="btn primary" onClick=${() => setSending(true)}>Send test event</button></div></header>
    <${ErrorNote} error=${data.error} />
    <div class="panel"><div class="panel-head"><h3>Throughput</h3></div>
      ${t ? html`<${Bars} label="Event throughput" from=${new Date(t.from).getTime()} bucketMs=${t.bucketMS}
        series=${[{ label: "Events", color: COLORS.events, values: t.counts }]} />` : html`<div class="loading">Loading…</div>`}</div>
    <h2 class="section">Occurrences</h2>
    <${RecentEvents} from=${from} names=${[name]} first=${50} internal=${true} />
    ${sending && html`<${SendEventModal} onClose=${() => setSending(false)}
      initial=${JSON.stringify({ name, data: {} }, null, 2)} />`}
  </section>`;
}

const SKIP_REASONS = {
  function_paused: "the function was paused",
  rate_limited: "over the function's rate limit",
  singleton: "a run for the same singleton key was in progress",
};

export function EventPage({ id }) {
  const [editing, setEditing] = useState(false);
  const data = useData(() => gql(`query($id: ULID!) { eventV2(id: $id) { id name raw receivedAt occurredAt source
      runs { id status queuedAt startedAt endedAt eventName cronSchedule function { id name slug } app { id name } }
      skippedFunctions { functionID functionSlug reason skippedAt } } }`, { id }),
  [id], (m) => m.runs.length > 0);
  if (data.error && !data.data) return html`<section class="page"><${ErrorNote} error=${data.error} /></section>`;
  if (!data.data) return html`<section class="page"><div class="loading">Loading…</div></section>`;
  const ev = data.data.eventV2;
  const raw = JSON.parse(ev.raw);
  const resendable = { name: raw.name, data: raw.data || {}, user: raw.user || {} };
  const again = async () => {
    try {
      const ids = await sendEvents(resendable);
      navigate(`/events/id/${ids[0]}`);
    } catch (e) {
      toast(e.message, "bad");
    }
  };
  return html`<section class="page">
    <header class="page-head"><div><div class="crumbs"><a href="/events">Events</a> /
        <a href="/events/type/${encodeURIComponent(ev.name)}" class="mono">${ev.name}</a></div>
      <h1 class="mono">${ev.id}</h1></div>
      <div class="actions"><button class="btn" onClick=${again}>↻ Send again</button>
        <button class="btn primary" onClick=${() => setEditing(true)}>Edit and send</button></div></header>
    <div class="summary">
      <div><span>Name</span><b class="mono small">${ev.name}</b></div>
      <div><span>Received</span><b>${fmtTime(ev.receivedAt)}</b></div>
      <div><span>Occurred (ts)</span><b>${fmtTime(ev.occurredAt)}</b></div>
      <div><span>Source</span><b class="mono small">${ev.source || "–"}</b></div>
    </div>
    <div class="two">
      <div class="panel"><div class="panel-head"><h3>Payload</h3></div><${Code} value=${ev.raw} /></div>
      <div class="panel"><div class="panel-head"><h3>Runs it triggered</h3></div>
        ${ev.runs.length ? ev.runs.map((r) => html`<a class="run-line" href="/runs/${r.id}" data-run=${r.id}>
            <${Status} status=${r.status} /> <b>${r.function ? r.function.name : "–"}</b>
            <span class="mono small muted">${r.id}</span></a>`)
          : !ev.skippedFunctions.length && html`<${Empty}>This event triggered no functions.<//>`}
        ${ev.skippedFunctions.map((s) => html`<div class="run-line" data-skipped=${s.functionID}>
            <${Status} status="SKIPPED" /> <b>${s.functionSlug || s.functionID}</b>
            <span class="small muted">${SKIP_REASONS[s.reason] || s.reason}</span></div>`)}</div>
    </div>
    ${editing && html`<${SendEventModal} onClose=${() => setEditing(false)} initial=${JSON.stringify(resendable, null, 2)} />`}
  </section>`;
}
