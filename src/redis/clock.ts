import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from './client.js';

/**
 * Where each Redis server's clock stands against this process's, so a script can be handed a deadline in
 * the server's own time (`redis.call('TIME')` inside the script) and refuse to count when it runs after it.
 *
 * The local side is the monotonic clock (performance.now), so a step of this host's wall clock changes
 * nothing. Each reading is one TIME round trip: the server read its clock somewhere between our send and our
 * receive, so `server - receive` is a lower bound of the true offset, off by at most the round trip. A
 * deadline computed from a lower bound is never later than meant in the server's time (a late script never
 * slips through because of the reading), at worst a round trip early. Every lower bound stays true while the
 * clocks keep their pace, so the highest of the recent ones is used (the last `kept` readings, one every
 * `refreshMs`): one reading slowed by a busy event loop does not pull deadlines early. After a
 * (re)connection the node is read afresh and its older readings dropped (a failover may land on a host with
 * another clock).
 *
 * Under Redis Cluster each master is read on its own, and a call's deadline uses the clock of the master
 * that holds its key's slot: masters on different hosts need not agree.
 */

/** Milliseconds on this process's monotonic clock. */
export function monotonicMs(): number {
  return performance.now();
}

export interface RedisClockOptions {
  /** How often the offsets are read again. */
  readonly refreshMs?: number;
  /** TIME round trips per reading (default 5). */
  readonly samples?: number;
  /** Readings per node whose best is used. */
  readonly kept?: number;
}

const SINGLE = 'single';

export class RedisClock {
  /** Node ('host:port', or SINGLE) -> the highest recent lower bound of (server epoch ms - local monotonic ms). */
  private readonly offsets = new Map<string, number>();
  /** Node -> its recent readings' lower bounds, oldest first. */
  private readonly readings = new Map<string, number[]>();
  private readonly kept: number;
  private readonly refresher: NodeJS.Timeout;
  private reading: Promise<void> | undefined;
  private readonly samples: number;
  private closed = false;
  private readonly onReady = (): void => {
    this.readings.clear();
    void this.read();
  };

  constructor(
    private readonly redis: RedisClient,
    options: RedisClockOptions = {},
  ) {
    this.samples = options.samples ?? 5;
    this.kept = options.kept ?? 10;
    this.refresher = setInterval(() => void this.read(), options.refreshMs ?? 30_000);
    this.refresher.unref();
    redis.on('ready', this.onReady);
    if (redis.status === 'ready') void this.read();
  }

  /** Whether an offset is known (deadlines are only given once it is). */
  get known(): boolean {
    return this.offsets.size > 0;
  }

  /** Reads every server's clock now (a reading already under way is shared); never throws. */
  read(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.reading ??= this.readAll().finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  /**
   * The server time (epoch ms) at which a call issued at `issuedAtMs` (monotonicMs) has used `budgetMs`, on
   * the server holding `key`; undefined while no offset is known.
   */
  deadline(issuedAtMs: number, budgetMs: number, key: string): number | undefined {
    const offset = this.offsetFor(key);
    return offset === undefined ? undefined : Math.floor(issuedAtMs + offset + budgetMs);
  }

  /**
   * One more reading, passed by a caller that got the server's time (epoch ms, rounded down) in a reply to a
   * call about `key`, received at `receivedAt` (monotonicMs, read after the reply): the same lower bound as
   * a TIME round trip, so under load the offset keeps improving from ordinary calls.
   */
  observe(key: string, serverMs: number, receivedAt: number): void {
    const node = this.nodeOf(key);
    const recent = node === undefined ? undefined : this.readings.get(node);
    if (node === undefined || recent === undefined || recent.length === 0 || !Number.isFinite(serverMs)) return;
    const bound = serverMs - receivedAt;
    const last = recent.length - 1;
    if (bound <= (recent[last] as number)) return;
    recent[last] = bound;
    this.offsets.set(node, Math.max(...recent));
  }

  close(): void {
    this.closed = true;
    clearInterval(this.refresher);
    this.redis.off('ready', this.onReady);
  }

  /** The node holding `key`: SINGLE, or its slot's master under a cluster (undefined before the slots are known). */
  private nodeOf(key: string): string | undefined {
    return this.redis instanceof Cluster ? this.redis.slots[slotOf(key)]?.[0] : SINGLE;
  }

  private offsetFor(key: string): number | undefined {
    if (!(this.redis instanceof Cluster)) return this.offsets.get(SINGLE);
    const node = this.nodeOf(key);
    const own = node === undefined ? undefined : this.offsets.get(node);
    if (own !== undefined) return own;
    // A slot whose master was not read yet: the earliest clock, so its deadline is early, never late.
    return this.offsets.size === 0 ? undefined : Math.min(...this.offsets.values());
  }

  private async readAll(): Promise<void> {
    const redis = this.redis;
    if (!(redis instanceof Cluster)) {
      await this.readNode(SINGLE, redis);
      return;
    }
    await Promise.all(redis.nodes('master').map((node) => this.readNode(`${node.options.host}:${node.options.port}`, node)));
  }

  private async readNode(name: string, node: Redis): Promise<void> {
    let best: number | undefined;
    for (let i = 0; i < this.samples; i++) {
      let reply: unknown[];
      try {
        reply = await node.time();
      } catch {
        // Unreachable now: the offset read last stays; the next connection reads again.
        return;
      }
      const receivedAt = monotonicMs();
      const serverMs = Number(reply[0]) * 1_000 + Number(reply[1]) / 1_000;
      best = Math.max(best ?? -Infinity, serverMs - receivedAt);
    }
    if (best === undefined) return;
    const recent = [...(this.readings.get(name) ?? []), best].slice(-this.kept);
    this.readings.set(name, recent);
    this.offsets.set(name, Math.max(...recent));
  }
}

/** The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag (the text in its first non-empty {…}) or of the whole key, mod 16384. */
export function slotOf(key: string): number {
  const open = key.indexOf('{');
  let hashed = key;
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) hashed = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of Buffer.from(hashed, 'utf8')) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16_384;
}
