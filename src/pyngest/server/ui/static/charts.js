// Hand-drawn SVG charts: a donut, stacked bars over time, an area line, a sparkline.
import { html } from "./ui.js";
import { fmtCount } from "./api.js";

export const COLORS = {
  completed: "#10b981", failed: "#ef4444", cancelled: "#94a3b8", running: "#3b82f6",
  queued: "#f59e0b", skipped: "#cbd5e1", started: "#6366f1", errored: "#f97316", backlog: "#a855f7",
  events: "#0ea5e9",
};

// The top of the y axis: four equal whole-number steps (0, 2, 4, 6, 8; 0, 3, 6, 9, 12; ...).
export function niceMax(v) {
  if (v <= 4) return 4;
  const raw = v / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= raw && Number.isInteger(m * p)) return 4 * m * p;
  return 40 * p;
}

function tickLabel(ms, span) {
  const d = new Date(ms);
  if (span <= 2 * 86400e3) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleDateString([], { month: "short", day: "numeric" });
}

export function Donut({ segments, size = 148, label = "runs" }) {
  const total = segments.reduce((a, s) => a + s.value, 0);
  const r = size / 2 - 12;
  const c = 2 * Math.PI * r;
  let offset = 0;
  return html`<div class="donut">
    <svg width=${size} height=${size} viewBox="0 0 ${size} ${size}" role="img" aria-label="Run status breakdown">
      <circle cx=${size / 2} cy=${size / 2} r=${r} fill="none" stroke="var(--line)" stroke-width="16" />
      ${total > 0 && segments.filter((s) => s.value > 0).map((s) => {
        const len = (s.value / total) * c;
        const el = html`<circle cx=${size / 2} cy=${size / 2} r=${r} fill="none" stroke=${s.color}
          stroke-width="16" stroke-dasharray="${len} ${c - len}" stroke-dashoffset=${-offset}
          transform="rotate(-90 ${size / 2} ${size / 2})"><title>${s.label}: ${s.value}</title></circle>`;
        offset += len;
        return el;
      })}
      <text x="50%" y="48%" text-anchor="middle" class="donut-total">${fmtCount(total)}</text>
      <text x="50%" y="62%" text-anchor="middle" class="donut-label">${label}</text>
    </svg>
    <ul class="legend">${segments.map((s) => html`<li><i style="background:${s.color}"></i>${s.label}
      <b>${s.value}</b><span class="muted">${total ? Math.round((100 * s.value) / total) : 0}%</span></li>`)}</ul>
  </div>`;
}

function Axes({ w, h, pad, max, from, bucketMs, n }) {
  const span = bucketMs * n;
  const ticks = 4;
  const xticks = Math.min(6, n);
  return html`<g class="axes">
    ${Array.from({ length: ticks + 1 }, (_, i) => {
      const y = pad.t + ((h - pad.t - pad.b) * i) / ticks;
      return html`<line x1=${pad.l} x2=${w - pad.r} y1=${y} y2=${y} class="grid" />
        <text x=${pad.l - 6} y=${y + 4} text-anchor="end">${fmtCount(Math.round(max * (1 - i / ticks)))}</text>`;
    })}
    ${Array.from({ length: xticks }, (_, i) => {
      const frac = i / Math.max(1, xticks - 1);
      const x = pad.l + (w - pad.l - pad.r) * frac;
      return html`<text x=${x} y=${h - 6} text-anchor=${i === 0 ? "start" : i === xticks - 1 ? "end" : "middle"}>
        ${tickLabel(from + span * frac, span)}</text>`;
    })}
  </g>`;
}

// series: [{key, label, color, values}] stacked bottom-up.
export function Bars({ series, from, bucketMs, height = 180, label }) {
  const n = series.length ? series[0].values.length : 0;
  const w = 640;
  const pad = { l: 40, r: 8, t: 10, b: 22 };
  const sums = Array.from({ length: n }, (_, i) => series.reduce((a, s) => a + (s.values[i] || 0), 0));
  const max = niceMax(Math.max(0, ...sums));
  const bw = (w - pad.l - pad.r) / Math.max(n, 1);
  const ih = height - pad.t - pad.b;
  return html`<figure class="chart">
    <svg viewBox="0 0 ${w} ${height}" role="img" aria-label=${label}>
      <${Axes} w=${w} h=${height} pad=${pad} max=${max} from=${from} bucketMs=${bucketMs} n=${n} />
      ${sums.map((_, i) => {
        let y = height - pad.b;
        const at = new Date(from + i * bucketMs).toLocaleString();
        return html`<g>${series.map((s) => {
          const v = s.values[i] || 0;
          if (!v) return null;
          const bh = (v / max) * ih;
          y -= bh;
          return html`<rect x=${pad.l + i * bw + 1} y=${y} width=${Math.max(bw - 2, 1)} height=${bh}
            fill=${s.color} rx="1.5"><title>${at} · ${s.label}: ${v}</title></rect>`;
        })}</g>`;
      })}
    </svg>
    <figcaption class="legend inline">${series.map((s) => html`<span><i style="background:${s.color}"></i>${s.label}
      <b>${s.values.reduce((a, b) => a + b, 0)}</b></span>`)}</figcaption>
  </figure>`;
}

export function Area({ values, from, bucketMs, color = COLORS.backlog, height = 180, label }) {
  const n = values.length;
  const w = 640;
  const pad = { l: 40, r: 8, t: 10, b: 22 };
  const max = niceMax(Math.max(0, ...values));
  const x = (i) => pad.l + ((w - pad.l - pad.r) * (i + 0.5)) / Math.max(n, 1);
  const y = (v) => height - pad.b - (v / max) * (height - pad.t - pad.b);
  const line = values.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const area = n ? `${line} L${x(n - 1).toFixed(1)},${height - pad.b} L${x(0).toFixed(1)},${height - pad.b} Z` : "";
  return html`<figure class="chart">
    <svg viewBox="0 0 ${w} ${height}" role="img" aria-label=${label}>
      <${Axes} w=${w} h=${height} pad=${pad} max=${max} from=${from} bucketMs=${bucketMs} n=${n} />
      <path d=${area} fill=${color} opacity="0.18" />
      <path d=${line} fill="none" stroke=${color} stroke-width="2" vector-effect="non-scaling-stroke" />
      ${values.map((v, i) => html`<circle cx=${x(i)} cy=${y(v)} r="6" fill="transparent">
        <title>${new Date(from + i * bucketMs).toLocaleString()} · waiting: ${v}</title></circle>`)}
    </svg>
    <figcaption class="legend inline"><span><i style="background:${color}"></i>Runs waiting to start
      <b>${values.length ? values[values.length - 1] : 0}</b> now</span></figcaption>
  </figure>`;
}

export function Sparkline({ values, color = COLORS.events, width = 120, height = 28 }) {
  const max = Math.max(1, ...values);
  const bw = width / Math.max(values.length, 1);
  return html`<svg class="spark" width=${width} height=${height} viewBox="0 0 ${width} ${height}" aria-hidden="true">
    ${values.map((v, i) => v > 0 && html`<rect x=${i * bw} y=${height - (v / max) * height} width=${Math.max(bw - 1, 1)}
      height=${(v / max) * height} fill=${color} rx="1" />`)}
  </svg>`;
}

export function Meter({ value, max, color = COLORS.events }) {
  const pct = max ? Math.max(2, (100 * value) / max) : 0;
  return html`<span class="meter"><i style="width:${value ? pct : 0}%;background:${color}"></i></span>`;
}
