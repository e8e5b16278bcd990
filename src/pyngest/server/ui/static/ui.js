// Shared building blocks: routing, data loading, badges, modals, toasts, JSON editing.
import { h } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";
import { RANGES, onLive, pretty } from "./api.js";

export const html = htm.bind(h);

// ------------------------------------------------------------------------------------ routing

const routeListeners = new Set();

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  routeListeners.forEach((fn) => fn());
  window.scrollTo(0, 0);
}

export function useLocation() {
  const [loc, setLoc] = useState(location.pathname + location.search);
  useEffect(() => {
    const update = () => setLoc(location.pathname + location.search);
    routeListeners.add(update);
    window.addEventListener("popstate", update);
    return () => {
      routeListeners.delete(update);
      window.removeEventListener("popstate", update);
    };
  }, []);
  return loc;
}

export function queryParam(name, fallback = "") {
  return new URLSearchParams(location.search).get(name) ?? fallback;
}

export function setQuery(params) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(params)) {
    if (v === "" || v === null || v === undefined || (Array.isArray(v) && !v.length)) q.delete(k);
    else q.set(k, Array.isArray(v) ? v.join(",") : v);
  }
  const s = q.toString();
  navigate(location.pathname + (s ? `?${s}` : ""), { replace: true });
}

// Internal links navigate without a page load.
document.addEventListener("click", (ev) => {
  const a = ev.target.closest && ev.target.closest("a[href]");
  if (!a || a.target || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.button !== 0) return;
  const href = a.getAttribute("href");
  if (!href.startsWith("/") || href.startsWith("//") || href.startsWith("/static/")) return;
  ev.preventDefault();
  navigate(href);
});

// --------------------------------------------------------------------------------- data

// Load with `fn`, reload when `deps` change, and optionally when the live stream says
// something relevant (`liveFilter(msg)` returns true). Reloads are coalesced.
export function useData(fn, deps, liveFilter = null) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const latest = useRef(0);
  const timer = useRef(null);
  const pending = useRef(false);
  const load = useCallback(async () => {
    const n = ++latest.current;
    try {
      const data = await fn();
      if (n === latest.current) setState({ data, error: null, loading: false });
    } catch (err) {
      if (n === latest.current) setState((s) => ({ data: s.data, error: err.message, loading: false }));
    }
  }, deps);
  useEffect(() => {
    setState((s) => ({ ...s, loading: true }));
    load();
  }, [load]);
  useEffect(() => {
    if (!liveFilter) return undefined;
    // The first change that concerns the page is re-read at once; changes arriving within the
    // next 150 ms are gathered into one more read at its end (a busy server pushes every 100 ms).
    const settle = () => {
      if (pending.current) {
        pending.current = false;
        load();
        timer.current = setTimeout(settle, 150);
      } else {
        timer.current = null;
      }
    };
    const off = onLive((msg) => {
      if (!liveFilter(msg)) return;
      if (timer.current) {
        pending.current = true;
        return;
      }
      load();
      timer.current = setTimeout(settle, 150);
    });
    return () => {
      off();
      clearTimeout(timer.current);
      timer.current = null;
      pending.current = false;
    };
  }, [load]);
  return { ...state, reload: load };
}

// ------------------------------------------------------------------------------- toasts

const toastListeners = new Set();
export function toast(message, kind = "ok") {
  toastListeners.forEach((fn) => fn({ message, kind, id: Math.random() }));
}

export function Toasts() {
  const [items, setItems] = useState([]);
  useEffect(() => {
    const add = (t) => {
      setItems((xs) => [...xs, t]);
      setTimeout(() => setItems((xs) => xs.filter((x) => x.id !== t.id)), 4000);
    };
    toastListeners.add(add);
    return () => toastListeners.delete(add);
  }, []);
  return html`<div class="toasts">${items.map((t) => html`<div class="toast ${t.kind}" role="status">${t.message}</div>`)}</div>`;
}

// ----------------------------------------------------------------------------- elements

const STATUS_CLASS = {
  COMPLETED: "ok", FAILED: "bad", CANCELLED: "muted", RUNNING: "run", QUEUED: "wait",
  SKIPPED: "muted", WAITING: "wait",
};

export function Status({ status }) {
  const s = (status || "").toUpperCase();
  return html`<span class="status ${STATUS_CLASS[s] || ""}" data-status=${s}>
    <i></i>${s ? s[0] + s.slice(1).toLowerCase() : "–"}</span>`;
}

export function RangeSelect({ value, onChange, label = "Time range" }) {
  return html`<label class="field inline"><span>${label}</span>
    <select value=${value} onChange=${(e) => onChange(e.target.value)} aria-label=${label}>
      ${RANGES.map(([k]) => html`<option value=${k}>Last ${k}</option>`)}
    </select></label>`;
}

export function Code({ value, label }) {
  const text = pretty(value);
  return html`<div class="code">
    ${label && html`<div class="code-head"><span>${label}</span>
      <button class="btn tiny ghost" onClick=${() => navigator.clipboard && navigator.clipboard.writeText(text)}>Copy</button></div>`}
    <pre>${text || "null"}</pre></div>`;
}

export function Empty({ children }) {
  return html`<div class="empty">${children}</div>`;
}

export function ErrorNote({ error }) {
  return error ? html`<div class="error-note" role="alert">${error}</div>` : null;
}

export function Modal({ title, onClose, children, footer, wide = false }) {
  useEffect(() => {
    const onKey = (e) => e.key === "Escape" && onClose();
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [onClose]);
  return html`<div class="overlay" onMouseDown=${(e) => e.target === e.currentTarget && onClose()}>
    <div class="modal ${wide ? "wide" : ""}" role="dialog" aria-modal="true" aria-label=${title}>
      <div class="modal-head"><h2>${title}</h2>
        <button class="btn ghost tiny" aria-label="Close" onClick=${onClose}>✕</button></div>
      <div class="modal-body">${children}</div>
      ${footer && html`<div class="modal-foot">${footer}</div>`}
    </div></div>`;
}

// A JSON editor (a textarea that checks the JSON as you type) in a modal with one action.
export function JsonModal({ title, initial, action, onSubmit, onClose, hint }) {
  const [text, setText] = useState(initial);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  let parsed = null;
  let invalid = null;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    invalid = e.message;
  }
  const submit = async () => {
    setBusy(true);
    setError(null);
    try {
      await onSubmit(parsed);
      onClose();
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };
  const footer = html`<button class="btn" onClick=${onClose}>Cancel</button>
    <button class="btn primary" disabled=${!!invalid || busy} onClick=${submit}>${busy ? "Working…" : action}</button>`;
  return html`<${Modal} title=${title} onClose=${onClose} footer=${footer} wide>
    ${hint && html`<p class="muted">${hint}</p>`}
    <textarea class="json-edit ${invalid ? "invalid" : ""}" spellcheck="false" aria-label="JSON payload"
      value=${text} onInput=${(e) => setText(e.target.value)} rows="14"></textarea>
    <div class="json-state">${invalid ? html`<span class="bad-text">Invalid JSON: ${invalid}</span>` : html`<span class="ok-text">Valid JSON</span>`}</div>
    <${ErrorNote} error=${error} />
  <//>`;
}

export function Tabs({ tabs, value, onChange }) {
  return html`<div class="tabs" role="tablist">${tabs.map(([key, label]) => html`
    <button role="tab" aria-selected=${value === key} class=${value === key ? "active" : ""}
      onClick=${() => onChange(key)}>${label}</button>`)}</div>`;
}

export function Pill({ children, kind = "" }) {
  return html`<span class="pill ${kind}">${children}</span>`;
}
