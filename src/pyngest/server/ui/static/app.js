// The dashboard's shell: navigation, the live indicator, and the router.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { onLiveStatus } from "./api.js";
import { Toasts, html, useLocation } from "./ui.js";
import { RunPage, RunsPage } from "./runs.js";
import { FunctionPage, FunctionsPage } from "./functions.js";
import { EventPage, EventTypePage, EventsPage, SendEventModal } from "./events.js";
import { AppsPage } from "./apps.js";
import { WebhooksPage } from "./webhooks.js";
import { EnvSwitcher, EnvironmentsPage, KeysPage } from "./envs.js";

const NAV = [
  ["/runs", "Runs", "M4 6h16M4 12h10M4 18h13"],
  ["/functions", "Functions", "M8 4c-2 0-3 1-3 3v3l-2 2 2 2v3c0 2 1 3 3 3M16 4c2 0 3 1 3 3v3l2 2-2 2v3c0 2-1 3-3 3"],
  ["/events", "Events", "M13 3 4 14h7l-1 7 9-11h-7z"],
  ["/apps", "Apps", "M4 4h7v7H4zM13 4h7v7h-7zM4 13h7v7H4zM13 13h7v7h-7z"],
  ["/webhooks", "Webhooks", "M10 14a4 4 0 1 1 4-6M8 18h8a4 4 0 1 0-2-7.5M6 18a4 4 0 0 1-1-7.8"],
];
// start mode only: environments and keys are managed in the product (pyngest dev is one environment)
const MANAGE = [
  ["/environments", "Environments", "M3 7l9-4 9 4-9 4zM3 12l9 4 9-4M3 17l9 4 9-4"],
  ["/keys", "Keys", "M15 7a4 4 0 1 1-3.9 5H4v3H2v-5h9.1A4 4 0 0 1 15 7z"],
];

const ROUTES = [
  [/^\/runs\/([^/]+)$/, (m) => html`<${RunPage} id=${m[1]} />`],
  [/^\/runs\/?$/, () => html`<${RunsPage} />`],
  [/^\/functions\/(.+)$/, (m) => html`<${FunctionPage} slug=${decodeURIComponent(m[1])} />`],
  [/^\/functions\/?$/, () => html`<${FunctionsPage} />`],
  [/^\/events\/id\/([^/]+)$/, (m) => html`<${EventPage} id=${m[1]} />`],
  [/^\/events\/type\/(.+)$/, (m) => html`<${EventTypePage} name=${decodeURIComponent(m[1])} />`],
  [/^\/events\/?$/, () => html`<${EventsPage} />`],
  [/^\/apps\/?$/, () => html`<${AppsPage} />`],
  [/^\/webhooks\/?$/, () => html`<${WebhooksPage} />`],
  [/^\/environments\/?$/, () => html`<${EnvironmentsPage} />`],
  [/^\/keys\/?$/, () => html`<${KeysPage} />`],
];

function LiveDot() {
  const [on, setOn] = useState(false);
  useEffect(() => onLiveStatus(setOn), []);
  return html`<span class="live ${on ? "on" : ""}" title=${on ? "Live: updates arrive as they happen" : "Reconnecting…"}>
    <i></i>${on ? "Live" : "Offline"}</span>`;
}

function App() {
  const loc = useLocation();
  const path = loc.split("?")[0];
  const [sending, setSending] = useState(false);
  const startMode = document.body.dataset.mode === "start";
  let page = html`<section class="page"><h1>Not found</h1><p><a href="/runs">Go to runs</a></p></section>`;
  for (const [re, view] of ROUTES) {
    const m = path.match(re);
    if (m) {
      page = view(m);
      break;
    }
  }
  useEffect(() => {
    const section = [...NAV, ...MANAGE].find(([href]) => path.startsWith(href));
    document.title = `${section ? section[1] : "pyngest"} · pyngest`;
  }, [path]);
  return html`<div class="layout">
    <nav class="sidebar" aria-label="Main">
      <a class="brand" href="/runs"><span class="logo-dot"></span>pyngest</a>
      ${(startMode ? [...NAV, ...MANAGE] : NAV).map(([href, label, d]) => html`<a href=${href}
        class="nav ${path.startsWith(href) ? "active" : ""}">
        <svg viewBox="0 0 24 24" aria-hidden="true"><path d=${d} /></svg>${label}</a>`)}
      <div class="side-foot">
        <${LiveDot} />
        <a class="muted small" href="/openapi.json" target="_blank" rel="noopener">REST API</a>
        <a class="muted small" href="/metrics" target="_blank" rel="noopener">Metrics</a>
        ${startMode && html`<form method="post" action="/auth/logout"><button class="linkish small" type="submit">Sign out</button></form>`}
      </div>
    </nav>
    <main class="main">
      <div class="topbar"><span class="mode">${startMode ? "server" : "dev server"}</span>
        ${startMode && html`<${EnvSwitcher} />`}
        <button class="btn small" onClick=${() => setSending(true)}>Send test event</button></div>
      ${page}
    </main>
    ${sending && html`<${SendEventModal} onClose=${() => setSending(false)} />`}
    <${Toasts} />
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
