import type { NodeStatus, NodeTypeStatus } from '../admin/nodes.js';
import { errorMessage, FlowgateError } from '../errors.js';
import type { GatewayIR } from '../ir/types.js';
import { signatureReport } from './signatures.js';

/**
 * The fleet status `flowgate status` prints: the connected Envoys (per resource type: the version each
 * acknowledged, the rejection it is stuck on) from /debug/nodes, and each model's live versions and weights
 * from /debug/ir, both read from a control plane's admin endpoint.
 */

export interface FleetStatus {
  readonly admin: string;
  readonly nodes: readonly NodeStatus[];
  /** Null until the control plane has built its first configuration. */
  readonly ir: GatewayIR | null;
}

const MAX_DETAIL = 160;

/** Reads /debug/nodes and /debug/ir. Throws FlowgateError `admin_unreachable` or `admin_bad_answer`. */
export async function fetchFleetStatus(adminUrl: string, timeoutMs = 5000): Promise<FleetStatus> {
  const base = adminUrl.replace(/\/+$/, '');
  const get = async <T>(path: string): Promise<T> => {
    let res: Response;
    try {
      res = await fetch(base + path, { signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : errorMessage(err);
      throw new FlowgateError(
        'admin_unreachable',
        `cannot reach the control plane admin endpoint (${cause}); is \`flowgate serve\` running there? Set --admin or FLOWGATE_ADMIN_URL`,
        base,
        { cause: err },
      );
    }
    const text = await res.text();
    if (!res.ok) throw new FlowgateError('admin_bad_answer', `GET ${path} answered ${res.status}: ${text.slice(0, 200)}`, base);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new FlowgateError('admin_bad_answer', `GET ${path} did not answer JSON; is this a Flowgate control plane admin endpoint?`, base);
    }
  };
  const [nodes, ir] = await Promise.all([get<NodeStatus[]>('/debug/nodes'), get<GatewayIR | null>('/debug/ir')]);
  if (!Array.isArray(nodes)) throw new FlowgateError('admin_bad_answer', 'GET /debug/nodes did not answer a list of nodes', base);
  return { admin: base, nodes, ir };
}

/** Aligned columns, two spaces apart; trailing spaces trimmed. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** The rejection a type is stuck on: its last NACK, unless a later ACK superseded it. */
export function currentNack(t: NodeTypeStatus): NodeTypeStatus['lastNack'] {
  if (!t.lastNack) return null;
  if (t.lastAck && t.lastAck.at > t.lastNack.at) return null;
  return t.lastNack;
}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_DETAIL ? `${flat.slice(0, MAX_DETAIL - 1)}…` : flat;
}

/** The nodes table: one row per node and resource type. */
export function formatNodes(nodes: readonly NodeStatus[]): string {
  if (nodes.length === 0) return 'NODES: none connected';
  const rows: string[][] = [];
  const sorted = [...nodes].sort((a, b) => a.node.localeCompare(b.node) || a.stream - b.stream);
  for (const n of sorted) {
    const stream = `#${n.stream} ${n.service}/${n.transport}`;
    const types = n.types.length > 0 ? n.types : [null];
    types.forEach((t, i) => {
      const first = i === 0;
      const nack = t ? currentNack(t) : null;
      rows.push([
        first ? n.node : '',
        first ? n.group : '',
        first ? stream : '',
        t?.type ?? '-',
        t?.lastAck?.version ?? '-',
        t?.pending ? t.pending.version : '-',
        nack ? `${nack.version}: ${oneLine(nack.detail)}` : '-',
      ]);
    });
  }
  return `NODES (${new Set(nodes.map((n) => n.node)).size} connected)\n${formatTable(['NODE', 'GROUP', 'STREAM', 'TYPE', 'ACKED', 'PENDING', 'REJECTED'], rows)}`;
}

/** The models table: one row per live version, and the alerts. */
export function formatModels(ir: GatewayIR | null): string {
  if (!ir) return 'MODELS: no configuration built yet (the control plane is waiting for a valid policy and registry)';
  const rows: string[][] = [];
  for (const m of ir.models) {
    const note = m.keptLastLive ? 'kept last live (registry gave none)' : '';
    if (m.live.length === 0) rows.push([m.name, '-', '-', '-', '-', 'no live version: its routes answer 503']);
    m.live.forEach((v, i) => rows.push([i === 0 ? m.name : '', v.version, v.role, `${v.weight}%`, v.aliases.join(',') || '-', i === 0 ? note : '']));
  }
  const parts = [`MODELS (${ir.models.length})`, formatTable(['MODEL', 'VERSION', 'ROLE', 'WEIGHT', 'ALIASES', 'NOTE'], rows)];
  const rollouts = ir.models.filter((m) => m.rollout);
  if (rollouts.length > 0) {
    const rrows = rollouts.map((m) => {
      const r = m.rollout as NonNullable<typeof m.rollout>;
      const phase = r.idle !== undefined ? 'idle' : (r.state?.phase ?? 'pending');
      const step = r.state ? `${r.state.step + 1}/${r.plan.steps.length}` : `-/${r.plan.steps.length}`;
      const checks = `${r.state?.failedChecks ?? 0}/${r.plan.threshold}`;
      return [m.name, phase, r.canaryVersion ?? '-', `${r.weight}%`, step, checks, oneLine(r.idle ?? r.state?.reason ?? '')];
    });
    parts.push('', `ROLLOUTS (${rollouts.length})`, formatTable(['MODEL', 'PHASE', 'CANARY', 'WEIGHT', 'STEP', 'FAILED', 'REASON'], rrows));
  }
  const processed = signatureReport(ir);
  if (processed.length > 0) {
    const prow = processed.map((p) => [
      p.model,
      p.version,
      p.protocol,
      p.convert ? `from ${ir.models.find((m) => m.name === p.model)?.protocol ?? '?'}` : '-',
      p.validateInput ? 'yes' : 'no',
      p.signature === 'found' ? (p.inputs ?? []).join(', ') || '(no inputs)' : p.signature === 'unreadable' ? `unreadable: ${oneLine(p.reason ?? '')}` : p.signature,
      p.unchecked ? 'UNCHECKED: no signature, requests pass' : '',
    ]);
    parts.push('', `VERSION PROCESSING (${processed.length})`, formatTable(['MODEL', 'VERSION', 'SPEAKS', 'CONVERTED', 'VALIDATED', 'SIGNATURE', 'NOTE'], prow));
  }
  if (ir.alerts.length > 0) {
    parts.push('', `ALERTS (${ir.alerts.length})`, ...ir.alerts.map((a) => `  ${a.model}: ${a.code}: ${oneLine(a.message)}`));
  }
  return parts.join('\n');
}

/** The whole status as people read it. */
export function formatFleetStatus(status: FleetStatus): string {
  return `control plane ${status.admin}\n\n${formatNodes(status.nodes)}\n\n${formatModels(status.ir)}\n`;
}
