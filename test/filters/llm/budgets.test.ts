import { describe, expect, it } from 'vitest';
import { budgetKey, MemoryBudgets, periodOf } from '../../../filters/store/budgets.js';

describe('budget periods (UTC)', () => {
  const at = Date.UTC(2026, 11, 2, 15, 30); // Wednesday 2 December 2026, 15:30
  it('a day, an ISO week from Monday, a calendar month', () => {
    expect(periodOf('day', at)).toEqual({ startMs: Date.UTC(2026, 11, 2), endMs: Date.UTC(2026, 11, 3) });
    expect(periodOf('week', at)).toEqual({ startMs: Date.UTC(2026, 10, 30), endMs: Date.UTC(2026, 11, 7) });
    expect(periodOf('month', at)).toEqual({ startMs: Date.UTC(2026, 11, 1), endMs: Date.UTC(2027, 0, 1) });
    // Sunday belongs to the week that began the Monday before.
    expect(periodOf('week', Date.UTC(2026, 11, 6, 23)).startMs).toBe(Date.UTC(2026, 10, 30));
  });
});

describe('the memory budget store', () => {
  it('reserves all or nothing, and settles corrections', async () => {
    const store = new MemoryBudgets(() => 0);
    const a = budgetKey('m=x', 'day', 0, 'USD');
    const b = budgetKey('c=acme', 'day', 0, 'USD');
    const both = (amount: number, limitA: number, limitB: number) => [
      { key: a, amount, limit: limitA, expireAtMs: 10 },
      { key: b, amount, limit: limitB, expireAtMs: 10 },
    ];
    expect(await store.reserve(both(6, 10, 100))).toEqual({ admitted: true });
    expect(await store.reserve(both(6, 10, 100))).toEqual({ admitted: false, refusedIndex: 0 });
    // The refused reservation added nothing anywhere.
    expect(await store.spent(b)).toBe(6);
    await store.settle([{ key: a, amount: -4, expireAtMs: 10 }]);
    expect(await store.spent(a)).toBe(2);
    expect(await store.reserve(both(8, 10, 100))).toEqual({ admitted: true });
    expect(await store.spent(a)).toBe(10);
  });

  it('forgets a period once it expired', async () => {
    let now = 0;
    const store = new MemoryBudgets(() => now);
    await store.reserve([{ key: 'k', amount: 5, limit: 5, expireAtMs: 100 }]);
    expect((await store.reserve([{ key: 'k', amount: 1, limit: 5, expireAtMs: 100 }])).admitted).toBe(false);
    now = 100;
    expect((await store.reserve([{ key: 'k', amount: 1, limit: 5, expireAtMs: 200 }])).admitted).toBe(true);
  });
});
