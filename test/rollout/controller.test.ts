import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { rolloutView } from '../../src/admin/rollouts.js';
import { buildGatewayIR } from '../../src/ir/build.js';
import type { GatewayIR, RolloutCommand } from '../../src/ir/types.js';
import { policyFromFiles } from '../../src/policy/load.js';
import { MlflowClient } from '../../src/registry/mlflow-client.js';
import { RegistryWriter } from '../../src/registry/writer.js';
import { nextCheckAt, startState } from '../../src/rollout/analyzer.js';
import { RolloutController } from '../../src/rollout/controller.js';
import { LocalLease } from '../../src/rollout/lease.js';
import { stateFromTags, stateTags, Tag } from '../../src/rollout/state.js';
import { RolloutTimeline } from '../../src/rollout/timeline.js';
import { TrafficWindows } from '../../src/traffic/windows.js';
import { startMlflow, type MlflowServer } from '../harness/mlflow.js';
import { waitFor } from '../harness/process.js';
import { plan } from './fixtures.js';

/**
 * The rollout controller's handling of manual commands, against a real MLflow: every command given is
 * either applied or acknowledged (its tag deleted), never left pending and never deleted unread. Each test
 * has its own model; the controller is ticked by hand, and its IR is rebuilt from MLflow before each tick.
 */

let mlflow: MlflowServer;
const stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  mlflow = await startMlflow({ name: 'mlflow-rollout-controller' });
});

afterAll(async () => {
  for (const stop of stops) await stop();
  await mlflow?.stop();
});

/** A model with versions 1 (champion) and 2 (challenger), under a Rollout; version 2 carries `tags`. */
async function rolloutOf(model: string, tags: Record<string, string>): Promise<void> {
  await mlflow.admin.createRegisteredModel(model);
  await mlflow.admin.createModelVersion({ name: model, source: `s3://models/${model}` });
  await mlflow.admin.createModelVersion({ name: model, source: `s3://models/${model}`, tags });
  await mlflow.admin.setAlias(model, 'champion', '1');
  await mlflow.admin.setAlias(model, 'challenger', '2');
}

/** A controller for `model` whose IR is MLflow as it is now; tick() runs one pass (skipped while one is in flight). */
function controllerFor(model: string, options: { writer?: RegistryWriter; now?: () => number } = {}): { tick(): Promise<GatewayIR> } {
  const writer = options.writer ?? new RegistryWriter({ trackingUri: mlflow.uri });
  const load = policyFromFiles('policy', [
    {
      file: `${model}.yaml`,
      text: `kind: Model\nname: ${model}\nupstream: { addressTemplate: "127.0.0.1:90{version}" }\ntraffic: { stable: { alias: champion } }\n---\nkind: Rollout\nmodel: ${model}\nsteps: [10, 50]\ninterval: 60s\n`,
    },
  ]);
  if (!load.ok) throw new Error(`policy: ${JSON.stringify(load.issues)}`);
  const client = new MlflowClient({ trackingUri: mlflow.uri });
  let ir: GatewayIR | undefined;
  const refresh = async (): Promise<void> => {
    ir = buildGatewayIR(load.policy, await client.fetchSnapshot([model])).ir;
  };
  const timeline = new RolloutTimeline();
  const controller = new RolloutController({ ir: () => ir, source: new TrafficWindows(), writer, lease: new LocalLease('controller-test'), timeline, refresh, now: options.now });
  stops.push(async () => {
    await controller.stop();
    timeline.close();
  });
  return {
    tick: async () => {
      await refresh();
      await controller.tickNow();
      return ir as GatewayIR;
    },
  };
}

const tagsOf = async (model: string, version: string): Promise<Readonly<Record<string, string>>> => (await mlflow.admin.getModelVersion(model, version)).tags;

describe('manual commands', () => {
  // The state a promotion leaves when its command was never acknowledged (the delete did not land, or the
  // lease ran out just before it), or when a command was given after the promotion had been decided.
  for (const command of ['promote', 'abort'] as const satisfies readonly RolloutCommand[]) {
    test(`${command} left pending on a succeeded rollout: acknowledged, although the promotion makes the rollout idle`, async () => {
      const model = `succeeded-${command}`;
      const succeeded = { ...startState(plan(), Date.now() - 5000, 1, '1'), phase: 'succeeded' as const, step: 1, weight: 100, reason: 'every step passed' };
      await rolloutOf(model, { ...stateTags(succeeded), [Tag.command]: command, [`${Tag.command}_by`]: 'the admin API' });
      const controller = controllerFor(model);

      // Once the stable alias points at the canary the rollout is idle: no tick looks at it any more.
      await waitFor('the promotion finished: champion moved to version 2', async () => {
        await controller.tick();
        return (await mlflow.admin.getModelVersion(model, '2')).aliases.includes('champion') ? true : undefined;
      }, { timeoutMs: 20_000 });
      const after = await controller.tick();
      expect(after.models[0]?.rollout?.idle).toMatch(/the canary is the stable version/);

      const tags = await tagsOf(model, '2');
      expect(tags[Tag.command]).toBeUndefined();
      expect(tags[`${Tag.command}_by`]).toBeUndefined();
      expect(tags[Tag.phase]).toBe('succeeded');
      expect(tags[Tag.promotedFrom]).toBe('1');
      const view = after.models[0] && rolloutView(after.models[0]);
      expect(view?.pendingCommand).toBeNull();
    }, 60_000);
  }

  test('a command given while another one is being applied is applied next, not deleted unread', async () => {
    const model = 'two-commands';
    const progressing = startState(plan(), Date.now() - 5000, 1, '1');
    await rolloutOf(model, { ...stateTags(progressing), [Tag.command]: 'pause', [`${Tag.command}_by`]: 'the admin API' });

    // The real writer, with a person's abort (written in the MLflow UI, by another client) landing while
    // the pause is being written: between the controller's read of the command and its acknowledgement.
    let interleaved = false;
    class WriterWithAPersonAlongside extends RegistryWriter {
      override async setVersionTag(name: string, version: string, key: string, value: string): Promise<void> {
        if (!interleaved && name === model && key === Tag.phase && value === 'paused') {
          interleaved = true;
          await mlflow.admin.setModelVersionTag(model, '2', Tag.command, 'abort');
        }
        await super.setVersionTag(name, version, key, value);
      }
    }
    const controller = controllerFor(model, { writer: new WriterWithAPersonAlongside({ trackingUri: mlflow.uri }) });

    const tags = await waitFor('the abort applied', async () => {
      await controller.tick();
      const t = await tagsOf(model, '2');
      return t[Tag.phase] === 'aborted' && t[Tag.command] === undefined ? t : undefined;
    }, { timeoutMs: 20_000, describe: () => `the pause was interleaved: ${String(interleaved)}` });
    expect(interleaved).toBe(true);
    expect(tags[Tag.weight]).toBe('0');
    expect(tags[Tag.reason]).toMatch(/^aborted by /);
  }, 60_000);
});

describe('step clock', () => {
  test('a step is timed from when its weight is written, not from when it was decided', async () => {
    const model = 'slow-writes';
    await rolloutOf(model, {});
    // The rollout's clock, which every write to MLflow moves on by WRITE_MS: an MLflow slowed down by the
    // writes of other rollouts queued before this one's.
    const WRITE_MS = 1000;
    const decidedAt = Date.parse('2026-01-01T00:00:00Z');
    let clock = decidedAt;
    let weightWrittenAt: number | undefined;
    class SlowWriter extends RegistryWriter {
      override async setVersionTag(name: string, version: string, key: string, value: string): Promise<void> {
        await super.setVersionTag(name, version, key, value);
        clock += WRITE_MS;
        if (name === model && key === Tag.weight) weightWrittenAt = clock;
      }
    }
    const controller = controllerFor(model, { writer: new SlowWriter({ trackingUri: mlflow.uri }), now: () => clock });

    const tags = await waitFor('the rollout started at its first weight', async () => {
      await controller.tick();
      const t = await tagsOf(model, '2');
      return t[Tag.weight] === '10' ? t : undefined;
    }, { timeoutMs: 20_000 });
    const plan = (await controller.tick()).models[0]?.rollout?.plan;
    expect(plan?.intervalMs).toBe(60_000);
    const state = stateFromTags(tags);
    expect(state?.updatedAt).toBe(decidedAt);
    expect(state?.startedAt).toBe(state?.stepStartedAt);
    // Stamped as the clock tags are written, just before the weight: three writes (both of them, then the
    // weight) before the weight has landed, where the decision's own time is ten writes before it.
    expect((weightWrittenAt ?? 0) - (state?.stepStartedAt ?? 0)).toBe(3 * WRITE_MS);
    // So the first check comes an interval after the weight landed, less those three writes.
    const firstCheck = nextCheckAt(plan as NonNullable<typeof plan>, state as NonNullable<typeof state>);
    expect(firstCheck - (weightWrittenAt ?? 0)).toBe(60_000 - 3 * WRITE_MS);
  }, 60_000);
});
