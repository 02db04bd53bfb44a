import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { parseRedisUrl } from '../redis/url.js';
import { errorMessage } from '../errors.js';

/**
 * The CLI's command model: each command declares its options once, and a value comes from (first wins)
 * the command line, the option's environment variable, the config file (`--config FILE`, YAML, keys are
 * the option names), or the default. `--help` is generated from the same declaration.
 */

export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly description: string;
  readonly env?: string;
  readonly default?: string | boolean;
  readonly short?: string;
  /** Shown in help, e.g. HOST:PORT. */
  readonly placeholder?: string;
  readonly required?: boolean;
}

export type OptionValues = Record<string, string | boolean | undefined>;

export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Positional arguments, for the usage line, e.g. "DIR". */
  readonly args?: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  /** Paragraphs after the options in --help. */
  readonly notes?: string;
  run(options: OptionValues, positionals: string[]): Promise<number>;
}

/** A person-readable usage error: printed with the command's usage, exit code 2. */
export class UsageError extends Error {}

const CONFIG_OPTION: OptionSpec = {
  type: 'string',
  description: 'YAML file of option values (keys are option names without --)',
  env: 'FLOWGATE_CONFIG',
  placeholder: 'FILE',
};

/** Parses argv for a command: flags, then environment, then config file, then defaults. */
export function resolveOptions(command: Command, argv: string[], env: NodeJS.ProcessEnv = process.env): { values: OptionValues; positionals: string[]; help: boolean } {
  const specs: Record<string, OptionSpec> = { ...command.options, config: CONFIG_OPTION };
  const parsed = parseArgs({
    args: argv,
    allowPositionals: true,
    allowNegative: true,
    strict: true,
    options: {
      ...Object.fromEntries(Object.entries(specs).map(([name, s]) => [name, { type: s.type, ...(s.short ? { short: s.short } : {}) }])),
      help: { type: 'boolean', short: 'h' },
    },
  });
  const flags = parsed.values as Record<string, string | boolean | undefined>;
  const configPath = (flags.config as string | undefined) ?? env.FLOWGATE_CONFIG;
  const fromFile = configPath ? readConfigFile(configPath, specs) : {};
  const values: OptionValues = {};
  for (const [name, spec] of Object.entries(specs)) {
    const fromEnv = spec.env !== undefined ? env[spec.env] : undefined;
    values[name] =
      flags[name] ??
      (fromEnv !== undefined ? (spec.type === 'boolean' ? /^(1|true|yes|on)$/i.test(fromEnv) : fromEnv) : undefined) ??
      fromFile[name] ??
      spec.default;
  }
  const help = flags.help === true;
  if (!help) {
    for (const [name, spec] of Object.entries(specs)) {
      if (spec.required && (values[name] === undefined || values[name] === '')) throw new UsageError(`--${name} is required`);
    }
  }
  return { values, positionals: parsed.positionals, help };
}

function readConfigFile(path: string, specs: Record<string, OptionSpec>): OptionValues {
  let doc: unknown;
  try {
    doc = YAML.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`cannot read config file ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new UsageError(`${path}: expected a mapping of option names to values`);
  const out: OptionValues = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const spec = specs[key];
    if (!spec) throw new UsageError(`${path}: unknown option "${key}"`);
    if (spec.type === 'boolean' && typeof value !== 'boolean') throw new UsageError(`${path}: ${key} must be true or false`);
    out[key] = spec.type === 'boolean' ? (value as boolean) : String(value);
  }
  return out;
}

/** The --help text of a command. */
export function commandHelp(command: Command): string {
  const specs: Record<string, OptionSpec> = { ...command.options, config: CONFIG_OPTION };
  const lines = [`Usage: flowgate ${command.name} [options]${command.args ? ' ' + command.args : ''}`, '', command.summary, '', 'Options:'];
  const rows = Object.entries(specs).map(([name, s]) => {
    const flag = `${s.short ? `-${s.short}, ` : ''}--${name}${s.type === 'string' ? ` ${s.placeholder ?? 'VALUE'}` : ''}`;
    const extra = [
      s.required ? 'required' : '',
      s.default !== undefined && s.default !== false ? `default ${String(s.default)}` : '',
      s.env ? `env ${s.env}` : '',
    ].filter(Boolean);
    return [flag, `${s.description}${extra.length ? ` (${extra.join('; ')})` : ''}`] as const;
  });
  rows.push(['-h, --help', 'show this help']);
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  for (const [flag, text] of rows) lines.push(`  ${flag.padEnd(width)}${text}`);
  if (command.notes) lines.push('', command.notes);
  return lines.join('\n') + '\n';
}

/** Splits HOST:PORT (IPv6 in brackets allowed). */
export function hostPort(value: string, what: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port < 1 || port > 65535) throw new UsageError(`${what} must be HOST:PORT, got "${value}"`);
  return { host: m[1], port };
}

/** A --redis-url value (src/redis/client.ts forms), checked before anything connects; empty or absent: none. */
export function redisUrlOption(value: unknown, what: string): string | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  try {
    parseRedisUrl(value);
  } catch (err) {
    throw new UsageError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return value;
}

/** Runs one command with its arguments (after the command name): its exit code; usage errors print its help. */
export async function runCommand(command: Command, args: string[]): Promise<number> {
  try {
    const { values, positionals, help } = resolveOptions(command, args);
    if (help) {
      process.stdout.write(commandHelp(command));
      return 0;
    }
    return await command.run(values, positionals);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`flowgate ${command.name}: ${errorMessage(err)}\n\n${commandHelp(command)}`);
      return 2;
    }
    process.stderr.write(`flowgate ${command.name}: ${errorMessage(err)}\n`);
    return 1;
  }
}
