import { s } from './dom.js';
import type { RolloutEvent } from './types.js';

/**
 * A rollout's timeline as an inline SVG: the canary weight (steps, %), each version's error rate (%, solid)
 * on the left axis, each version's p99 latency (ms, dashed) on the right axis, and a vertical mark per
 * decision. Points are the checks, so the chart moves when a step is taken.
 */

const W = 860;
const H = 220;
const PAD = { left: 40, right: 50, top: 12, bottom: 24 };

type Series = { cls: string; points: [number, number][] };

function path(points: [number, number][]): string {
  return points.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
}

/** The chart of `events` up to `now`. */
export function rolloutChart(model: string, events: RolloutEvent[], now: number): SVGElement {
  const t0 = events[0]?.at ?? now;
  const t1 = Math.max(now, t0 + 1000);
  const x = (t: number): number => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const yPct = (v: number): number => H - PAD.bottom - (Math.min(100, Math.max(0, v)) / 100) * (H - PAD.top - PAD.bottom);
  const checks = events.filter((e) => e.check);
  const maxMs = Math.max(1, ...checks.flatMap((e) => [e.check?.canary.p99Ms ?? 0, e.check?.stable.p99Ms ?? 0]));
  const yMs = (v: number): number => H - PAD.bottom - (v / maxMs) * (H - PAD.top - PAD.bottom);

  // The weight holds from one decision to the next: a step line drawn to now.
  const weight: [number, number][] = [];
  for (const e of events) {
    const last = weight.at(-1);
    if (last) weight.push([x(e.at), last[1]]);
    weight.push([x(e.at), yPct(e.weight)]);
  }
  const lastWeight = weight.at(-1);
  if (lastWeight) weight.push([x(t1), lastWeight[1]]);
  const series: Series[] = [
    { cls: 'weight', points: weight },
    { cls: 'err-canary', points: checks.flatMap((e) => (e.check?.canary.errorRate == null ? [] : [[x(e.at), yPct(e.check.canary.errorRate)] as [number, number]])) },
    { cls: 'err-stable', points: checks.flatMap((e) => (e.check?.stable.errorRate == null ? [] : [[x(e.at), yPct(e.check.stable.errorRate)] as [number, number]])) },
    { cls: 'lat-canary', points: checks.flatMap((e) => (e.check?.canary.p99Ms == null ? [] : [[x(e.at), yMs(e.check.canary.p99Ms)] as [number, number]])) },
    { cls: 'lat-stable', points: checks.flatMap((e) => (e.check?.stable.p99Ms == null ? [] : [[x(e.at), yMs(e.check.stable.p99Ms)] as [number, number]])) },
  ];
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `rollout timeline of ${model}`, 'data-testid': `chart-${model}`, 'data-points': events.length });
  svg.append(s('line', { class: 'axis', x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }));
  svg.append(s('line', { class: 'axis', x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom }));
  for (const v of [0, 50, 100]) svg.append(s('text', { x: 4, y: yPct(v) + 3 }, `${v}%`));
  svg.append(s('text', { x: W - PAD.right + 4, y: PAD.top + 8 }, `${Math.round(maxMs)}ms`));
  svg.append(s('text', { x: PAD.left, y: H - 6 }, new Date(t0).toLocaleTimeString()));
  svg.append(s('text', { x: W - PAD.right - 50, y: H - 6 }, new Date(t1).toLocaleTimeString()));
  for (const e of events) {
    if (e.decision === 'check') continue;
    const bad = e.decision === 'rollback' || e.decision === 'abort' || e.decision === 'pause';
    const mark = s('line', { class: `decision${bad ? ' bad' : ''}`, x1: x(e.at), y1: PAD.top, x2: x(e.at), y2: H - PAD.bottom, 'data-decision': e.decision });
    mark.append(s('title', {}, `${new Date(e.at).toLocaleTimeString()} ${e.decision} -> ${e.weight}%${e.reason ? `: ${e.reason}` : ''}`));
    svg.append(mark);
  }
  for (const line of series) {
    if (line.points.length === 0) continue;
    svg.append(s('path', { class: line.cls, d: path(line.points) }));
    // Every measured point gets a dot, so the first check shows before there is a line to draw.
    if (line.cls !== 'weight') for (const [px, py] of line.points) svg.append(s('circle', { class: `${line.cls} dot`, cx: px.toFixed(1), cy: py.toFixed(1), r: 2.5 }));
  }
  return svg;
}
