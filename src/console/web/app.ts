import { rolloutChart } from './chart.js';
import { h, table } from './dom.js';
import type { GatewayIR, NodeStatus, Rejection, Rollout, RolloutList } from './types.js';

/**
 * The console's script: polls the admin API every second and redraws the four sections. Read-only until a
 * person types the admin token; the token stays in this tab's sessionStorage and is sent only as the
 * Authorization header of a command.
 */

const POLL_MS = 1000;
const TOKEN_KEY = 'flowgate.adminToken';
const COMMANDS = ['pause', 'resume', 'promote', 'abort'] as const;

const $ = (id: string): HTMLElement => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from the page`);
  return el;
};

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
let writable = false;

async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status}`);
  return (await res.json()) as T;
}

function showMode(): void {
  const mode = $('mode');
  mode.textContent = token && writable ? 'admin' : 'read-only';
  mode.dataset.mode = token && writable ? 'admin' : 'read-only';
}

async function send(model: string, command: string): Promise<void> {
  const res = await fetch(`/api/rollouts/${encodeURIComponent(model)}/${command}`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  const body = (await res.json().catch(() => ({}))) as { message?: string };
  $('error').textContent = res.ok ? '' : `${command} ${model}: ${res.status} ${body.message ?? ''}`;
  if (res.status === 401) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    showMode();
  }
}

function stepText(r: Rollout): string {
  if (r.phase === 'idle') return r.idle ?? 'idle';
  if (r.phase === 'pending') return `waiting to start (steps ${r.steps.join(', ')}%)`;
  return `step ${r.step + 1} of ${r.steps.length} at ${r.weight}%`;
}

function rolloutCard(r: Rollout): HTMLElement {
  const admin = token !== '' && writable;
  const actions = h('span', { class: 'actions' });
  for (const c of COMMANDS) {
    const b = h('button', { type: 'button', 'data-command': c, ...(admin && r.canaryVersion !== null ? {} : { disabled: '' }) }, c);
    b.addEventListener('click', () => void send(r.model, c));
    actions.append(b);
  }
  const events = r.events ?? [];
  const recent = events.filter((e) => e.decision !== 'check' || e.check?.verdict !== 'pass').slice(-6).reverse();
  return h(
    'div',
    { class: 'rollout', 'data-testid': `rollout-${r.model}`, 'data-phase': r.phase, 'data-step': String(r.step), 'data-weight': String(r.weight) },
    h(
      'div',
      { class: 'head' },
      h('strong', {}, r.model),
      h('span', { class: `badge phase-${r.phase}`, 'data-testid': 'phase' }, r.phase),
      h('span', { 'data-testid': 'step' }, stepText(r)),
      h('span', { class: 'muted' }, r.canaryVersion ? `canary v${r.canaryVersion} vs stable v${r.stableVersion ?? '?'}` : ''),
      h('span', { class: 'muted' }, `failed checks ${r.failedChecks}/${r.threshold}`),
      actions,
    ),
    r.reason ? h('div', { class: 'muted', 'data-testid': 'reason' }, r.reason) : null,
    rolloutChart(r.model, events, Date.now()),
    h(
      'div',
      { class: 'legend' },
      h('span', {}, h('i', { class: 'lg-weight' }), 'canary weight (%)'),
      h('span', {}, h('i', { class: 'lg-canary' }), `canary v${r.canaryVersion ?? '?'}`),
      h('span', {}, h('i', { class: 'lg-stable' }), `stable v${r.stableVersion ?? '?'}`),
      h('span', {}, 'solid: 5xx rate (%, left axis) · dashed: p99 latency (ms, right axis)'),
    ),
    recent.length > 0
      ? table(
          ['time', 'decision', 'weight', 'detail'],
          recent.map((e) => [new Date(e.at).toLocaleTimeString(), e.decision, `${e.weight}%`, e.check?.summary ?? e.reason ?? '']),
        )
      : null,
  );
}

function renderRollouts(list: RolloutList, detailed: Rollout[]): void {
  writable = list.writable;
  showMode();
  $('lease').textContent = `lease: ${list.lease.holder ?? 'nobody'}${list.lease.held ? ' (this replica)' : ''} · source ${list.source}`;
  const box = $('rollouts');
  box.replaceChildren(...(detailed.length > 0 ? detailed.map(rolloutCard) : [h('p', { class: 'muted' }, 'no Rollout in the policy')]));
}

function renderModels(ir: GatewayIR | null): void {
  if (!ir) {
    $('models').replaceChildren(h('p', { class: 'muted' }, 'no configuration built yet'));
    return;
  }
  const rows = ir.models.flatMap((m) =>
    m.live.length === 0 ? [[m.name, '-', '-', '-', 'no live version']] : m.live.map((l, i) => [i === 0 ? m.name : '', `v${l.version}`, l.role, `${l.weight}%`, l.aliases.join(', ')]),
  );
  const alerts = ir.alerts.map((a) => h('li', {}, `${a.model}: ${a.code}: ${a.message}`));
  $('models').replaceChildren(table(['model', 'version', 'role', 'weight', 'aliases'], rows), alerts.length ? h('ul', { class: 'nack' }, ...alerts) : '');
}

function renderFleet(nodes: NodeStatus[]): void {
  if (nodes.length === 0) {
    $('fleet').replaceChildren(h('p', { class: 'muted' }, 'no Envoy connected'));
    return;
  }
  const rows = nodes.map((n) => {
    const acked = n.types.map((t) => `${t.type} ${t.lastAck?.version.slice(0, 8) ?? '-'}`).join(' · ');
    const nacks = n.types.filter((t) => t.lastNack).map((t) => h('div', { class: 'nack' }, `${t.type} ${t.lastNack?.version.slice(0, 8) ?? ''}: ${t.lastNack?.detail ?? ''}`));
    return [n.node, n.group, `${n.service}/${n.transport}`, acked, nacks.length ? h('div', {}, ...nacks) : '-'];
  });
  $('fleet').replaceChildren(table(['node', 'group', 'stream', 'acked', 'rejected'], rows));
}

function renderRejections(list: Rejection[]): void {
  if (list.length === 0) {
    $('rejections').replaceChildren(h('p', { class: 'muted' }, 'none since this control plane started'));
    return;
  }
  const rows = [...list].reverse().flatMap((r) => r.issues.map((i, n) => [n === 0 ? new Date(r.at).toLocaleTimeString() : '', `${i.file}:${i.line}:${i.col}`, i.path, i.message]));
  $('rejections').replaceChildren(table(['time', 'where', 'path', 'issue'], rows));
}

async function refresh(): Promise<void> {
  try {
    const [list, nodes, ir, rejections] = await Promise.all([
      getJson<RolloutList>('/api/rollouts'),
      getJson<NodeStatus[]>('/debug/nodes'),
      getJson<GatewayIR | null>('/debug/ir'),
      getJson<{ rejections: Rejection[] }>('/api/policy/rejections'),
    ]);
    const detailed = await Promise.all(list.rollouts.map((r) => getJson<Rollout>(`/api/rollouts/${encodeURIComponent(r.model)}`)));
    renderRollouts(list, detailed);
    renderModels(ir);
    renderFleet(nodes);
    renderRejections(rejections.rejections);
    $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
    if ($('error').dataset.kind === 'poll') $('error').textContent = '';
  } catch (err) {
    $('error').textContent = `cannot read the admin API: ${err instanceof Error ? err.message : String(err)}`;
    $('error').dataset.kind = 'poll';
  }
}

function start(): void {
  const input = $('token') as HTMLInputElement;
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = input.value.trim();
    input.value = '';
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    showMode();
    void refresh();
  });
  showMode();
  const loop = (): void => {
    void refresh().finally(() => setTimeout(loop, POLL_MS));
  };
  loop();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
