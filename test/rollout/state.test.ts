import { describe, expect, test } from 'vitest';
import { servedWeight, stateFromTags, stateTags, Tag, writeOrder } from '../../src/rollout/state.js';
import { state } from './fixtures.js';

describe('rollout state in MLflow tags', () => {
  test('tags round-trip to the same state (times at ms precision)', () => {
    const s = state({ phase: 'paused', step: 2, weight: 25, failedChecks: 1, inconclusiveChecks: 3, generation: 42, checkedAt: 1_000_500, reason: 'paused by hand', stableVersion: '7' });
    const tags = stateTags(s);
    expect(tags[Tag.weight]).toBe('25');
    expect(tags[Tag.startedAt]).toBe('1970-01-01T00:16:40.000Z');
    expect(stateFromTags(tags)).toEqual(s);
  });

  test('a version without a phase tag has no rollout state', () => {
    expect(stateFromTags({ 'flowgate.address': '127.0.0.1:1' })).toBeUndefined();
  });

  test('tags edited into nonsense read as paused at weight 0, with a reason saying so', () => {
    const s = stateFromTags({ [Tag.phase]: 'progressing', [Tag.weight]: 'lots' });
    expect(s).toMatchObject({ phase: 'paused', weight: 0 });
    expect(s?.reason).toContain('unreadable rollout tags');
    expect(stateFromTags({ [Tag.phase]: 'sideways', [Tag.weight]: '50' })?.phase).toBe('paused');
    expect(stateFromTags({ [Tag.phase]: 'progressing', [Tag.weight]: '101' })?.weight).toBe(0);
  });

  test('a pending command is read from its tag', () => {
    expect(stateFromTags({ ...stateTags(state()), [Tag.command]: ' pause ' })?.command).toBe('pause');
    expect(stateFromTags({ ...stateTags(state()), [Tag.command]: 'explode' })?.command).toBeUndefined();
  });

  test('the served weight follows the phase first, so a half-written state is safe', () => {
    expect(servedWeight(undefined)).toBe(0);
    expect(servedWeight(state({ weight: 30 }))).toBe(30);
    expect(servedWeight(state({ phase: 'paused', weight: 30 }))).toBe(30);
    expect(servedWeight(state({ phase: 'failed', weight: 30 }))).toBe(0);
    expect(servedWeight(state({ phase: 'aborted', weight: 30 }))).toBe(0);
    expect(servedWeight(state({ phase: 'succeeded', weight: 30 }))).toBe(100);
  });

  test('writes go generation, phase, the rest, the step clock, and the weight last', () => {
    expect(writeOrder([Tag.weight, Tag.stepStartedAt, Tag.reason, Tag.phase, Tag.startedAt, Tag.step, Tag.updatedAt, Tag.generation])).toEqual([
      Tag.generation,
      Tag.phase,
      Tag.reason,
      Tag.step,
      Tag.updatedAt,
      Tag.startedAt,
      Tag.stepStartedAt,
      Tag.weight,
    ]);
  });
});
