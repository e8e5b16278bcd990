// Webhooks: URLs whose requests a JavaScript transform turns into events; create, edit the
// transform (tried on a sample payload first), delete, and replay the requests that failed.
import { useEffect, useState } from "preact/hooks";
import { ago, gql } from "./api.js";
import { Code, Empty, ErrorNote, Modal, Pill, html, toast, useData } from "./ui.js";

const LIST = `{ webhooks { id name key path environmentID transform createdAt updatedAt } defaultWebhookTransform }`;
const FAILURES = `query($id: ID!) { webhook(id: $id) { id failures(limit: 50) {
  id receivedAt error body query replayedAt eventIDs } } }`;
const SAMPLE = JSON.stringify({ example: "paste the incoming JSON payload here to test your transform" }, null, 2);

function urlOf(hook) {
  return `${location.origin}${hook.path}`;
}

function CreateModal({ onCreate, onClose }) {
  const [name, setName] = useState("");
  const [error, setError] = useState(null);
  const go = async (e) => {
    e && e.preventDefault();
    try {
      await onCreate(name.trim());
      onClose();
    } catch (err) {
      setError(err.message);
    }
  };
  return html`<${Modal} title="Create webhook" onClose=${onClose} footer=${html`<button class="btn" onClick=${onClose}>Cancel</button>
      <button class="btn primary" disabled=${!name.trim()} onClick=${go}>Create</button>`}>
    <form onSubmit=${go}><label class="field"><span>Name</span>
      <input value=${name} placeholder="Stripe" aria-label="Webhook name" onInput=${(e) => setName(e.target.value)} autofocus /></label></form>
    <p class="muted small">The webhook gets its own URL; give it to the service that sends the requests.</p>
    <${ErrorNote} error=${error} />
  <//>`;
}

// The transform editor beside the test panel: the sample is run by the server's own sandbox.
function Editor({ hook, fallback, onSaved }) {
  const [name, setName] = useState(hook.name);
  const [source, setSource] = useState(hook.transform || fallback);
  const [sample, setSample] = useState(SAMPLE);
  const [headers, setHeaders] = useState("{}");
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { setName(hook.name); setSource(hook.transform || fallback); setResult(null); }, [hook.id]);
  const test = async () => {
    setError(null);
    let parsedHeaders;
    try {
      parsedHeaders = JSON.parse(headers || "{}");
    } catch (e) {
      setResult({ error: `Headers are not JSON: ${e.message}`, events: [] });
      return;
    }
    try {
      const res = await gql(`mutation($t: String, $p: String!, $h: Map) {
        testWebhookTransform(transform: $t, payload: $p, headers: $h) { events error } }`, { t: source, p: sample, h: parsedHeaders });
      setResult(res.testWebhookTransform);
    } catch (e) {
      setError(e.message);
    }
  };
  const save = async () => {
    setError(null);
    try {
      await gql(`mutation($id: ID!, $i: WebhookInput!) { updateWebhook(id: $id, input: $i) { id } }`,
        { id: hook.id, i: { name: name.trim(), transform: source.trim() === fallback.trim() ? null : source } });
      toast("Webhook saved");
      onSaved();
    } catch (e) {
      setError(e.message);
    }
  };
  return html`<section class="panel webhook-editor" data-webhook-editor=${hook.id}>
    <div class="panel-head"><h3>Transform · ${hook.name}</h3>
      <button class="btn primary small" onClick=${save}>Save transform</button></div>
    <label class="field"><span>Name</span><input aria-label="Name" value=${name} onInput=${(e) => setName(e.target.value)} /></label>
    <label class="field"><span>Transform (JavaScript: function transform(evt, headers, queryParams, raw))</span>
      <textarea class="json-edit" spellcheck="false" aria-label="Transform" rows="12" value=${source}
        onInput=${(e) => setSource(e.target.value)}></textarea></label>
    <div class="two">
      <div><label class="field"><span>Incoming Event JSON</span>
        <textarea class="json-edit" spellcheck="false" aria-label="Incoming Event JSON" rows="8" value=${sample}
          onInput=${(e) => setSample(e.target.value)}></textarea></label>
        <label class="field"><span>Headers (JSON object)</span>
          <input class="mono" aria-label="Test headers" value=${headers} onInput=${(e) => setHeaders(e.target.value)} /></label>
        <button class="btn" onClick=${test}>Test transform</button></div>
      <div class="test-result">${result == null ? html`<p class="muted">Run the transform on the sample to see the events it makes.</p>`
        : result.error ? html`<div class="error-box" role="alert"><strong>The transform failed</strong><pre>${result.error}</pre></div>`
        : html`<${Code} label="Transformed event${result.events.length === 1 ? "" : "s"}" value=${result.events.length === 1 ? result.events[0] : result.events} />`}</div>
    </div>
    <${ErrorNote} error=${error} />
  </section>`;
}

function Failures({ hook }) {
  const data = useData(() => gql(FAILURES, { id: hook.id }), [hook.id, hook.updatedAt]);
  const replay = async (f) => {
    try {
      const res = await gql(`mutation($id: ID!) { replayWebhookFailure(id: $id) { ids error } }`, { id: f.id });
      const r = res.replayWebhookFailure;
      toast(r.error ? `Still failing: ${r.error}` : `Replayed: ${r.ids.length} event${r.ids.length === 1 ? "" : "s"}`, r.error ? "bad" : "ok");
      data.reload();
    } catch (e) {
      toast(e.message, "bad");
    }
  };
  const rows = data.data && data.data.webhook ? data.data.webhook.failures : [];
  return html`<section class="panel">
    <div class="panel-head"><h3>Failed requests</h3><span class="muted small">kept for inspection and replay</span></div>
    <${ErrorNote} error=${data.error} />
    ${rows.length === 0 ? html`<p class="muted">None: every request became events.</p>` : html`
    <table class="table"><thead><tr><th>Received</th><th>Error</th><th>Body</th><th></th></tr></thead>
      <tbody>${rows.map((f) => html`<tr data-failure=${f.id}><td>${ago(f.receivedAt)}</td>
        <td class="bad-text small">${f.error}</td><td class="mono small">${f.body.slice(0, 200)}</td>
        <td class="right">${f.replayedAt ? html`<${Pill} kind="ok">Replayed<//>`
          : html`<button class="btn small" onClick=${() => replay(f)}>Replay</button>`}</td></tr>`)}</tbody></table>`}
  </section>`;
}

export function WebhooksPage() {
  const [creating, setCreating] = useState(false);
  const [selected, setSelected] = useState(null);
  const data = useData(() => gql(LIST), []);
  const hooks = data.data ? data.data.webhooks : [];
  const current = hooks.find((h) => h.id === selected);
  const create = async (name) => {
    const res = await gql(`mutation($i: WebhookInput!) { createWebhook(input: $i) { id } }`, { i: { name } });
    toast("Webhook created");
    setSelected(res.createWebhook.id);
    data.reload();
  };
  const remove = async (hook) => {
    if (!confirm(`Delete ${hook.name}? Its URL stops taking requests.`)) return;
    try {
      await gql(`mutation($id: ID!) { deleteWebhook(id: $id) }`, { id: hook.id });
      toast(`${hook.name} deleted`);
      if (selected === hook.id) setSelected(null);
      data.reload();
    } catch (e) {
      toast(e.message, "bad");
    }
  };
  const copy = (hook) => {
    navigator.clipboard && navigator.clipboard.writeText(urlOf(hook));
    toast("URL copied");
  };
  return html`<section class="page">
    <header class="page-head"><div><h1>Webhooks</h1><p class="muted">URLs for other services to POST to; a transform turns each request into events.</p></div>
      <button class="btn primary" onClick=${() => setCreating(true)}>Create webhook</button></header>
    <${ErrorNote} error=${data.error} />
    ${hooks.some((h) => h.path.includes("x-inngest-env=")) && html`<p class="muted small" data-branch-note>
      A branch environment shares its parent's webhooks: the URLs below name this branch
      (<code>x-inngest-env</code>), so their events go to it.</p>`}
    ${data.data && hooks.length === 0 && html`<${Empty}>No webhooks yet. Create one to get a URL.<//>`}
    ${hooks.length > 0 && html`<table class="table"><thead><tr><th>Name</th><th>URL</th><th>Transform</th><th>Changed</th><th></th></tr></thead>
      <tbody>${hooks.map((h) => html`<tr data-webhook=${h.name} class=${h.id === selected ? "selected" : ""}>
        <td><button class="linkish" onClick=${() => setSelected(h.id)}>${h.name}</button></td>
        <td><input class="mono small webhook-url" readonly aria-label="URL of ${h.name}" value=${urlOf(h)} size="40" />
          <button class="btn tiny ghost" onClick=${() => copy(h)}>Copy</button></td>
        <td>${h.transform ? "custom" : html`<span class="muted">default</span>`}</td>
        <td>${ago(h.updatedAt)}</td>
        <td class="right"><button class="btn small" onClick=${() => setSelected(h.id)}>Edit</button>
          <button class="btn small danger" onClick=${() => remove(h)}>Delete</button></td></tr>`)}</tbody></table>`}
    ${current && html`<${Editor} hook=${current} fallback=${data.data.defaultWebhookTransform} onSaved=${data.reload} />
      <${Failures} hook=${current} />`}
    ${creating && html`<${CreateModal} onCreate=${create} onClose=${() => setCreating(false)} />`}
  </section>`;
}
