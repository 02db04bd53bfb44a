import { defineConfig } from 'vitest/config';

// Tests run the real components (Envoy, MLflow, Redis) as child processes, so files run in forked workers
// and the worker count stays at the machine's two cores.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    maxWorkers: Number(process.env.FLOWGATE_TEST_WORKERS ?? 2),
    testTimeout: 60_000,
    hookTimeout: 180_000,
    teardownTimeout: 30_000,
    reporters: ['default'],
  },
});
