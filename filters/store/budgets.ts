import type { RedisClient } from '../../src/redis/client.js';
import { monotonicMs, RedisClock } from '../../src/redis/clock.js';
import { answerWithin } from '../../src/redis/deadline.js';
import { errorMessage } from '../../src/errors.js';
import type { BudgetPeriod } from '../../src/contract/filter-policy.js';
import { ThrottledWarning } from '../ratelimit/telemetry.js';
import { failFastRedis } from './fail-fast-redis.js';
import { lateStoreCallsTotal, scriptBudgetMs } from './late-calls.js';

/**
 * LLM spending against budgets, shared by every filter-service replica through Redis (one Lua call per
 * decision), or kept in the replica's memory without Redis. Amounts are whole nano-units of the currency
 * (1e-9), so sums are exact integers. A budget's spend lives under one key per calendar period (UTC):
 * `<prefix>{budget}:<scope>:<period>:<start ms>`; every key carries the `{budget}` hash tag, so one call may
 * touch several budgets under Redis Cluster. Keys expire a day after their period ends.
 *
 *  - reserve: adds `amount` to every budget at once, only if none would pass its limit (atomic: concurrent
 *    reservations on any replica cannot overspend together);
 *  - settle: adds a correction to each (the real cost minus the reservation; negative gives room back).
 */

/** Nano-units per currency unit. */
export const NANOS = 1_000_000_000;

export interface BudgetSpend {
  /** The key of the budget's current period (budgetKey). */
  readonly key: string;
  /** Nano-units. */
  readonly amount: number;
  /** Nano-units; reserve only. */
  readonly limit?: number;
  /** Epoch ms when the key may go (its period's end plus slack). */
  readonly expireAtMs: number;
}

export interface Reservation {
  readonly admitted: boolean;
  /** The first budget that had no room (its index in the call), when refused. */
  readonly refusedIndex?: number;
}

export interface BudgetStore {
  readonly kind: 'memory' | 'redis';
  reserve(items: readonly BudgetSpend[]): Promise<Reservation>;
  settle(items: readonly BudgetSpend[]): Promise<void>;
  /** The spend so far of one key (tests, admin). */
  spent(key: string): Promise<number>;
  close(): Promise<void>;
}

/** The start and end (epoch ms) of the UTC calendar period holding `now`: a day, an ISO week (from Monday), a month. */
export function periodOf(per: BudgetPeriod, now: number): { startMs: number; endMs: number } {
  const d = new Date(now);
  const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  if (per === 'day') return { startMs: day, endMs: day + 86_400_000 };
  if (per === 'week') {
    const start = day - ((d.getUTCDay() + 6) % 7) * 86_400_000;
    return { startMs: start, endMs: start + 7 * 86_400_000 };
  }
  return { startMs: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), endMs: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
}

/** The key of a budget's period: `scope` is `m=<model>` or `c=<consumer>`. */
export function budgetKey(scope: string, per: BudgetPeriod, startMs: number, currency: string): string {
  return `{budget}:${scope}:${currency}:${per}:${startMs}`;
}

/** Kept past the period's end, so a replica with a slightly slow clock still finds it. */
export const BUDGET_EXPIRY_SLACK_MS = 86_400_000;

export class MemoryBudgets implements BudgetStore {
  readonly kind = 'memory' as const;
  private readonly spend = new Map<string, { amount: number; expireAtMs: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  reserve(items: readonly BudgetSpend[]): Promise<Reservation> {
    this.sweep();
    const refused = items.findIndex((i) => (this.spend.get(i.key)?.amount ?? 0) + i.amount > (i.limit ?? Number.POSITIVE_INFINITY));
    if (refused >= 0) return Promise.resolve({ admitted: false, refusedIndex: refused });
    for (const i of items) this.add(i);
    return Promise.resolve({ admitted: true });
  }

  settle(items: readonly BudgetSpend[]): Promise<void> {
    for (const i of items) this.add(i);
    return Promise.resolve();
  }

  spent(key: string): Promise<number> {
    return Promise.resolve(this.spend.get(key)?.amount ?? 0);
  }

  close(): Promise<void> {
    this.spend.clear();
    return Promise.resolve();
  }

  private add(i: BudgetSpend): void {
    const e = this.spend.get(i.key);
    this.spend.set(i.key, { amount: Math.max(0, (e?.amount ?? 0) + i.amount), expireAtMs: Math.max(e?.expireAtMs ?? 0, i.expireAtMs) });
  }

  private sweep(): void {
    const now = this.now();
    for (const [k, v] of this.spend) if (v.expireAtMs <= now) this.spend.delete(k);
  }
}

/**
 * KEYS: the budgets' keys. ARGV[1]: 'reserve' or 'settle'; ARGV[2]: deadline (epoch ms in this Redis
 * server's clock, src/redis/clock.ts; 0 none); then per key: amount, limit (reserve; -1 none), expire-at ms.
 * Reserve refuses (returns the 1-based index of the first full budget) unless every budget has room, then
 * adds to all; settle adds (never below 0). Returns 0 when done, or -1 without touching anything when the
 * script started past its deadline (its caller has answered without it). TIME is replicated by effects
 * (the only way in Redis 7; asked for on older ones).
 */
const BUDGET_SCRIPT = `
local deadline = tonumber(ARGV[2])
if deadline > 0 then
  if redis.replicate_commands then redis.replicate_commands() end
  local time = redis.call('TIME')
  if tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000 > deadline then return -1 end
end
local mode = ARGV[1]
if mode == 'reserve' then
  for i, key in ipairs(KEYS) do
    local base = 3 + (i - 1) * 3
    local amount = tonumber(ARGV[base])
    local limit = tonumber(ARGV[base + 1])
    local spent = tonumber(redis.call('GET', key) or '0')
    if limit >= 0 and spent + amount > limit then return i end
  end
end
for i, key in ipairs(KEYS) do
  local base = 3 + (i - 1) * 3
  local spent = tonumber(redis.call('INCRBY', key, ARGV[base]))
  if spent < 0 then redis.call('SET', key, '0') end
  redis.call('PEXPIREAT', key, ARGV[base + 2])
end
return 0
`;

interface ScriptedRedis {
  flowgateBudgets(numberOfKeys: number, ...keysThenArgs: (string | number)[]): Promise<unknown>;
}

const redisWarning = new ThrottledWarning('redis budget store failed');
const refundWarning = new ThrottledWarning('redis budget store could not give back a late reservation');

/** The script's reply when it started past its deadline and touched nothing. */
const EXPIRED = -1;

/**
 * Budgets in Redis. A reservation answered without Redis (timed out: refused, or let through by failOpen
 * with nothing reserved) must not spend the budget when Redis gets to it later: it carries a deadline in the
 * Redis server's clock (RedisClock) past which the script touches nothing, and one that ran in time but
 * whose reply came after the answer is settled back at once. Settlements are corrections of real spend and
 * are kept however late.
 */
export class RedisBudgets implements BudgetStore {
  readonly kind = 'redis' as const;
  private readonly redis: RedisClient;
  private readonly clock: RedisClock;

  constructor(
    url: string,
    private readonly keyPrefix = 'flowgate:',
    /** A call not answered in this time fails (and the model's failOpen decides). */
    private readonly timeoutMs = 200,
  ) {
    // The calls' own limit is timeoutMs (answerWithin, which still sees late replies).
    this.redis = failFastRedis(url, redisWarning, timeoutMs * 10);
    this.redis.defineCommand('flowgateBudgets', { lua: BUDGET_SCRIPT });
    this.clock = new RedisClock(this.redis);
  }

  async reserve(items: readonly BudgetSpend[]): Promise<Reservation> {
    const reply = await this.call('reserve', items);
    if (reply === EXPIRED) {
      lateStoreCallsTotal.inc({ store: 'budgets', outcome: 'expired' });
      throw new Error(`redis budget reserve failed: the budget script started after its deadline (${this.timeoutMs}ms after the call), so nothing was reserved`);
    }
    return reply === 0 ? { admitted: true } : { admitted: false, refusedIndex: reply - 1 };
  }

  async settle(items: readonly BudgetSpend[]): Promise<void> {
    await this.call('settle', items);
  }

  async spent(key: string): Promise<number> {
    return Number((await this.redis.get(this.keyPrefix + key)) ?? 0);
  }

  async close(): Promise<void> {
    this.clock.close();
    this.redis.disconnect();
    return Promise.resolve();
  }

  private async call(mode: 'reserve' | 'settle', items: readonly BudgetSpend[]): Promise<number> {
    if (items.length === 0) return 0;
    if (this.redis.status === 'wait' || this.redis.status === 'connecting' || this.redis.status === 'reconnecting') await this.ready();
    if (!this.clock.known && this.redis.status === 'ready') await this.clock.read();
    const issuedAt = monotonicMs();
    const keys = items.map((i) => this.keyPrefix + i.key);
    // Only a reservation is refused when late: its caller decides on the reply, and has moved on without it.
    const deadline = mode === 'reserve' ? (this.clock.deadline(issuedAt, scriptBudgetMs(this.timeoutMs), keys[0] as string) ?? 0) : 0;
    const args = items.flatMap((i) => [Math.round(i.amount), i.limit === undefined ? -1 : Math.floor(i.limit), Math.ceil(i.expireAtMs)]);
    const reply = await answerWithin(
      (this.redis as unknown as ScriptedRedis).flowgateBudgets(items.length, ...keys, mode, deadline, ...args),
      this.timeoutMs,
      () => new Error(`redis budget ${mode} failed: no answer within ${this.timeoutMs}ms`),
      (late) => {
        if (mode === 'reserve') this.giveBack(late, items);
      },
    );
    if (typeof reply !== 'number') throw new Error(`redis answered the budget script with ${typeof reply}`);
    return reply;
  }

  /** A reservation answered (as a timeout) before its reply came: if it reserved, the amounts go back. */
  private giveBack(reply: unknown, items: readonly BudgetSpend[]): void {
    if (reply === EXPIRED) {
      lateStoreCallsTotal.inc({ store: 'budgets', outcome: 'expired' });
      return;
    }
    if (reply !== 0) return;
    lateStoreCallsTotal.inc({ store: 'budgets', outcome: 'refunded' });
    this.call(
      'settle',
      items.map((i) => ({ key: i.key, amount: -i.amount, expireAtMs: i.expireAtMs })),
    ).catch((err: unknown) => refundWarning.warn({ err: errorMessage(err) }));
  }

  private ready(): Promise<void> {
    return new Promise((resolve) => {
      if (this.redis.status === 'ready') {
        resolve();
        return;
      }
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, 1_000);
      this.redis.once('ready', done);
    });
  }
}
