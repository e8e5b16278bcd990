// Apps: what is synced, from where, with which SDK; add, edit, delete, resync.
import { useEffect, useState } from "preact/hooks";
import { ago, currentEnv, getJSON, gql } from "./api.js";
import { Empty, ErrorNote, Modal, Pill, html, toast, useData } from "./ui.js";

const APPS = `{ apps { id name sdkLanguage sdkVersion framework url error functionCount connected updatedAt appVersion
    lastSyncedAt syncedBy resyncIntervalSeconds
    functions { name slug } }
  appURLs { url source error appID syncedAt } }`;

// How often the server syncs the app again: the poll interval, longer while nothing changes.
function resyncText(a) {
  if (a.resyncIntervalSeconds == null) return "only on request";
  const s = Math.round(a.resyncIntervalSeconds);
  return s < 60 ? `every ${s} s (longer while nothing changes)` : `every ${Math.round(s / 60)} min while nothing changes`;
}

// Connect apps (docs/connect.md) have no URL: their workers dial the server and sync them.
const isConnect = (a) => a.url.startsWith("connect://");

// A connect app's live workers on this server process, refreshed every few seconds.
function Workers({ workers }) {
  if (!workers.length) return html`<p class="muted small" data-workers="0">No worker connected: steps wait for one.</p>`;
  return html`<table class="table small workers" data-workers=${workers.length}><thead><tr><th class="wide" title="instance id">Worker</th><th>SDK</th>
      <th title="max_worker_concurrency: steps it runs at once">Capacity</th><th title="steps in flight">Running</th><th title="last heartbeat">Seen</th></tr></thead>
    <tbody>${workers.map((w) => html`<tr data-instance=${w.instance_id}><td class="mono">${w.instance_id}${w.status === "DRAINING" ? html` <${Pill} kind="warn">draining<//>` : ""}</td>
      <td>${w.sdk_language} ${w.sdk_version}</td><td>${w.max_worker_concurrency ?? "unlimited"}</td>
      <td>${w.in_flight}</td><td>${ago(w.last_heartbeat_at)}</td></tr>`)}</tbody></table>`;
}

function UrlModal({ title, initial = "", action, onSubmit, onClose }) {
  const [url, setUrl] = useState(initial);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const go = async (e) => {
    e && e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onSubmit(url.trim());
      onClose();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Modal} title=${title} onClose=${onClose} footer=${html`<button class="btn" onClick=${onClose}>Cancel</button>
      <button class="btn primary" disabled=${busy || !/^https?:\/\//.test(url.trim())} onClick=${go}>${busy ? "Syncing…" : action}</button>`}>
    <form onSubmit=${go}><label class="field"><span>The app's serve URL</span>
      <input class="mono" value=${url} placeholder="http://localhost:3000/api/inngest" onInput=${(e) => setUrl(e.target.value)} autofocus /></label></form>
    <p class="muted small">The server sends the app a sync request; the app answers with its functions.</p>
    <${ErrorNote} error=${error} />
  <//>`;
}

export function AppsPage() {
  const [modal, setModal] = useState(null);
  const data = useData(() => gql(APPS), []);
  // the selected environment's workers (pyngest dev has one environment: any name will do)
  const conns = useData(() => getJSON(`/v0/connect/envs/${encodeURIComponent(currentEnv() || "Production")}/conns`), []);
  useEffect(() => {
    const timer = setInterval(() => conns.reload(), 5000);
    return () => clearInterval(timer);
  }, [conns.reload]);
  const workersOf = (a) => ((conns.data && conns.data.data) || []).filter((w) => w.app_ids.includes(a.id));
  const act = async (what, app) => {
    try {
      if (what === "sync") {
        const res = await gql(`mutation($id: String!) { syncApp(id: $id) { id error } }`, { id: app.id });
        toast(res.syncApp.error ? `Sync failed: ${res.syncApp.error}` : `${app.name} synced`, res.syncApp.error ? "bad" : "ok");
      } else if (what === "delete") {
        if (!confirm(`Remove ${app.name}? Its functions stop receiving events; their history stays.`)) return;
        await gql(`mutation($id: String!) { deleteApp(id: $id) }`, { id: app.id });
        toast(`${app.name} removed`);
      }
      data.reload();
    } catch (e) {
      toast(e.message, "bad");
    }
  };
  const add = async (url) => {
    await gql(`mutation($url: String!) { createApp(input: {url: $url}) { id name } }`, { url });
    toast("App synced");
    data.reload();
  };
  const edit = (app) => async (url) => {
    await gql(`mutation($id: String!, $url: String!) { updateApp(input: {id: $id, url: $url}) { id url } }`, { id: app.id, url });
    toast("URL updated");
    data.reload();
  };
  const unsynced = data.data ? data.data.appURLs.filter((u) => !u.appID || !data.data.apps.some((a) => a.id === u.appID)) : [];
  return html`<section class="page">
    <header class="page-head"><div><h1>Apps</h1><p class="muted">Apps serve your functions; the server syncs them by URL.</p></div>
      <button class="btn primary" onClick=${() => setModal({ kind: "add" })}>Sync new app</button></header>
    <${ErrorNote} error=${data.error} />
    ${data.data && data.data.apps.length === 0 && unsynced.length === 0 && html`<${Empty}>No apps yet. Add your app's serve URL with “Sync new app”.<//>`}
    <div class="app-grid">${data.data && data.data.apps.map((a) => html`<article class="panel app-card" data-app=${a.name}>
      <div class="panel-head"><h3>${a.name}</h3>${isConnect(a) && html`<${Pill}>Connect<//>`}${a.error ? html`<${Pill} kind="bad">Sync error<//>` : html`<${Pill} kind="ok">Synced<//>`}</div>
      <dl class="facts">
        ${isConnect(a) ? html`<dt>Workers</dt><dd>${workersOf(a).length} connected</dd>` : html`<dt>URL</dt><dd class="mono small">${a.url}</dd>`}
        <dt>SDK</dt><dd>${a.sdkLanguage} ${a.sdkVersion}${a.framework ? ` · ${a.framework}` : ""}</dd>
        ${a.appVersion && html`<dt>Version</dt><dd>${a.appVersion}</dd>`}
        <dt>Functions</dt><dd>${a.functionCount}</dd>
        <dt>Last sync</dt><dd>${ago(a.lastSyncedAt)}${a.syncedBy ? html`<span class="muted small"> · ${a.syncedBy}</span>` : ""}</dd>
        <dt>Re-sync</dt><dd>${isConnect(a) ? "by each worker as it connects" : resyncText(a)}</dd>
        <dt>Changed</dt><dd>${ago(a.updatedAt)}</dd>
      </dl>
      ${a.error && html`<div class="error-box small">${a.error}</div>`}
      ${isConnect(a) && html`<${Workers} workers=${workersOf(a)} />`}
      <div class="fn-list">${a.functions.map((f) => html`<a class="pill" href="/functions/${encodeURIComponent(f.slug)}">${f.name}</a>`)}</div>
      <div class="card-actions">
        ${!isConnect(a) && html`<button class="btn small" onClick=${() => act("sync", a)}>↻ Resync</button>
        <button class="btn small" onClick=${() => setModal({ kind: "edit", app: a })}>Edit URL</button>`}
        <button class="btn small danger" onClick=${() => act("delete", a)}>Delete</button>
      </div></article>`)}</div>
    ${unsynced.length > 0 && html`<h2 class="section">URLs not synced</h2>
      <table class="table"><thead><tr><th>URL</th><th>Added by</th><th>Error</th><th></th></tr></thead>
        <tbody>${unsynced.map((u) => html`<tr><td class="mono small">${u.url}</td><td>${u.source}</td>
          <td class="bad-text small">${u.error || "not synced yet"}</td>
          <td class="right"><button class="btn small" onClick=${() => add(u.url).catch((e) => toast(e.message, "bad"))}>Retry</button></td></tr>`)}</tbody></table>`}
    ${modal && modal.kind === "add" && html`<${UrlModal} title="Sync new app" action="Sync app" onSubmit=${add}
      onClose=${() => { setModal(null); data.reload(); }} />`}
    ${modal && modal.kind === "edit" && html`<${UrlModal} title="Edit ${modal.app.name}" action="Save and sync" initial=${modal.app.url}
      onSubmit=${edit(modal.app)} onClose=${() => setModal(null)} />`}
  </section>`;
}
