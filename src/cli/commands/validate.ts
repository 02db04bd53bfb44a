import { runPipeline } from '../../pipeline/index.js';
import { formatIssues } from '../../policy/format.js';
import { loadPolicyDir } from '../../policy/load.js';
import { Snapshot } from '../../xds/snapshot.js';
import { UsageError, type Command } from '../command.js';
import { registryOptions, loadRegistryOnce } from '../registry-options.js';

/** `flowgate validate DIR`: checks a policy directory as the control plane would, without serving it. */
export const validateCommand: Command = {
  name: 'validate',
  summary: 'Check a policy directory; print file:line:col: message for each problem and exit 1 if there are any.',
  args: 'DIR',
  options: { ...registryOptions(false) },
  notes: [
    'Without a registry it checks syntax, schema and references between documents. With --mlflow-uri or',
    '--registry it also checks that every registered model exists and builds the Envoy resources.',
  ].join('\n'),
  async run(options, positionals) {
    const [dir, ...extra] = positionals;
    if (!dir || extra.length > 0) throw new UsageError('give exactly one policy directory');
    const load = await loadPolicyDir(dir);
    if (!load.ok) {
      process.stdout.write(`${formatIssues(load.issues, dir)}\n`);
      process.stderr.write(`${dir}: ${load.issues.length} problem${load.issues.length === 1 ? '' : 's'}; not valid\n`);
      return 1;
    }
    const registry = await loadRegistryOnce(options);
    if (registry) {
      const { ir, issues, groups } = runPipeline({ policy: load.policy, registry });
      if (issues.length > 0) {
        process.stdout.write(`${formatIssues(issues, dir)}\n`);
        process.stderr.write(`${dir}: ${issues.length} problem${issues.length === 1 ? '' : 's'}; not valid\n`);
        return 1;
      }
      for (const g of groups) Snapshot.from(g.resources);
      for (const a of ir.alerts) process.stderr.write(`warning: model ${a.model}: ${a.message}\n`);
    }
    const { models, consumers, files } = load.policy;
    process.stderr.write(`${dir}: valid (${files.length} files, ${models.size} models, ${consumers.size} consumers)\n`);
    return 0;
  },
};
