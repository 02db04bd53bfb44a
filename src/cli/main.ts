import { runCommand, type Command } from './command.js';

/**
 * flowgate: the one CLI. `flowgate COMMAND --help` describes each command.
 *
 * Each command's module is imported only when that command runs (or when the command list is printed):
 * `flowgate serve` then loads the control plane and not, say, the filter service that `flowgate filters`
 * options name, which is memory the control plane would hold for its whole life.
 */

const COMMANDS: readonly (readonly [string, () => Promise<Command>])[] = [
  ['serve', async () => (await import('./commands/serve.js')).serveCommand],
  ['filters', async () => (await import('./commands/filters.js')).filtersCommand],
  ['validate', async () => (await import('./commands/validate.js')).validateCommand],
  ['render', async () => (await import('./commands/render.js')).renderCommand],
  ['status', async () => (await import('./commands/status.js')).statusCommand],
  ['rollout', async () => (await import('./commands/rollout.js')).rolloutCommand],
  ['bootstrap', async () => (await import('./commands/bootstrap.js')).bootstrapCommand],
  ['webhooks', async () => (await import('./commands/webhooks.js')).webhooksCommand],
];

async function usage(): Promise<string> {
  const commands = await Promise.all(COMMANDS.map(([, load]) => load()));
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  return [
    'Usage: flowgate COMMAND [options]',
    '',
    'Flowgate: an Envoy control plane for models in the MLflow Model Registry.',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'Run `flowgate COMMAND --help` for a command\'s options.',
    '',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(await usage());
    return name ? 0 : 2;
  }
  const load = COMMANDS.find(([n]) => n === name)?.[1];
  if (!load) {
    process.stderr.write(`flowgate: unknown command "${name}"\n\n${await usage()}`);
    return 2;
  }
  const command = await load();
  if (command.name !== name) throw new Error(`flowgate: the ${name} module exports the ${command.name} command`);
  return runCommand(command, rest);
}

process.exitCode = await main(process.argv.slice(2));
