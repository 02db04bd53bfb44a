import { readFileSync } from 'node:fs';
import { errorMessage, FlowgateError } from '../../errors.js';
import { formatTable } from '../../status/report.js';
import { UsageError, type Command } from '../command.js';
import { DEFAULTS } from '../defaults.js';

/**
 * `flowgate rollout status|pause|resume|promote|abort MODEL`: reads and steers rollouts through a control
 * plane's admin API. A command is accepted by any replica (it is written to MLflow) and applied by the
 * lease holder; the CLI waits until the rollout shows it (--no-wait to return at once).
 */

const ACTIONS = ['status', 'pause', 'resume', 'promote', 'abort'] as const;
type Action = (typeof ACTIONS)[number];

interface RolloutAnswer {
  model: string;
  phase: string;
  step: number;
  steps: number[];
  weight: number;
  canaryVersion: string | null;
  stableVersion: string | null;
  failedChecks: number;
  threshold: number;
  reason: string | null;
  pendingCommand: string | null;
  idle: string | null;
  nextCheckAt: string | null;
  lease?: { holder: string | null };
  events?: { at: number; decision: string; weight: number; reason?: string; check?: { summary: string } }[];
}

/** The phases a command ends in, to know when it was applied. */
const APPLIED: Record<Exclude<Action, 'status'>, readonly string[]> = {
  pause: ['paused'],
  resume: ['progressing', 'succeeded', 'failed'],
  promote: ['succeeded', 'idle'],
  abort: ['aborted'],
};

export const rolloutCommand: Command = {
  name: 'rollout',
  summary: 'Show or steer a progressive rollout: status, pause, resume, promote or abort MODEL.',
  args: 'status|pause|resume|promote|abort MODEL',
  options: {
    admin: { type: 'string', description: 'the control plane admin endpoint', env: 'FLOWGATE_ADMIN_URL', default: `http://127.0.0.1:${DEFAULTS.adminPort}`, placeholder: 'URL' },
    'token-file': { type: 'string', description: 'file holding the admin token (or FLOWGATE_ADMIN_TOKEN); needed by every command but status', env: 'FLOWGATE_ADMIN_TOKEN_FILE', placeholder: 'FILE' },
    wait: { type: 'boolean', description: 'wait until the lease holder has applied the command (--no-wait to return at once)', default: true },
    'wait-timeout': { type: 'string', description: 'how long to wait, in seconds', default: '60', placeholder: 'SECONDS' },
    json: { type: 'boolean', description: 'print the rollout as JSON', default: false },
  },
  notes: [
    'Examples: flowgate rollout status fraud-detector',
    '          FLOWGATE_ADMIN_TOKEN=... flowgate rollout pause fraud-detector',
    'The same commands can be given without the CLI: set the tag flowgate.rollout.command=pause (resume, promote,',
    'abort) on the canary model version in MLflow.',
  ].join('\n'),
  async run(options, positionals) {
    const [action, model, ...rest] = positionals;
    if (!action || !(ACTIONS as readonly string[]).includes(action) || !model || rest.length > 0) {
      throw new UsageError(`give an action (${ACTIONS.join(', ')}) and a model`);
    }
    const base = String(options.admin).replace(/\/+$/, '');
    try {
      if (action === 'status') {
        const r = await get(base, model);
        process.stdout.write(options.json === true ? `${JSON.stringify(r, null, 2)}\n` : formatRollout(r));
        return 0;
      }
      const token = readToken(options['token-file']);
      // The newest decision before the command: a newer one of the command's own kind shows it applied even
      // when a check changed the phase again before this CLI looked (a resumed rollout that a short interval
      // pauses again at its next check). Unreadable here, the POST's answer says why.
      const since = options.wait === false ? undefined : await get(base, model).then(newestEventAt, () => undefined);
      const res = await fetch(`${base}/api/rollouts/${encodeURIComponent(model)}/${action}`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
      const body = (await res.json().catch(() => ({}))) as { message?: string };
      if (res.status !== 202) {
        process.stderr.write(`flowgate rollout ${action} ${model}: ${res.status} ${body.message ?? ''}\n`);
        return 1;
      }
      process.stderr.write(`${action} accepted for ${model}; ${options.wait === false ? 'not waiting' : 'waiting for the lease holder'}\n`);
      if (options.wait === false) return 0;
      const deadline = Date.now() + Number(options['wait-timeout']) * 1000;
      for (;;) {
        const r = await get(base, model);
        const recorded = since !== undefined && (r.events ?? []).some((e) => e.at > since && e.decision === action);
        if (r.pendingCommand === null && (recorded || APPLIED[action as Exclude<Action, 'status'>].includes(r.phase))) {
          process.stdout.write(options.json === true ? `${JSON.stringify(r, null, 2)}\n` : formatRollout(r));
          return 0;
        }
        if (Date.now() > deadline) {
          process.stderr.write(`flowgate rollout ${action} ${model}: not applied within ${String(options['wait-timeout'])}s (phase ${r.phase}${r.pendingCommand ? `, command ${r.pendingCommand} pending` : ''}); is a lease holder running?\n`);
          return 1;
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    } catch (err) {
      if (!(err instanceof FlowgateError)) throw err;
      process.stderr.write(`flowgate rollout: ${err.toString()}\n`);
      return 1;
    }
  },
};

function readToken(file: string | boolean | undefined): string {
  if (typeof file === 'string' && file !== '') {
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new UsageError(`cannot read the token file ${file}: ${errorMessage(err)}`);
    }
  }
  const env = process.env.FLOWGATE_ADMIN_TOKEN;
  if (env === undefined || env === '') throw new UsageError('this command needs the admin token: --token-file FILE or FLOWGATE_ADMIN_TOKEN');
  return env;
}

/** The time of a rollout's newest recorded decision (0 when none is recorded). */
function newestEventAt(r: RolloutAnswer): number {
  return Math.max(0, ...(r.events ?? []).map((e) => e.at));
}

async function get(base: string, model: string): Promise<RolloutAnswer> {
  let res: Response;
  try {
    res = await fetch(`${base}/api/rollouts/${encodeURIComponent(model)}`, { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new FlowgateError('admin_unreachable', `cannot reach the control plane admin endpoint (${errorMessage(err)}); set --admin or FLOWGATE_ADMIN_URL`, base);
  }
  const text = await res.text();
  if (!res.ok) throw new FlowgateError('admin_bad_answer', `GET /api/rollouts/${model} answered ${res.status}: ${text.slice(0, 200)}`, base);
  return JSON.parse(text) as RolloutAnswer;
}

/** A rollout as people read it: where it stands, then its last decisions. */
export function formatRollout(r: RolloutAnswer): string {
  const lines = [
    `rollout of ${r.model}: ${r.phase}${r.idle ? ` (${r.idle})` : ''}`,
    `  canary v${r.canaryVersion ?? '-'} at ${r.weight}% (step ${r.step + 1} of ${r.steps.length}: ${r.steps.join(', ')}%), stable v${r.stableVersion ?? '-'}`,
    `  failed checks ${r.failedChecks} of ${r.threshold}${r.nextCheckAt ? `; next check ${r.nextCheckAt}` : ''}${r.pendingCommand ? `; command ${r.pendingCommand} pending` : ''}`,
  ];
  if (r.reason) lines.push(`  ${r.reason}`);
  if (r.lease) lines.push(`  lease holder: ${r.lease.holder ?? 'none'}`);
  const events = (r.events ?? []).slice(-10);
  if (events.length > 0) {
    lines.push('', formatTable(['TIME', 'DECISION', 'WEIGHT', 'DETAIL'], events.map((e) => [new Date(e.at).toISOString(), e.decision, `${e.weight}%`, (e.check?.summary ?? e.reason ?? '').slice(0, 140)])));
  }
  return `${lines.join('\n')}\n`;
}
