// Talking to the server: GraphQL, the live stream, and formatting helpers shared by pages.

export class ApiError extends Error {}

// The environment the dashboard shows (start mode): its id, kept per browser; none is the default one.
const ENV_KEY = "pyngest.env";

export function currentEnv() {
  return document.body.dataset.mode === "start" ? localStorage.getItem(ENV_KEY) || "" : "";
}

export function switchEnv(id) {
  if (id) localStorage.setItem(ENV_KEY, id);
  else localStorage.removeItem(ENV_KEY);
}

export async function gql(query, variables = {}) {
  const env = currentEnv();
  const resp = await fetch("/v0/gql", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(env ? { "x-inngest-env": env } : {}) },
    credentials: "same-origin",
    body: JSON.stringify({ query, variables }),
  });
  if (resp.status === 401) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new ApiError("signed out");
  }
  const body = await resp.json();
  if (resp.status === 404 && currentEnv()) {
    switchEnv("");  // the environment this browser remembered is gone: back to the default one
    throw new ApiError(body.errors ? body.errors.map((e) => e.message).join("; ") : "environment not found");
  }
  if (body.errors && body.errors.length) throw new ApiError(body.errors.map((e) => e.message).join("; "));
  return body.data;
}

// A JSON GET of the server's REST API (the dashboard's session cookie authenticates it).
export async function getJSON(path) {
  const resp = await fetch(path, { credentials: "same-origin" });
  if (resp.status === 401) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new ApiError("signed out");
  }
  if (!resp.ok) throw new ApiError(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

// One EventSource for the whole page; components subscribe to its messages.
const listeners = new Set();
let source = null;
let connected = false;
const statusListeners = new Set();

function setConnected(value) {
  connected = value;
  statusListeners.forEach((fn) => fn(value));
}

function ensureSource() {
  if (source) return;
  // the selected environment's changes only (an EventSource sends no headers: a query parameter)
  const env = currentEnv();
  source = new EventSource(env ? `/v0/live?x-inngest-env=${encodeURIComponent(env)}` : "/v0/live");
  source.addEventListener("hello", () => setConnected(true));
  source.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    listeners.forEach((fn) => fn(msg));
  };
  source.onerror = () => setConnected(false);
}

export function onLive(fn) {
  ensureSource();
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function onLiveStatus(fn) {
  ensureSource();
  statusListeners.add(fn);
  fn(connected);
  return () => statusListeners.delete(fn);
}

// ------------------------------------------------------------------------------ time & format

export const RANGES = [
  ["15m", 15 * 60e3], ["1h", 3600e3], ["6h", 6 * 3600e3], ["24h", 24 * 3600e3],
  ["3d", 3 * 86400e3], ["7d", 7 * 86400e3], ["30d", 30 * 86400e3],
];

export function rangeMs(key) {
  const found = RANGES.find(([k]) => k === key);
  return found ? found[1] : 24 * 3600e3;
}

export function sinceIso(key) {
  return new Date(Date.now() - rangeMs(key)).toISOString();
}

export function fmtTime(value) {
  if (!value) return "–";
  const d = new Date(value);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return sameDay ? time : `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60e3) return `${(ms / 1000).toFixed(ms < 10e3 ? 2 : 1)} s`;
  if (ms < 3600e3) return `${Math.floor(ms / 60e3)} m ${Math.round((ms % 60e3) / 1000)} s`;
  if (ms < 86400e3) return `${Math.floor(ms / 3600e3)} h ${Math.round((ms % 3600e3) / 60e3)} m`;
  return `${Math.floor(ms / 86400e3)} d ${Math.round((ms % 86400e3) / 3600e3)} h`;
}

export function ago(value) {
  if (!value) return "never";
  const s = (Date.now() - new Date(value).getTime()) / 1000;
  if (s < 5) return "just now";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function fmtCount(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

export function pretty(raw) {
  if (raw === null || raw === undefined) return "";
  try {
    return JSON.stringify(typeof raw === "string" ? JSON.parse(raw) : raw, null, 2);
  } catch {
    return String(raw);
  }
}

export function ms(value) {
  return value ? new Date(value).getTime() : null;
}
