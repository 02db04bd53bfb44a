import type { IncomingMessage } from 'node:http';
import type { GatewayIR, ModelIR } from '../ir/types.js';
import type { AdminReply, AdminServer } from '../observability/admin-server.js';
import type { RegistryWriter } from '../registry/writer.js';
import { nextCheckAt } from '../rollout/analyzer.js';
import type { RolloutLease } from '../rollout/lease.js';
import { COMMANDS, Tag } from '../rollout/state.js';
import type { RolloutEvent, RolloutTimeline } from '../rollout/timeline.js';
import { authorizeAdmin, type AdminToken } from './token.js';

/**
 * The rollouts admin API: GET /api/rollouts (every rollout and the lease), GET /api/rollouts/MODEL (one,
 * with its timeline), and POST /api/rollouts/MODEL/{pause,resume,promote,abort} (admin token required).
 * A command is written as the `flowgate.rollout.command` tag of the canary version, exactly as a person
 * could write it in the MLflow UI; the lease holder applies it on its next tick, whichever replica took it.
 */

export interface RolloutView {
  readonly model: string;
  readonly registeredModel: string;
  readonly canaryVersion: string | null;
  readonly stableVersion: string | null;
  readonly idle: string | null;
  readonly phase: string;
  readonly step: number;
  readonly steps: readonly number[];
  readonly weight: number;
  readonly failedChecks: number;
  readonly threshold: number;
  readonly reason: string | null;
  readonly pendingCommand: string | null;
  readonly nextCheckAt: string | null;
  readonly intervalMs: number;
  readonly plan: NonNullable<ModelIR['rollout']>['plan'];
}

/** The view of one model's rollout, from the IR (identical on every replica). */
export function rolloutView(m: ModelIR): RolloutView | undefined {
  const r = m.rollout;
  if (!r) return undefined;
  const s = r.state;
  return {
    model: m.name,
    registeredModel: m.registeredModel,
    canaryVersion: r.canaryVersion ?? null,
    stableVersion: r.stableVersion ?? null,
    idle: r.idle ?? null,
    phase: r.idle !== undefined ? 'idle' : (s?.phase ?? 'pending'),
    step: s?.step ?? 0,
    steps: r.plan.steps,
    weight: r.weight,
    failedChecks: s?.failedChecks ?? 0,
    threshold: r.plan.threshold,
    reason: s?.reason ?? null,
    pendingCommand: s?.command ?? null,
    nextCheckAt: s && s.phase === 'progressing' ? new Date(nextCheckAt(r.plan, s)).toISOString() : null,
    intervalMs: r.plan.intervalMs,
    plan: r.plan,
  };
}

export interface RolloutApiDeps {
  readonly ir: () => GatewayIR | undefined;
  readonly lease: RolloutLease | undefined;
  readonly timeline: RolloutTimeline | undefined;
  /** Undefined when the registry is a file: there is nowhere to write a command. */
  readonly writer: RegistryWriter | undefined;
  readonly token: AdminToken | undefined;
  readonly source: string;
  /** Runs the lease holder's pass over `model` at once (when this replica holds it). */
  readonly kick?: (model: string) => void;
}

const notFound = (message: string): AdminReply => ({ status: 404, json: { error: 'not_found', message } });

/** Adds the rollout routes to the admin server. */
export function registerRolloutApi(admin: AdminServer, deps: RolloutApiDeps): void {
  const views = (): RolloutView[] => (deps.ir()?.models ?? []).flatMap((m) => rolloutView(m) ?? []);
  const lease = (): object => ({
    holder: deps.lease?.currentHolder() ?? null,
    thisReplica: deps.lease?.holder ?? null,
    held: deps.lease?.generation() !== undefined,
  });
  admin.route('/api/rollouts', () => ({ json: { lease: lease(), source: deps.source, writable: deps.writer !== undefined && deps.token !== undefined, rollouts: views() } }));
  admin.route(
    '/api/rollouts',
    async (url) => {
      const [model, extra] = url.pathname.slice('/api/rollouts/'.length).split('/');
      if (!model || extra !== undefined) return notFound('GET /api/rollouts/MODEL');
      const view = views().find((v) => v.model === model);
      if (!view) return notFound(`model '${model}' has no Rollout`);
      const events: RolloutEvent[] = (await deps.timeline?.events(model)) ?? [];
      return { json: { ...view, lease: lease(), events } };
    },
    { prefix: true },
  );
  admin.route('/api/rollouts', (url, req) => command(url, req, deps, views()), { method: 'POST', prefix: true });
}

async function command(url: URL, req: IncomingMessage, deps: RolloutApiDeps, views: readonly RolloutView[]): Promise<AdminReply> {
  const auth = authorizeAdmin(deps.token, req);
  if (!auth.ok) return { status: auth.status, json: { error: auth.error, message: auth.message } };
  const [model, verb, extra] = url.pathname.slice('/api/rollouts/'.length).split('/');
  if (!model || !verb || extra !== undefined || !(COMMANDS as readonly string[]).includes(verb)) {
    return notFound(`POST /api/rollouts/MODEL/{${COMMANDS.join(',')}}`);
  }
  const view = views.find((v) => v.model === model);
  if (!view) return notFound(`model '${model}' has no Rollout`);
  if (!deps.writer) return { status: 409, json: { error: 'no_registry_writer', message: 'this control plane reads a registry file; rollouts need MLflow' } };
  if (view.canaryVersion === null) return { status: 409, json: { error: 'no_canary', message: `nothing is rolling out for '${model}': ${view.idle ?? 'no canary'}` } };
  await deps.writer.setVersionTag(view.registeredModel, view.canaryVersion, `${Tag.command}_by`, 'the admin API');
  await deps.writer.setVersionTag(view.registeredModel, view.canaryVersion, Tag.command, verb);
  deps.kick?.(view.model);
  return { status: 202, json: { accepted: true, model, canaryVersion: view.canaryVersion, command: verb, message: 'written to MLflow; the lease holder applies it on its next tick' } };
}
