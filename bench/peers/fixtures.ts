import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RegisteredModel } from '../../src/registry/types.js';

/**
 * The inputs both sides of the side-by-side serve: a policy directory with one Model file per registered
 * model, and registry files before and after the change (the `challenger` alias of every model moved to a
 * new version). Each model has two live versions, so M models give 4M + 2 resources (a cluster and its
 * endpoints per live version, one listener, one route configuration).
 */

/** The policy of model `i`; `canaryWeight` is what the policy-edit change rewrites. */
export function modelPolicy(i: number, canaryWeight: number): string {
  return [
    'kind: Model',
    `name: model-${i}`,
    `registeredModel: model-${i}`,
    'protocol: mlflow',
    'routes:',
    '  - listener: public',
    `    pathPrefix: /models/model-${i}`,
    'upstream:',
    '  versionTag: flowgate.address',
    'traffic:',
    '  stable: { alias: champion }',
    `  canary: { alias: challenger, weight: ${canaryWeight} }`,
    '',
  ].join('\n');
}

const GATEWAY = [
  'kind: Gateway',
  'listeners:',
  '  - { name: public, address: 0.0.0.0, port: 10000 }',
  'defaults:',
  '  timeout: 30s',
  '  connectTimeout: 2s',
  '  loadBalancer: least_request',
  '',
].join('\n');

/** Writes the policy directory for `models` models (canary weight 10 everywhere). */
export function writePolicyDir(dir: string, models: number): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'gateway.yaml'), GATEWAY);
  for (let i = 0; i < models; i++) writeFileSync(join(dir, `model-${i}.yaml`), modelPolicy(i, 10));
}

/** The policy edit: model-0's canary weight 10 -> 20 (one file, one route's weights). */
export function policyEdit(dir: string): { file: string; text: string } {
  return { file: join(dir, 'model-0.yaml'), text: modelPolicy(0, 20) };
}

export interface RegistryModel {
  readonly name: string;
  readonly aliases: Record<string, string>;
  readonly versions: readonly { readonly version: string; readonly status: 'READY'; readonly tags: Record<string, string> }[];
}

/**
 * The registry: every model has versions 1..3 served at distinct loopback ports; before the change
 * champion=1 and challenger=2, after it challenger=3.
 */
export function registryModels(models: number, moved: boolean): RegistryModel[] {
  return Array.from({ length: models }, (_, i) => ({
    name: `model-${i}`,
    aliases: { champion: '1', challenger: moved ? '3' : '2' },
    versions: [1, 2, 3].map((v) => ({
      version: String(v),
      status: 'READY' as const,
      tags: { 'flowgate.address': `127.0.${Math.floor(i / 200) + 1}.${(i % 200) + 1}:${8000 + v}` },
    })),
  }));
}

/** The same registry as the registry snapshot's models (what a poll of the MLflow stub gives). */
export function registeredModels(models: number, moved: boolean): RegisteredModel[] {
  return registryModels(models, moved).map((m) => ({
    name: m.name,
    description: '',
    tags: {},
    aliases: m.aliases,
    versions: m.versions.map((v) => ({ name: m.name, version: v.version, status: v.status, stage: 'None', aliases: [], tags: v.tags, source: '', runId: '', createdAt: 0, updatedAt: 0 })),
  }));
}

/** Writes a registry file (the format `flowgate render --registry` and `serve --registry` read). */
export function writeRegistryFile(file: string, models: readonly RegistryModel[]): void {
  writeFileSync(file, `${JSON.stringify({ models }, null, 1)}\n`);
}

/** The rate-limit policy: one model, `consumers` consumers, each with its own limit on that model. */
export function writeRateLimitPolicy(dir: string, consumers: number, limit: RateLimitSetting): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'gateway.yaml'), GATEWAY);
  writeFileSync(
    join(dir, 'chat.yaml'),
    ['kind: Model', 'name: chat', 'routes:', '  - listener: public', '    pathPrefix: /models/chat', 'upstream:', "  addressTemplate: '127.0.0.1:8001'", 'traffic:', "  stable: { version: '1' }", ''].join('\n'),
  );
  const docs: string[] = [];
  for (let i = 0; i < consumers; i++) {
    docs.push(['kind: Consumer', `name: consumer-${i}`, 'rateLimits:', `  - { requests: ${limit.requests}, per: ${limit.per}, model: chat${limit.algorithm ? `, algorithm: ${limit.algorithm}` : ''} }`, ''].join('\n'));
  }
  writeFileSync(join(dir, 'consumers.yaml'), docs.join('---\n'));
}

export interface RateLimitSetting {
  readonly requests: number;
  readonly per: 'second' | 'minute' | 'hour' | 'day';
  /** Flowgate's window algorithm (envoyproxy/ratelimit always counts fixed windows); absent: the policy default. */
  readonly algorithm?: 'fixed' | 'sliding' | undefined;
}

/**
 * The same limits as envoyproxy/ratelimit configuration: domain `flowgate`, descriptor model=chat then
 * consumer=<name>, one explicit entry per consumer (as the policy lists them).
 */
export function ratelimitConfig(consumers: number, limit: RateLimitSetting): string {
  const lines = ['domain: flowgate', 'descriptors:', '  - key: model', '    value: chat', '    descriptors:'];
  for (let i = 0; i < consumers; i++) {
    lines.push('      - key: consumer', `        value: consumer-${i}`, '        rate_limit:', `          unit: ${limit.per}`, `          requests_per_unit: ${limit.requests}`);
  }
  return `${lines.join('\n')}\n`;
}

/** ShouldRateLimit requests as Envoy sends them for Flowgate's routes: one descriptor (model, consumer). */
export function rateLimitRequests(consumers: number): object[] {
  return Array.from({ length: consumers }, (_, i) => ({
    domain: 'flowgate',
    descriptors: [{ entries: [{ key: 'model', value: 'chat' }, { key: 'consumer', value: `consumer-${i}` }] }],
    hits_addend: 1,
  }));
}
