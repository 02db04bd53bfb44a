import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import YAML from 'yaml';
import { DEFAULTS } from '../../src/cli/defaults.js';
import { cliSurface, envValue, k8sObject, loadCompose, loadK8s, parseInvocation, podContainers, readRepoFile, repoPath, splitHostPort, type K8sContainer, type K8sObject } from './files.js';

/**
 * The deployment files are secure as shipped (security item 7): every internal gRPC port is mutual TLS, the
 * certificates they name exist (compose: made by deploy/compose/make-certs.sh; Kubernetes: cert-manager
 * Certificates whose Secrets the pods mount) and carry the names clients verify, Envoy's admin interface is on
 * loopback only, and the network keeps the model servers (and anyone else) away from the internal ports:
 * compose networks, Kubernetes NetworkPolicies. Checked against the files; no Docker or Kubernetes is needed.
 */

const compose = loadCompose();
const k8s = loadK8s();
const services = compose.services as Record<string, (typeof compose.services)[string] & { networks?: string[] }>;
const surfaces = new Map<string, ReturnType<typeof cliSurface>>();
const surface = (command: string): ReturnType<typeof cliSurface> => {
  if (!surfaces.has(command)) surfaces.set(command, cliSurface(command));
  return surfaces.get(command);
};
const invocation = (service: string) => parseInvocation(services[service]?.command ?? [], surface);
const option = (service: string, name: string): string => String(invocation(service).options.get(name) ?? '');
const volumeFor = (service: string, path: string): string | undefined =>
  services[service]?.volumes?.map((v) => v.split(':')).find(([, inside]) => inside !== undefined && path.startsWith(`${inside}/`))?.[0];

describe('docker compose', () => {
  let certs: string;
  beforeAll(() => {
    certs = join(mkdtempSync(join(tmpdir(), 'flowgate-deploy-certs-')), 'certs');
    const r = spawnSync('bash', [repoPath('deploy/compose/make-certs.sh'), certs], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });

  /** The subjectAltName and extended key usage openssl reads from a made certificate. */
  const certificate = (file: string): string => {
    const r = spawnSync('openssl', ['x509', '-in', join(certs, file), '-noout', '-ext', 'subjectAltName,extendedKeyUsage'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  };

  test('xDS and the filter service listen on all interfaces only with mutual TLS', () => {
    expect(splitHostPort(option('control-plane', 'xds-listen')).host).toBe('0.0.0.0');
    for (const name of ['xds-tls-cert', 'xds-tls-key', 'xds-tls-client-ca']) expect(option('control-plane', name), name).toMatch(/^\/certs\//);
    expect(splitHostPort(option('filters', 'listen')).host).toBe('0.0.0.0');
    for (const name of ['tls-cert', 'tls-key', 'tls-client-ca', 'xds-tls-ca', 'xds-tls-cert', 'xds-tls-key']) expect(option('filters', name), name).toMatch(/^\/certs\//);
  });

  test('every certificate path is in the mounted certs directory, which make-certs.sh fills', () => {
    const paths: [string, string][] = [
      ...['xds-tls-cert', 'xds-tls-key', 'xds-tls-client-ca'].map((o): [string, string] => ['control-plane', option('control-plane', o)]),
      ...['tls-cert', 'tls-key', 'tls-client-ca', 'xds-tls-ca', 'xds-tls-cert', 'xds-tls-key'].map((o): [string, string] => ['filters', option('filters', o)]),
    ];
    const bootstrap = readRepoFile('deploy/compose/envoy.yaml');
    const gateway = YAML.parse(readRepoFile('deploy/compose/policy/gateway.yaml')) as { filterService: { address: string; tls: { ca: string; cert: string; key: string; sni: string } } };
    for (const p of [...bootstrap.matchAll(/filename: (\S+)/g)].map((m) => m[1] as string)) paths.push(['envoy', p]);
    for (const p of [gateway.filterService.tls.ca, gateway.filterService.tls.cert, gateway.filterService.tls.key]) paths.push(['envoy', p]);
    expect(paths.filter(([s]) => s === 'envoy').length).toBe(6);
    for (const [service, path] of paths) {
      expect(volumeFor(service, path), `${service}: ${path}`).toBe('./deploy/compose/certs');
      expect(existsSync(join(certs, path.split('/').at(-1) as string)), `${service}: ${path}`).toBe(true);
    }
    expect(existsSync(repoPath('deploy/compose/certs/README.md'))).toBe(true);
  });

  test('the certificates carry the names the clients verify, and the usages they are used for', () => {
    expect(certificate('control-plane.crt')).toMatch(/DNS:control-plane\b/);
    expect(splitHostPort(option('filters', 'xds')).host).toBe('control-plane');
    expect(readRepoFile('deploy/compose/envoy.yaml')).toMatch(/sni: control-plane\n/);
    const filters = certificate('filters.crt');
    expect(filters).toMatch(/DNS:filters\b/);
    expect(filters).toMatch(/TLS Web Server Authentication/);
    expect(filters).toMatch(/TLS Web Client Authentication/);
    const gateway = YAML.parse(readRepoFile('deploy/compose/policy/gateway.yaml')) as { filterService: { address: string; tls: { sni: string } } };
    expect(gateway.filterService.tls.sni).toBe(gateway.filterService.address);
    expect(certificate('envoy.crt')).toMatch(/TLS Web Client Authentication/);
    // The CA key is never in the mounted directory.
    expect(existsSync(join(certs, 'ca.key'))).toBe(false);
  });

  test('the model servers share no network with the control plane, the filter service or Redis', () => {
    const nets = (s: string): string[] => services[s]?.networks ?? ['default'];
    for (const model of ['demo-v1', 'demo-v2']) {
      for (const internal of ['control-plane', 'filters', 'redis']) expect(nets(model).filter((n) => nets(internal).includes(n)), `${model} / ${internal}`).toEqual([]);
      expect(nets(model).some((n) => nets('envoy').includes(n))).toBe(true);
    }
    expect(nets('redis').every((n) => nets('filters').includes(n))).toBe(true);
  });

  test('Envoy publishes its public and probe listeners, never the admin port', () => {
    expect(services.envoy?.ports?.some((p) => p.endsWith(`:${DEFAULTS.envoyAdminPort}`))).toBe(false);
    expect(readRepoFile('deploy/compose/envoy.yaml')).toMatch(/admin:\n {2}address:\n {4}socket_address:\n {6}address: 127\.0\.0\.1\n/);
  });

  test('the policy allows model versions only at the compose model servers', () => {
    const gateway = YAML.parse(readRepoFile('deploy/compose/policy/gateway.yaml')) as { upstreams: { allow: string[] } };
    const servers = ['demo-v1', 'demo-v2'].map((s) => {
      const cmd = services[s]?.command ?? [];
      return `${s}:${cmd[cmd.indexOf('-p') + 1]}`;
    });
    expect(gateway.upstreams.allow.sort()).toEqual(servers.sort());
  });
});

describe('Kubernetes', () => {
  const certificates = k8s.filter(({ object }) => object.kind === 'Certificate').map(({ object }) => object as K8sObject & { spec: { secretName: string; dnsNames?: string[]; usages?: string[]; issuerRef: { name: string } } });
  const policies = k8s.filter(({ object }) => object.kind === 'NetworkPolicy').map(({ object }) => object as unknown as NetworkPolicy);
  const container = (deployment: string): K8sContainer => podContainers(k8sObject(k8s, 'Deployment', deployment))[0] as K8sContainer;
  const secretMount = (deployment: string, path: string): { secretName: string } | undefined => {
    const d = k8sObject(k8s, 'Deployment', deployment);
    const mount = container(deployment).volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`));
    const volumes = (d.spec?.template?.spec.volumes ?? []) as { name: string; secret?: { secretName: string } }[];
    return volumes.find((v) => v.name === mount?.name)?.secret;
  };
  const certificateOf = (deployment: string, path: string) => certificates.find((c) => c.spec.secretName === secretMount(deployment, path)?.secretName);

  test('each flowgate gRPC port is mutual TLS, from a mounted Secret that a cert-manager Certificate issues', () => {
    const cp = 'flowgate-control-plane';
    const env = (d: string, n: string): string => envValue(container(d), n);
    for (const n of ['FLOWGATE_XDS_TLS_CERT', 'FLOWGATE_XDS_TLS_KEY', 'FLOWGATE_XDS_TLS_CLIENT_CA']) expect(certificateOf(cp, env(cp, n)), n).toBeDefined();
    const f = 'flowgate-filters';
    for (const n of ['FLOWGATE_FILTERS_TLS_CERT', 'FLOWGATE_FILTERS_TLS_KEY', 'FLOWGATE_FILTERS_TLS_CLIENT_CA', 'FLOWGATE_XDS_TLS_CA', 'FLOWGATE_XDS_TLS_CERT', 'FLOWGATE_XDS_TLS_KEY']) {
      expect(certificateOf(f, env(f, n)), n).toBeDefined();
    }
    // The names clients dial are in the certificates they verify.
    expect(certificateOf(cp, env(cp, 'FLOWGATE_XDS_TLS_CERT'))?.spec.dnsNames).toContain(splitHostPort(env(f, 'FLOWGATE_XDS')).host);
    const gateway = YAML.parse(k8sObject(k8s, 'ConfigMap', 'flowgate-policy').data?.['gateway.yaml'] ?? '') as { filterService: { address: string; tls: { ca: string; cert: string; key: string; sni: string } } };
    expect(certificateOf(f, env(f, 'FLOWGATE_FILTERS_TLS_CERT'))?.spec.dnsNames).toContain(gateway.filterService.tls.sni);
    expect(certificateOf(f, env(f, 'FLOWGATE_FILTERS_TLS_CERT'))?.spec.usages).toEqual(expect.arrayContaining(['server auth', 'client auth']));
    // Envoy's files (bootstrap and policy) are in its own Secret.
    const bootstrap = k8sObject(k8s, 'ConfigMap', 'flowgate-envoy-bootstrap').data?.['envoy.yaml'] ?? '';
    const envoyFiles = [...bootstrap.matchAll(/filename: (\S+)/g)].map((m) => m[1] as string);
    envoyFiles.push(gateway.filterService.tls.ca, gateway.filterService.tls.cert, gateway.filterService.tls.key);
    expect(envoyFiles.length).toBe(6);
    for (const p of envoyFiles) expect(certificateOf('flowgate-envoy', p)?.spec.usages, p).toContain('client auth');
    expect(bootstrap).toContain(`sni: ${splitHostPort(env(f, 'FLOWGATE_XDS')).host}`);
    // Every Certificate comes from the namespace's CA Issuer, itself a cert-manager Certificate.
    const ca = certificates.find((c) => c.metadata.name === 'flowgate-ca');
    expect(ca).toBeDefined();
    for (const c of certificates.filter((x) => x !== ca)) expect(c.spec.issuerRef.name).toBe('flowgate-ca');
  });

  test('Envoy admin is on loopback; the kubelet probes the health listener', () => {
    const bootstrap = YAML.parse(k8sObject(k8s, 'ConfigMap', 'flowgate-envoy-bootstrap').data?.['envoy.yaml'] ?? '') as { admin: { address: { socket_address: { address: string } } } };
    expect(bootstrap.admin.address.socket_address.address).toBe('127.0.0.1');
    const envoy = container('flowgate-envoy');
    expect(envoy.readinessProbe?.httpGet).toEqual({ path: '/ready', port: 'health' });
    expect(envoy.ports?.find((p) => p.name === 'health')?.containerPort).toBe(DEFAULTS.envoyHealthPort);
  });

  interface NetworkPolicy {
    metadata: { name: string };
    spec: {
      podSelector: { matchLabels?: Record<string, string> };
      policyTypes: string[];
      ingress?: { from?: { podSelector?: { matchLabels: Record<string, string> }; namespaceSelector?: unknown }[]; ports?: { port: number }[] }[];
    };
  }
  /** The app names allowed to reach `app` on `port` ('*' for anyone, 'namespace' for a namespace selector). */
  const allowed = (app: string, port: number): string[] => {
    const own = policies.filter((p) => p.spec.podSelector.matchLabels?.['app.kubernetes.io/name'] === app);
    return own.flatMap((p) =>
      (p.spec.ingress ?? [])
        .filter((rule) => rule.ports?.some((x) => x.port === port))
        .flatMap((rule) => (rule.from ? rule.from.map((f) => f.podSelector?.matchLabels['app.kubernetes.io/name'] ?? 'namespace') : ['*'])),
    );
  };

  test('NetworkPolicies: deny by default; internal ports open only to the workloads that use them', () => {
    const deny = policies.find((p) => Object.keys(p.spec.podSelector).length === 0 || Object.keys(p.spec.podSelector.matchLabels ?? {}).length === 0);
    expect(deny?.spec.policyTypes).toContain('Ingress');
    expect(deny?.spec.ingress ?? []).toEqual([]);
    expect(allowed('flowgate-control-plane', DEFAULTS.xdsPort).sort()).toEqual(['flowgate-envoy', 'flowgate-filters']);
    expect(allowed('flowgate-filters', DEFAULTS.filtersPort)).toEqual(['flowgate-envoy']);
    expect(allowed('flowgate-redis', 6379)).toEqual(['flowgate-filters']);
    expect(allowed('flowgate-envoy', DEFAULTS.listenerPort)).toEqual(['*']);
    expect(allowed('flowgate-control-plane', DEFAULTS.adminPort)).toEqual(['namespace']);
    expect(allowed('flowgate-envoy', DEFAULTS.envoyAdminPort)).toEqual([]);
    // Every Deployment is selected by a policy of its own.
    for (const { object } of k8s.filter(({ object: o }) => o.kind === 'Deployment')) {
      expect(policies.some((p) => p.spec.podSelector.matchLabels?.['app.kubernetes.io/name'] === object.metadata.name), object.metadata.name).toBe(true);
    }
  });

  test('the policy allows model versions only in the models namespace', () => {
    const gateway = YAML.parse(k8sObject(k8s, 'ConfigMap', 'flowgate-policy').data?.['gateway.yaml'] ?? '') as { upstreams: { allow: string[] } };
    expect(gateway.upstreams.allow).toEqual(['*.models.svc', '*.models.svc.cluster.local']);
  });
});
