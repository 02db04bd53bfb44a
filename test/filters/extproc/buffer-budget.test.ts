import { describe, expect, it } from 'vitest';
import { BufferBudget, STREAM_ENTRY_BYTES } from '../../../filters/extproc/buffer-budget.js';
import { bufferedBytesOption } from '../../../src/cli/server-options.js';
import { counterValue } from '../ratelimit/fixtures.js';

describe('BufferBudget', () => {
  it('reserves an entry per exchange and refuses (counted) one that finds no room', async () => {
    const budget = new BufferBudget(3 * STREAM_ENTRY_BYTES);
    const before = await counterValue('flowgate_filter_buffer_refusals_total', { phase: 'open' });
    const shares = [budget.open(), budget.open(), budget.open()];
    expect(shares.every((s) => s !== undefined)).toBe(true);
    expect(budget.usedBytes).toBe(3 * STREAM_ENTRY_BYTES);
    expect(budget.open()).toBeUndefined();
    expect(await counterValue('flowgate_filter_buffer_refusals_total', { phase: 'open' })).toBe(before + 1);
    shares[0]?.release();
    expect(budget.open()).toBeDefined();
  });

  it('grows and shrinks a share by part, never past the cap, and gives everything back once', () => {
    const budget = new BufferBudget(100_000);
    const share = budget.open();
    if (!share) throw new Error('no share');
    expect(share.resize('request', 50_000)).toBe(true);
    expect(share.resize('usage', 30_000)).toBe(true);
    expect(share.resize('usage', 40_000)).toBe(false);
    expect(share.bytes).toBe(STREAM_ENTRY_BYTES + 80_000);
    expect(share.resize('request', 10_000)).toBe(true);
    expect(budget.usedBytes).toBe(STREAM_ENTRY_BYTES + 40_000);
    share.release();
    share.release();
    expect(budget.usedBytes).toBe(0);
    // A released share holds nothing more.
    expect(share.resize('usage', 1)).toBe(false);
    expect(budget.usedBytes).toBe(0);
  });

  it('refuses a cap smaller than one entry', () => {
    expect(() => new BufferBudget(STREAM_ENTRY_BYTES - 1)).toThrow(RangeError);
  });
});

describe('--max-buffered-bytes', () => {
  it('takes whole numbers of bytes from one entry up, and leaves the default when absent', () => {
    expect(bufferedBytesOption(undefined, '--max-buffered-bytes')).toBeUndefined();
    expect(bufferedBytesOption(String(STREAM_ENTRY_BYTES), '--max-buffered-bytes')).toBe(STREAM_ENTRY_BYTES);
    for (const bad of [String(STREAM_ENTRY_BYTES - 1), '1.5', 'lots', '-1']) expect(() => bufferedBytesOption(bad, '--max-buffered-bytes')).toThrow('--max-buffered-bytes');
  });
});
