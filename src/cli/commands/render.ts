import { formatIssues } from '../../policy/format.js';
import { loadPolicyDir } from '../../policy/load.js';
import { runPipeline } from '../../pipeline/index.js';
import { toEnvoyJson } from '../../proto/json.js';
import { CONFIG_SOURCE_MODES } from '../../resources/config-source.js';
import { TypeUrl } from '../../resources/types.js';
import { PROXYLESS_VARIANT, type SnapshotVariant } from '../../resources/variants.js';
import { PUSH_ORDER } from '../../xds/stream/ordering.js';
import { Snapshot } from '../../xds/snapshot.js';
import { UsageError, type Command } from '../command.js';
import { loadRegistryOnce, registryOptions } from '../registry-options.js';

const SECTION: Readonly<Record<TypeUrl, string>> = {
  [TypeUrl.Cluster]: 'clusters',
  [TypeUrl.ClusterLoadAssignment]: 'endpoints',
  [TypeUrl.Listener]: 'listeners',
  [TypeUrl.RouteConfiguration]: 'routes',
  [TypeUrl.FilterPolicy]: 'filterPolicy',
};

/** `flowgate render`: the resources a policy and registry produce, as JSON, for review. */
export const renderCommand: Command = {
  name: 'render',
  summary: 'Print the resources (clusters, endpoints, listeners, routes, filter policy) a policy and registry produce, as JSON, with the snapshot version `serve` publishes for them.',
  options: {
    policy: { type: 'string', description: 'the policy directory', env: 'FLOWGATE_POLICY', required: true, placeholder: 'DIR' },
    ...registryOptions(true),
    mode: { type: 'string', description: 'xDS mode of the Envoys: ads, grpc or delta-grpc; or proxyless for proxyless gRPC clients', default: 'ads', placeholder: 'MODE' },
  },
  notes: 'Example: flowgate render --policy examples/quickstart/policy --registry examples/quickstart/registry.json',
  async run(options) {
    const mode = String(options.mode) as SnapshotVariant;
    const proxyless = mode === PROXYLESS_VARIANT;
    if (!proxyless && !CONFIG_SOURCE_MODES.includes(mode)) throw new UsageError(`--mode must be one of ${[...CONFIG_SOURCE_MODES, PROXYLESS_VARIANT].join(', ')}`);
    const dir = String(options.policy);
    const load = await loadPolicyDir(dir);
    if (!load.ok) {
      process.stderr.write(`${formatIssues(load.issues, dir)}\n`);
      return 1;
    }
    const registry = await loadRegistryOnce(options);
    if (!registry) throw new UsageError('give --mlflow-uri or --registry');
    const { ir, issues, groups } = runPipeline({ policy: load.policy, registry }, proxyless ? { modes: [], proxyless: true } : { modes: [mode], proxyless: false });
    if (issues.length > 0) {
      process.stderr.write(`${formatIssues(issues, dir)}\n`);
      return 1;
    }
    for (const a of ir.alerts) process.stderr.write(`warning: model ${a.model}: ${a.message}\n`);
    const snapshot = Snapshot.from(groups[0]?.resources ?? []);
    const out: Record<string, unknown> = { version: snapshot.version };
    for (const typeUrl of PUSH_ORDER) {
      out[SECTION[typeUrl]] = [...snapshot.resources(typeUrl).values()].map((r) => {
        const json = toEnvoyJson(typeUrl, r.body);
        // The filter policy travels as JSON text; a reviewer reads it as a document.
        return typeUrl === TypeUrl.FilterPolicy ? { ...json, policy_json: JSON.parse(String(json.policy_json)) as unknown } : json;
      });
    }
    out.live = Object.fromEntries(ir.models.map((m) => [m.name, m.live.map((l) => ({ version: l.version, weight: l.weight, role: l.role, aliases: l.aliases }))]));
    // Which prompt version each model renders into its chat requests (the registry alias resolved now).
    const prompts = ir.models.flatMap((m) => {
      const p = m.llm?.prompt;
      if (!p || (!p.template && p.unavailable === undefined)) return [];
      const t = p.template;
      return [[m.name, t ? { prompt: t.name, version: t.version, ...(t.alias !== undefined && { alias: t.alias }) } : { unavailable: p.unavailable }] as const];
    });
    if (prompts.length > 0) out.prompts = Object.fromEntries(prompts);
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    for (const [model, p] of prompts) process.stderr.write(`prompt: model ${model}: ${'prompt' in p ? `${p.prompt}/${p.version}${p.alias !== undefined ? ` (alias ${p.alias})` : ''}` : `unavailable: ${p.unavailable ?? ''}`}\n`);
    return 0;
  },
};
