import { availableParallelism } from 'node:os';
import { expect, test } from 'vitest';
import { UsageError } from '../../../src/cli/command.js';
import { workersOption } from '../../../src/cli/commands/filters.js';
import { GRPC_SERVER_OPTIONS } from '../../../filters/service/server.js';

test('--workers defaults to 1; auto is one per core', () => {
  expect(workersOption(undefined, true)).toBe(1);
  expect(workersOption(undefined, false)).toBe(1);
  expect(workersOption('auto', true)).toBe(availableParallelism());
  expect(workersOption('3', true)).toBe(3);
  expect(workersOption('1', false)).toBe(1);
});

test('--workers above 1 without Redis, or not a whole number from 1 to 64, is refused', () => {
  expect(() => workersOption('2', false)).toThrow(UsageError);
  expect(() => workersOption('2', false)).toThrow(/--redis-url/);
  for (const bad of ['0', '-1', '1.5', 'two', '65']) expect(() => workersOption(bad, true)).toThrow(UsageError);
});

test('the gRPC server tracks no channelz data and bounds streams per connection', () => {
  expect(GRPC_SERVER_OPTIONS['grpc.enable_channelz']).toBe(0);
  expect(GRPC_SERVER_OPTIONS['grpc.max_concurrent_streams']).toBeGreaterThan(0);
});
