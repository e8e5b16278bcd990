// A run's steps drawn to scale: one row per step, each attempt a segment, sleeps and waits as
// hatched spans, queue time before the run as a faint lead-in.
import { useState } from "preact/hooks";
import { html } from "./ui.js";
import { fmtDuration, ms } from "./api.js";

const OP_LABEL = { RUN: "step.run", SLEEP: "sleep", WAIT_FOR_EVENT: "wait", INVOKE: "invoke", AI_GATEWAY: "ai" };

function kindOf(span) {
  if (span.stepOp === "SLEEP") return "sleep";
  if (span.stepOp === "WAIT_FOR_EVENT") return "wait";
  if (span.stepOp === "INVOKE") return "invoke";
  return "run";
}

function bounds(span, now) {
  const start = ms(span.startedAt) ?? ms(span.queuedAt) ?? now;
  const end = ms(span.endedAt) ?? (span.status === "WAITING" || span.status === "RUNNING" || span.status === "QUEUED" ? now : start);
  return [start, Math.max(end, start)];
}

function detail(span) {
  const info = span.stepInfo || {};
  if (info.__typename === "SleepStepInfo") return `until ${new Date(info.sleepUntil).toLocaleTimeString()}`;
  if (info.__typename === "WaitForEventStepInfo") {
    const timed = info.timedOut ? " · timed out" : "";
    return `for ${info.eventName}${info.expression ? ` if ${info.expression}` : ""}${timed}`;
  }
  if (info.__typename === "InvokeStepInfo") return `${info.functionID}${info.timedOut ? " · timed out" : ""}`;
  return "";
}

// A step whose last attempt failed and which is still running waits for its next attempt.
function retrying(span, attempts) {
  const last = attempts[attempts.length - 1];
  if (!last || last.status !== "FAILED" || span.status !== "RUNNING") return null;
  return { last: ms(last.endedAt) };
}

export function Timeline({ trace, selected, onSelect }) {
  const [open, setOpen] = useState({});
  const now = Date.now();
  const t0 = ms(trace.queuedAt);
  const [, runEnd] = bounds(trace, now);
  const spans = trace.childrenSpans || [];
  let end = runEnd;
  for (const s of spans) end = Math.max(end, bounds(s, now)[1]);
  const total = Math.max(end - t0, 1);
  const pos = (t) => `${(100 * (t - t0)) / total}%`;
  const width = (a, b) => `max(${(100 * (b - a)) / total}%, 3px)`;
  // A bar's label goes after it, unless the bar ends near the right edge and there is more room
  // before it: then before it. Either way it is cut (with an ellipsis) to the room it has, so
  // a long detail (an expression, an invoked function's id) never runs past the panel.
  const metaAt = (a, b) => {
    const before = (100 * (a - t0)) / total;
    const after = (100 * (b - t0)) / total;
    return after > 75 && before > 100 - after
      ? `right:calc(${100 - before}% + 6px);max-width:calc(${before}% - 6px)`
      : `left:calc(${after}% + 6px);max-width:calc(${100 - after}% + 84px)`;
  };
  const runStart = ms(trace.startedAt) ?? runEnd;

  const row = (span, depth, key) => {
    const [a, b] = bounds(span, now);
    const kind = kindOf(span);
    const attempts = span.childrenSpans || [];
    const expandable = attempts.length > 0;
    const isOpen = open[key];
    const sel = selected && selected.spanID === span.spanID;
    const waitBar = (w) => w && html`<i class="bar retry" style="left:${pos(w.last)};width:${width(w.last, now)}"
      title="waiting to retry"></i>`;
    return html`
      <div class="tl-row ${sel ? "selected" : ""} depth-${depth}" data-span=${span.name}
        onClick=${() => onSelect(span)} role="button" tabindex="0"
        onKeyDown=${(e) => e.key === "Enter" && onSelect(span)}>
        <div class="tl-name">
          ${expandable ? html`<button class="caret ${isOpen ? "open" : ""}" aria-label="Show attempts"
              onClick=${(e) => { e.stopPropagation(); setOpen({ ...open, [key]: !isOpen }); }}>▸</button>`
            : html`<span class="caret-space"></span>`}
          <span class="op ${kind}">${OP_LABEL[span.stepOp] || (depth ? "attempt" : "")}</span>
          <span class="tl-label" title=${span.name}>${span.name}</span>
          ${depth === 0 && span.attempts > 1 && html`<span class="pill warn small">${span.attempts} attempts</span>`}
        </div>
        <div class="tl-track">
          ${expandable && !isOpen
            ? [...attempts.map((at) => {
              const [x, y] = bounds(at, now);
              return html`<i class="bar ${at.status === "FAILED" ? "failed" : "run"}" style="left:${pos(x)};width:${width(x, y)}"
                title="${at.name}: ${at.status.toLowerCase()} · ${fmtDuration(y - x)}"></i>`;
            }), waitBar(retrying(span, attempts))]
            : html`<i class="bar ${kind} ${span.status.toLowerCase()}" style="left:${pos(a)};width:${width(a, b)}"
                title="${span.status.toLowerCase()} · ${fmtDuration(b - a)}"></i>`}
          <span class="tl-meta" style=${metaAt(a, b)} title=${`${fmtDuration(b - a)} ${detail(span)}`}>${fmtDuration(b - a)} ${detail(span)}</span>
        </div>
      </div>
      ${isOpen && attempts.map((at, i) => row(at, depth + 1, `${key}.${i}`))}`;
  };

  return html`<div class="timeline" aria-label="Run timeline">
    <div class="tl-row root ${selected && selected.isRoot ? "selected" : ""}" onClick=${() => onSelect(trace)} role="button" tabindex="0">
      <div class="tl-name"><span class="caret-space"></span><span class="op fn">run</span>
        <span class="tl-label">${trace.name}</span></div>
      <div class="tl-track">
        <i class="bar queue" style="left:0;width:${width(t0, runStart)}" title="queued ${fmtDuration(runStart - t0)}"></i>
        <i class="bar fn ${trace.status.toLowerCase()}" style="left:${pos(runStart)};width:${width(runStart, runEnd)}"
          title="${trace.status.toLowerCase()} · ${fmtDuration(runEnd - runStart)}"></i>
        <span class="tl-meta" style="left:calc(${pos(runEnd)} + 6px)">${fmtDuration(runEnd - t0)}</span>
      </div>
    </div>
    ${spans.map((s, i) => row(s, 0, String(i)))}
    <div class="tl-axis"><span>0</span><span>${fmtDuration(total / 2)}</span><span>${fmtDuration(total)}</span></div>
  </div>`;
}
