import { registrySnapshotFrom } from '../src/registry/snapshot.ts';
import { registeredModels } from './peers/fixtures.ts';
registrySnapshotFrom(registeredModels(1000, false));
const moved = registeredModels(1000, false).map((m, j) => (j === 0 ? { ...m, aliases: { ...m.aliases, challenger: '3' } } : m));
const c = process.cpuUsage();
registrySnapshotFrom(moved);
const d = process.cpuUsage(c);
process.stdout.write(`${((d.user + d.system) / 1000).toFixed(1)} `);
