import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { cliArgs } from '../harness/flowgate.js';
import { repoRoot } from '../harness/venv.js';

/**
 * Readers for the deployment files (docker-compose.yml, deploy/k8s/*.yaml, the Dockerfiles) and for what the
 * real CLI accepts, so deploy.test.ts can hold one against the other.
 */

export function repoPath(...parts: string[]): string {
  return join(repoRoot, ...parts);
}

export function readRepoFile(...parts: string[]): string {
  return readFileSync(repoPath(...parts), 'utf8');
}

/** Runs the CLI from source, as a user would run bin/flowgate. */
export function flowgate(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const [cmd, argv] = cliArgs(args);
  const r = spawnSync(cmd, argv, { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, MLFLOW_TRACKING_URI: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// ---- docker compose -------------------------------------------------------------------------------------

export interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile?: string };
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

export function loadCompose(): ComposeFile {
  const doc = YAML.parseDocument(readRepoFile('docker-compose.yml'));
  if (doc.errors.length > 0) throw new Error(`docker-compose.yml: ${doc.errors.map((e) => e.message).join('; ')}`);
  return doc.toJS() as ComposeFile;
}

/** The container side of a compose "HOST_IP:HOST:CONTAINER" / "HOST:CONTAINER" port mapping. */
export function containerPort(mapping: string): number {
  return Number(mapping.split(':').at(-1));
}

// ---- Kubernetes -----------------------------------------------------------------------------------------

export interface K8sContainer {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string }[];
  ports?: { name: string; containerPort: number }[];
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  volumeMounts?: { name: string; mountPath: string }[];
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  data?: Record<string, string>;
  spec?: {
    replicas?: number;
    type?: string;
    selector?: { matchLabels?: Record<string, string> } & Record<string, string>;
    ports?: { name: string; port: number; targetPort: string | number }[];
    template?: {
      metadata: { labels: Record<string, string> };
      spec: { containers: K8sContainer[]; volumes?: { name: string; configMap?: { name: string } }[] };
    };
  };
}

export const K8S_DIR = repoPath('deploy', 'k8s');

export function k8sFiles(): string[] {
  return readdirSync(K8S_DIR)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort();
}

/** Every document of every manifest, with the file it came from; throws on a YAML error. */
export function loadK8s(): { file: string; object: K8sObject }[] {
  const out: { file: string; object: K8sObject }[] = [];
  for (const file of k8sFiles()) {
    for (const doc of YAML.parseAllDocuments(readFileSync(join(K8S_DIR, file), 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`deploy/k8s/${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const object = doc.toJS() as K8sObject | null;
      if (object !== null) out.push({ file, object });
    }
  }
  return out;
}

export function k8sObject(objects: { object: K8sObject }[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.object.kind === kind && o.object.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in deploy/k8s/`);
  return found.object;
}

export function podContainers(o: K8sObject): K8sContainer[] {
  return o.spec?.template?.spec.containers ?? [];
}

export function envValue(c: K8sContainer, name: string): string {
  const v = c.env?.find((e) => e.name === name)?.value;
  if (v === undefined) throw new Error(`container ${c.name} has no ${name}`);
  return v;
}

export function namedPort(c: K8sContainer, name: string): number {
  const p = c.ports?.find((x) => x.name === name);
  if (!p) throw new Error(`container ${c.name} has no port named ${name}`);
  return p.containerPort;
}

// ---- the CLI's accepted options -------------------------------------------------------------------------

export interface CliSurface {
  /** Where the names came from: the command's own --help, or the allow-list for a command not built yet. */
  readonly source: 'help' | 'allow-list';
  /** Option names without --, and whether each takes a value. */
  readonly options: ReadonlyMap<string, { takesValue: boolean }>;
  /** Environment variable names the help mentions: every env var a manifest sets must be one of them. */
  readonly envVars: ReadonlySet<string>;
}

/** Parses `flowgate CMD --help`: option lines look like `  -o, --output FILE   ...` or `  --delta   ...`. */
export function parseHelp(text: string): CliSurface {
  const options = new Map<string, { takesValue: boolean }>();
  for (const line of text.split('\n')) {
    const m = /^\s+(?:-\w, )?--([a-z][a-z0-9-]*)( [A-Z][A-Z:_]*)?\s/.exec(line);
    if (m?.[1]) options.set(m[1], { takesValue: m[2] !== undefined });
  }
  const envVars = new Set(text.match(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g) ?? []);
  return { source: 'help', options, envVars };
}

/**
 * `flowgate filters` as specified for the filter service (gRPC on 18081, admin on 18091, policy over xDS,
 * counters in Redis). Used only while `flowgate filters --help` does not exist yet.
 */
export const FILTERS_ALLOW_LIST: CliSurface = {
  source: 'allow-list',
  options: new Map([
    ['listen', { takesValue: true }],
    ['admin-listen', { takesValue: true }],
    ['xds', { takesValue: true }],
    ['redis-url', { takesValue: true }],
    ['config', { takesValue: true }],
  ]),
  envVars: new Set(['FLOWGATE_FILTERS_LISTEN', 'FLOWGATE_FILTERS_ADMIN_LISTEN', 'FLOWGATE_XDS', 'FLOWGATE_REDIS_URL', 'FLOWGATE_CONFIG']),
};

const surfaces = new Map<string, CliSurface | undefined>();

/** What `flowgate CMD` accepts, from its --help; undefined when the command does not exist. */
export function cliSurface(command: string): CliSurface | undefined {
  if (!surfaces.has(command)) {
    const r = flowgate(command, '--help');
    surfaces.set(command, r.status === 0 ? parseHelp(r.stdout) : undefined);
  }
  return surfaces.get(command);
}

export interface Invocation {
  readonly subcommand: string;
  readonly options: Map<string, string | true>;
  readonly positionals: string[];
}

/** Splits `[subcommand, ...argv]` by the surface's options; throws naming any option it does not accept. */
export function parseInvocation(argv: readonly string[], surface: (command: string) => CliSurface | undefined): Invocation {
  const [subcommand, ...rest] = argv;
  if (subcommand === undefined) throw new Error('no subcommand');
  const accepted = surface(subcommand);
  if (!accepted) throw new Error(`flowgate has no "${subcommand}" command`);
  const options = new Map<string, string | true>();
  const positionals: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const token = rest[i] as string;
    if (!token.startsWith('-')) {
      positionals.push(token);
      continue;
    }
    const [flag, inline] = token.replace(/^--?/, '').split(/=(.*)/s, 2) as [string, string | undefined];
    const negated = flag.startsWith('no-') && accepted.options.get(flag.slice(3))?.takesValue === false;
    const spec = accepted.options.get(negated ? flag.slice(3) : flag);
    if (!spec) throw new Error(`flowgate ${subcommand} does not accept --${flag} (${accepted.source})`);
    if (!spec.takesValue) options.set(flag, true);
    else if (inline !== undefined) options.set(flag, inline);
    else {
      const value = rest[++i];
      if (value === undefined) throw new Error(`--${flag} needs a value`);
      options.set(flag, value);
    }
  }
  return { subcommand, options, positionals };
}

/** HOST:PORT, as the CLI splits it. */
export function splitHostPort(value: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(value);
  if (!m?.[1]) throw new Error(`not HOST:PORT: ${value}`);
  return { host: m[1], port: Number(m[2]) };
}

// ---- Dockerfiles and .dockerignore -----------------------------------------------------------------------

export interface DockerInstruction {
  readonly keyword: string;
  readonly args: string;
}

/** Instructions with line continuations joined and comments dropped. */
export function dockerInstructions(text: string): DockerInstruction[] {
  const joined = text.replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const [keyword = '', ...rest] = l.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}

/** Sources of COPY instructions that read the build context (not `--from=` another stage). */
export function contextCopySources(instructions: DockerInstruction[]): string[] {
  return instructions
    .filter((i) => i.keyword === 'COPY' && !/--from=/.test(i.args))
    .flatMap((i) => {
      const words = i.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      return words.slice(0, -1);
    });
}

/** Whether a context path is excluded by .dockerignore (plain paths and `*` globs, as this repo uses). */
export function dockerIgnored(path: string, patterns: readonly string[]): boolean {
  const clean = path.replace(/^\.\//, '').replace(/\/$/, '');
  return patterns.some((p) => {
    const re = new RegExp(`^${p.replace(/^\//, '').replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`);
    return re.test(clean);
  });
}

export function dockerignorePatterns(): string[] {
  return readRepoFile('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}
