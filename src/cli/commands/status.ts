import { FlowgateError } from '../../errors.js';
import { fetchFleetStatus, formatFleetStatus } from '../../status/report.js';
import type { Command } from '../command.js';
import { DEFAULTS } from '../defaults.js';

/** `flowgate status`: the connected Envoys and the models' live versions, from a control plane's admin API. */
export const statusCommand: Command = {
  name: 'status',
  summary: 'Show the connected Envoys (acknowledged and rejected versions per type) and each model\'s live versions and weights.',
  options: {
    admin: {
      type: 'string',
      description: 'the control plane admin endpoint',
      env: 'FLOWGATE_ADMIN_URL',
      default: `http://127.0.0.1:${DEFAULTS.adminPort}`,
      placeholder: 'URL',
    },
    json: { type: 'boolean', description: 'print {admin, nodes, ir} as JSON instead of tables', default: false },
  },
  notes: 'Reads /debug/nodes and /debug/ir; exits 1 when the admin endpoint cannot be reached.',
  async run(options) {
    const admin = String(options.admin);
    try {
      const status = await fetchFleetStatus(admin);
      process.stdout.write(options.json === true ? `${JSON.stringify(status, null, 2)}\n` : formatFleetStatus(status));
      return 0;
    } catch (err) {
      if (!(err instanceof FlowgateError)) throw err;
      process.stderr.write(`flowgate status: ${err.toString()}\n`);
      return 1;
    }
  },
};
