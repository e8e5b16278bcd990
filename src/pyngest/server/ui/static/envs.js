// Environments and their keys (start mode): the switcher in the top bar, the environments page
// (list, create, archive, a branch's auto-archive toggle) and the keys page (event keys with filters, signing-key rotation).
import { useEffect, useState } from "preact/hooks";
import { ago, currentEnv, fmtTime, gql, switchEnv } from "./api.js";
import { Empty, ErrorNote, Modal, Pill, html, navigate, toast, useData } from "./ui.js";

const ENVS = `{ environments { id name type parentID archived createdAt autoArchive autoArchiveAt deployedAt } }`;

function envLabel(e) {
  return e.type === "branch" ? `${e.name} (branch)` : e.name;
}

// Pages that change environments tell the switcher to read them again.
function envsChanged() {
  window.dispatchEvent(new Event("pyngest:envs"));
}

export function EnvSwitcher() {
  const data = useData(() => gql(ENVS), []);
  useEffect(() => {
    const again = () => data.reload();
    window.addEventListener("pyngest:envs", again);
    return () => window.removeEventListener("pyngest:envs", again);
  }, [data.reload]);
  const envs = data.data ? data.data.environments : [];
  const selected = currentEnv() || (envs.find((e) => e.type === "production") || {}).id || "";
  const change = (value) => {
    if (value === "__all") {
      navigate("/environments");
      return;
    }
    const prod = envs.find((e) => e.type === "production");
    switchEnv(prod && value === prod.id ? "" : value);
    location.reload();  // every page reads the new environment from the start
  };
  return html`<label class="env-switch"><span class="muted small">Environment</span>
    <select aria-label="Environment" value=${selected} onChange=${(e) => change(e.target.value)}>
      ${envs.map((e) => html`<option value=${e.id}>${envLabel(e)}${e.archived ? " · archived" : ""}</option>`)}
      <option value="__all">View all environments…</option>
    </select></label>`;
}

function Secret({ label, value }) {
  const copy = () => navigator.clipboard && navigator.clipboard.writeText(value).then(() => toast("Copied"));
  return html`<div class="secret"><p class="muted small">${label}</p>
    <code class="mono secret-value" data-secret>${value}</code>
    <button class="btn small" onClick=${copy}>Copy</button></div>`;
}

function CreateEnvModal({ onClose, onCreated }) {
  const [name, setName] = useState("");
  const [created, setCreated] = useState(null);
  const [error, setError] = useState(null);
  const go = async (e) => {
    e && e.preventDefault();
    setError(null);
    try {
      const res = await gql(`mutation($name: String!) { createEnvironment(name: $name) {
        environment { id name } signingKey } }`, { name: name.trim() });
      setCreated(res.createEnvironment);
      onCreated();
    } catch (err) {
      setError(err.message);
    }
  };
  const footer = created
    ? html`<button class="btn primary" onClick=${onClose}>Done</button>`
    : html`<button class="btn" onClick=${onClose}>Cancel</button>
      <button class="btn primary" disabled=${!name.trim()} onClick=${go}>Create environment</button>`;
  return html`<${Modal} title="Create environment" onClose=${onClose} footer=${footer}>
    ${created ? html`<p>${created.environment.name} is ready. Sync its apps with this signing key (shown once here;
        the keys page shows it again):</p><${Secret} label="Signing key" value=${created.signingKey} />`
      : html`<form onSubmit=${go}><label class="field"><span>Name</span>
        <input value=${name} placeholder="staging" onInput=${(e) => setName(e.target.value)} autofocus /></label></form>
        <p class="muted small">A custom environment has its own keys, apps, events and runs. Branch environments
        are created when an app syncs or an event is sent with <code>x-inngest-env</code>.</p>`}
    <${ErrorNote} error=${error} />
  <//>`;
}

export function EnvironmentsPage() {
  const [creating, setCreating] = useState(false);
  const data = useData(() => gql(ENVS), []);
  const archive = async (e) => {
    try {
      await gql(`mutation($id: ID!, $a: Boolean!) { archiveEnvironment(id: $id, archived: $a) { id } }`,
        { id: e.id, a: !e.archived });
      toast(`${e.name} ${e.archived ? "unarchived" : "archived"}`);
      data.reload();
      envsChanged();
    } catch (err) {
      toast(err.message, "bad");
    }
  };
  const setAuto = async (e, enabled) => {
    try {
      await gql(`mutation($id: ID!, $on: Boolean!) { setEnvironmentAutoArchive(id: $id, enabled: $on) { id } }`,
        { id: e.id, on: enabled });
      toast(`${e.name}: auto-archive ${enabled ? "on" : "off"}`);
      data.reload();
    } catch (err) {
      toast(err.message, "bad");
    }
  };
  // a branch is archived 3 days after its latest deploy unless the toggle is off
  const autoCell = (e) => e.type !== "branch" ? "–" : html`<label class="switch"
      title=${e.autoArchiveAt ? `archived ${fmtTime(e.autoArchiveAt)} unless deployed again` : ""}>
    <input type="checkbox" class="auto-archive" checked=${e.autoArchive}
      onChange=${(ev) => setAuto(e, ev.target.checked)} />
    <span>${e.autoArchive ? (e.autoArchiveAt ? `on · ${fmtTime(e.autoArchiveAt)}` : "on") : "off"}</span></label>`;
  const open = (e) => {
    switchEnv(e.type === "production" ? "" : e.id);
    location.href = "/runs";
  };
  const envs = data.data ? data.data.environments : [];
  const name = (id) => (envs.find((e) => e.id === id) || {}).name || "";
  return html`<section class="page">
    <header class="page-head"><div><h1>Environments</h1><p class="muted">Each environment's apps, functions, events
      and runs are its own. Branches share their parent's keys.</p></div>
      <button class="btn primary" onClick=${() => setCreating(true)}>Create environment</button></header>
    <${ErrorNote} error=${data.error} />
    ${data.data && envs.length === 0 && html`<${Empty}>No environments.<//>`}
    <table class="table envs"><thead><tr><th>Name</th><th>Type</th><th>Parent</th><th>Created</th><th>Last deploy</th><th>Auto-archive</th><th>Status</th><th></th></tr></thead>
      <tbody>${envs.map((e) => html`<tr data-env=${e.name}>
        <td><a href="/runs" onClick=${(ev) => { ev.preventDefault(); open(e); }}>${e.name}</a></td>
        <td>${e.type}</td><td>${e.parentID ? name(e.parentID) : "–"}</td><td>${ago(e.createdAt)}</td>
        <td>${e.deployedAt ? ago(e.deployedAt) : "–"}</td><td>${autoCell(e)}</td>
        <td>${e.archived ? html`<${Pill} kind="bad">Archived<//>` : html`<${Pill} kind="ok">Active<//>`}</td>
        <td class="right">${e.type !== "production" && html`<button class="btn small" onClick=${() => archive(e)}>
          ${e.archived ? "Unarchive" : "Archive"}</button>`}</td></tr>`)}</tbody></table>
    ${creating && html`<${CreateEnvModal} onClose=${() => setCreating(false)}
      onCreated=${() => { data.reload(); envsChanged(); }} />`}
  </section>`;
}

const KEYS = `{ eventKeys { id name hint filter createdAt } signingKeys { id state key createdAt } }`;

function lines(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

// The filter as a form: allow or deny event names, allow or deny address ranges.
function filterFrom(form) {
  const out = {};
  if (form.events.mode !== "none") out.events = { mode: form.events.mode, names: lines(form.events.text) };
  if (form.ips.mode !== "none") out.ips = { mode: form.ips.mode, ranges: lines(form.ips.text) };
  return Object.keys(out).length ? out : null;
}

function formFrom(filter) {
  const f = filter || {};
  return {
    events: { mode: f.events ? f.events.mode : "none", text: f.events ? f.events.names.join("\n") : "" },
    ips: { mode: f.ips ? f.ips.mode : "none", text: f.ips ? f.ips.ranges.join("\n") : "" },
  };
}

function FilterPart({ label, part, placeholder, value, onChange }) {
  const v = value[part];
  const set = (patch) => onChange({ ...value, [part]: { ...v, ...patch } });
  return html`<fieldset class="filter-part"><legend>${label}</legend>
    <select aria-label="${label} filter" value=${v.mode} onChange=${(e) => set({ mode: e.target.value })}>
      <option value="none">Any</option><option value="allow">Allow only</option><option value="deny">Deny</option></select>
    ${v.mode !== "none" && html`<textarea aria-label="${label} list" rows="3" class="mono" placeholder=${placeholder}
      value=${v.text} onInput=${(e) => set({ text: e.target.value })}></textarea>`}</fieldset>`;
}

function EventKeyModal({ initial, onClose, onSaved }) {
  const [name, setName] = useState(initial ? initial.name : "");
  const [form, setForm] = useState(formFrom(initial && initial.filter));
  const [created, setCreated] = useState(null);
  const [error, setError] = useState(null);
  const save = async () => {
    setError(null);
    const filter = filterFrom(form);
    try {
      if (initial) {
        await gql(`mutation($id: ID!, $name: String, $filter: Map, $clear: Boolean) {
          updateEventKey(id: $id, name: $name, filter: $filter, clearFilter: $clear) { id } }`,
          { id: initial.id, name: name.trim(), filter, clear: filter === null });
        toast("Event key saved");
        onSaved();
        onClose();
      } else {
        const res = await gql(`mutation($name: String!, $filter: Map) { createEventKey(name: $name, filter: $filter) {
          id key } }`, { name: name.trim(), filter });
        setCreated(res.createEventKey.key);
        onSaved();
      }
    } catch (err) {
      setError(err.message);
    }
  };
  const footer = created
    ? html`<button class="btn primary" onClick=${onClose}>Done</button>`
    : html`<button class="btn" onClick=${onClose}>Cancel</button>
      <button class="btn primary" disabled=${!name.trim()} onClick=${save}>${initial ? "Save changes" : "Create event key"}</button>`;
  return html`<${Modal} title=${initial ? `Event key ${initial.name}` : "Create event key"} onClose=${onClose} footer=${footer}>
    ${created ? html`<${Secret} label="Copy the key now: it is shown this once (only its hash is kept)." value=${created} />`
      : html`<label class="field"><span>Name</span><input value=${name} onInput=${(e) => setName(e.target.value)}
          placeholder="web app" autofocus /></label>
        <${FilterPart} label="Event names" part="events" placeholder="billing/*\nuser.signup" value=${form} onChange=${setForm} />
        <${FilterPart} label="Source IPs" part="ips" placeholder="203.0.113.0/24" value=${form} onChange=${setForm} />
        <p class="muted small">A name ending in * is a prefix. A refused event is answered 403 and not stored.</p>`}
    <${ErrorNote} error=${error} />
  <//>`;
}

function filterText(f) {
  if (!f) return "none";
  const parts = [];
  if (f.events) parts.push(`${f.events.mode} ${f.events.names.join(", ")}`);
  if (f.ips) parts.push(`${f.ips.mode} ${f.ips.ranges.join(", ")}`);
  return parts.join("; ");
}

export function KeysPage() {
  const [modal, setModal] = useState(null);
  const [shown, setShown] = useState(null);
  const data = useData(() => gql(KEYS), []);
  const run = async (query, variables, done) => {
    try {
      const res = await gql(query, variables);
      if (done) done(res);
      data.reload();
    } catch (err) {
      toast(err.message, "bad");
    }
  };
  const rotateEventKey = (k) => confirm(`Rotate ${k.name}? Its current key stops working at once.`)
    && run(`mutation($id: ID!) { rotateEventKey(id: $id) { key } }`, { id: k.id },
      (res) => setShown({ title: `New key for ${k.name}`, value: res.rotateEventKey.key }));
  const deleteEventKey = (k) => confirm(`Delete ${k.name}? Events sent with it will be refused.`)
    && run(`mutation($id: ID!) { deleteEventKey(id: $id) }`, { id: k.id }, () => toast(`${k.name} deleted`));
  const signing = data.data ? data.data.signingKeys : [];
  const hasNext = signing.some((k) => k.state === "next");
  return html`<section class="page">
    <header class="page-head"><div><h1>Keys</h1><p class="muted">Event keys send events to this environment;
      the signing key signs requests to its apps and authenticates them.</p></div></header>
    <${ErrorNote} error=${data.error} />
    <div class="panel"><div class="panel-head"><h3>Event keys</h3>
      <button class="btn primary small" onClick=${() => setModal({ kind: "event" })}>+ Create event key</button></div>
      ${data.data && data.data.eventKeys.length === 0 && html`<${Empty}>No event keys.<//>`}
      <table class="table event-keys"><thead><tr><th>Name</th><th>Key</th><th>Filter</th><th>Created</th><th></th></tr></thead>
        <tbody>${data.data && data.data.eventKeys.map((k) => html`<tr data-key=${k.name}>
          <td>${k.name}</td><td class="mono small">${k.hint}</td><td class="small">${filterText(k.filter)}</td>
          <td>${ago(k.createdAt)}</td><td class="right">
            <button class="btn small" onClick=${() => setModal({ kind: "event", key: k })}>Edit</button>
            <button class="btn small" onClick=${() => rotateEventKey(k)}>Rotate</button>
            <button class="btn small danger" onClick=${() => deleteEventKey(k)}>Delete</button></td></tr>`)}</tbody></table></div>
    <div class="panel"><div class="panel-head"><h3>Signing keys</h3>
      <button class="btn small" disabled=${hasNext} onClick=${() => run(`mutation { createSigningKey { state } }`, {},
        () => toast("New signing key created: add it to your apps as INNGEST_SIGNING_KEY_FALLBACK, then rotate"))}>
        Create new signing key</button></div>
      <table class="table signing-keys"><thead><tr><th>State</th><th>Key</th><th>Created</th><th></th></tr></thead>
        <tbody>${signing.map((k) => html`<tr data-state=${k.state}>
          <td><${Pill} kind=${k.state === "active" ? "ok" : ""}>${k.state}<//></td>
          <td class="mono small"><details><summary>…${k.key.slice(-6)}</summary><code data-secret>${k.key}</code></details></td>
          <td>${ago(k.createdAt)}</td><td class="right">
            ${k.state === "next" && html`<button class="btn small primary" onClick=${() => run(`mutation { rotateSigningKey { id } }`,
              {}, () => toast("Requests are now signed with the new key; the old one stays accepted until you delete it"))}>Rotate key</button>`}
            ${k.state !== "active" && html`<button class="btn small danger" onClick=${() => confirm("Delete this signing key? Apps using it are refused.")
              && run(`mutation($id: ID!) { deleteSigningKey(id: $id) }`, { id: k.id }, () => toast("Signing key deleted"))}>Delete</button>`}
          </td></tr>`)}</tbody></table>
      <p class="muted small">Rotation: create a new key and give it to your apps as <code>INNGEST_SIGNING_KEY_FALLBACK</code>;
        rotate (requests are signed with it, the old key is still accepted); move your apps to the new key; delete the old one.</p></div>
    ${modal && modal.kind === "event" && html`<${EventKeyModal} initial=${modal.key} onClose=${() => setModal(null)}
      onSaved=${() => data.reload()} />`}
    ${shown && html`<${Modal} title=${shown.title} onClose=${() => setShown(null)}
      footer=${html`<button class="btn primary" onClick=${() => setShown(null)}>Done</button>`}>
      <${Secret} label="Copy the key now: it is shown this once." value=${shown.value} /><//>`}
  </section>`;
}
