import { runCommand } from './command.js';
import { filtersCommand } from './commands/filters.js';

/**
 * `flowgate filters` on its own entry point (bin/flowgate starts it for that command): the filter service
 * process then loads the filter service and its command only, not the control plane's other commands
 * (serve, render, rollout...) and their modules, which main.ts imports for its help.
 */
const [name, ...args] = process.argv.slice(2);
process.exitCode = name === filtersCommand.name ? await runCommand(filtersCommand, args) : 2;
if (name !== filtersCommand.name) process.stderr.write(`flowgate: this entry point runs \`${filtersCommand.name}\` only (got ${name ?? 'nothing'})\n`);
