import { runCommand, type Command } from './command.js';
import { bootstrapCommand } from './commands/bootstrap.js';
import { filtersCommand } from './commands/filters.js';
import { statusCommand } from './commands/status.js';
import { rolloutCommand } from './commands/rollout.js';
import { renderCommand } from './commands/render.js';
import { serveCommand } from './commands/serve.js';
import { validateCommand } from './commands/validate.js';
import { webhooksCommand } from './commands/webhooks.js';

/**
 * flowgate: the one CLI. `flowgate COMMAND --help` describes each command.
 */

const COMMANDS: readonly Command[] = [serveCommand, filtersCommand, validateCommand, renderCommand, statusCommand, rolloutCommand, bootstrapCommand, webhooksCommand];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'Usage: flowgate COMMAND [options]',
    '',
    'Flowgate: an Envoy control plane for models in the MLflow Model Registry.',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'Run `flowgate COMMAND --help` for a command\'s options.',
    '',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`flowgate: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return runCommand(command, rest);
}

process.exitCode = await main(process.argv.slice(2));
