import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MlflowClient } from '../../src/registry/mlflow-client.js';
import type { GatewayIR } from '../../src/ir/types.js';

/**
 * Helpers for rollout tests: model upstreams that misbehave on purpose (a share of 5xx, a fixed delay),
 * the IR a control plane serves, and a model version's tags read straight from MLflow.
 */

export interface ModelUpstream {
  readonly port: number;
  /** Requests answered, and how many of them with a 5xx. */
  readonly counts: { answered: number; failed: number };
  close(): Promise<void>;
}

/**
 * An upstream answering JSON 200 after `delayMs`, except every request whose sequence number falls in the
 * failing share (`failPercent`, spread evenly: 20 fails one in five), which gets a 503.
 */
export async function startModelUpstream(name: string, behaviour: { failPercent?: number; delayMs?: number } = {}): Promise<ModelUpstream> {
  const counts = { answered: 0, failed: 0 };
  let seq = 0;
  const failEvery = behaviour.failPercent ? 100 / behaviour.failPercent : 0;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const n = ++seq;
      const fail = failEvery > 0 && Math.floor(n / failEvery) !== Math.floor((n - 1) / failEvery);
      const answer = (): void => {
        counts.answered++;
        if (fail) {
          counts.failed++;
          res.writeHead(503, { 'content-type': 'application/json', 'x-upstream': name });
          res.end(JSON.stringify({ error: 'injected failure', upstream: name }));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
        res.end(JSON.stringify({ predictions: [0.5], upstream: name }));
      };
      if (behaviour.delayMs) setTimeout(answer, behaviour.delayMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The IR a control plane serves now (its /debug/ir). */
export async function servedIR(adminUrl: string): Promise<GatewayIR | null> {
  return (await (await fetch(`${adminUrl}/debug/ir`)).json()) as GatewayIR | null;
}

/** The canary weight and phase a control plane serves for `model` now. */
export async function servedRollout(adminUrl: string, model: string): Promise<{ weight: number; phase: string; canary: string | undefined; liveCanary: number | undefined } | undefined> {
  const m = (await servedIR(adminUrl))?.models.find((x) => x.name === model);
  if (!m?.rollout) return undefined;
  const liveCanary = m.live.find((l) => l.role === 'canary')?.weight;
  return { weight: m.rollout.weight, phase: m.rollout.idle !== undefined ? 'idle' : (m.rollout.state?.phase ?? 'pending'), canary: m.rollout.canaryVersion, liveCanary };
}

/** A model version's tags, read from MLflow now. */
export async function versionTags(mlflowUri: string, model: string, version: string): Promise<Record<string, string>> {
  const versions = await new MlflowClient({ trackingUri: mlflowUri }).searchModelVersions(model);
  return { ...(versions.find((v) => v.version === version)?.tags ?? {}) };
}

/** A registered model's aliases, read from MLflow now. */
export async function aliasesOf(mlflowUri: string, model: string): Promise<Readonly<Record<string, string>>> {
  return (await new MlflowClient({ trackingUri: mlflowUri }).aliases(model)) ?? {};
}
