import { createHash } from 'node:crypto';
import type { RedisClient } from '../../src/redis/client.js';
import type { LlmCacheRules } from '../../src/contract/filter-policy.js';
import type { LlmCacheResult, LlmEndpoint } from '../../src/contract/filter-wire.js';
import { errorMessage } from '../../src/errors.js';
import { ThrottledWarning } from '../ratelimit/telemetry.js';
import { failFastRedis } from '../store/fail-fast-redis.js';

/**
 * The LLM answer cache (`llm.cache`): exact-match, looked up by the adapter, which runs per attempt on the
 * endpoint Envoy picked and so knows the model version that would serve. The key hashes that version, so an
 * answer is never served for another version (a canary split, a moved alias, a fallback each look up their
 * own), and entries of versions that left the live set are never served again (the memory store also drops
 * them; Redis lets them expire).
 */

type Json = Record<string, unknown>;

/** Request fields that change how the answer is delivered or who is billed, never what it says. */
const DELIVERY_FIELDS = new Set(['stream', 'stream_options', 'user', 'model']);

/** Bumped when the key's composition changes, so a Redis shared across releases never mixes two. */
const KEY_FORMAT = 1;

export interface CacheKeyInput {
  readonly model: string;
  /** The version of the endpoint Envoy picked for this attempt. */
  readonly version: string;
  readonly endpoint: LlmEndpoint;
  readonly scope: LlmCacheRules['scope'];
  /** The authenticated consumer (x-flowgate-consumer), absent for anonymous callers. */
  readonly consumer: string | undefined;
  /** The prompt version the router rendered into the request (NAME/VERSION), if any. */
  readonly prompt?: string | undefined;
  readonly request: Readonly<Json>;
}

/** JSON with every object's keys sorted, so two requests differing only in key order have one key. */
export function sortedJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v: unknown) => sortedJson(v === undefined ? null : v)).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Json).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${sortedJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The exact-match key: sha256 over the version, the endpoint, the scope and every field that changes the answer. */
export function cacheKey(input: CacheKeyInput): string {
  const fields: Json = {};
  for (const [k, v] of Object.entries(input.request)) if (!DELIVERY_FIELDS.has(k) && v !== undefined) fields[k] = v;
  const who = input.scope === 'consumer' ? { consumer: input.consumer ?? null } : { shared: true };
  // The rendered prompt is in the messages already; its version is named too, so a prompt change is a miss even
  // where two versions render the same text.
  const material = sortedJson({ f: KEY_FORMAT, model: input.model, version: input.version, endpoint: input.endpoint, who, ...(input.prompt !== undefined && { prompt: input.prompt }), request: fields });
  return createHash('sha256').update(material).digest('hex');
}

/** What the cache does for one request: look up and store, store only (no-cache), or nothing (bypass). */
export interface CachePlan {
  readonly lookup: boolean;
  readonly store: boolean;
}

const BYPASS: CachePlan = { lookup: false, store: false };

/**
 * The plan for a request. Only deterministic requests (`temperature: 0`; embeddings always) are cached unless
 * cacheNonDeterministic; a stream is cached on chat only (it is replayed as chat.completion.chunk events);
 * the caller's `Cache-Control: no-store` caches nothing, `no-cache` skips the lookup but stores the answer.
 */
export function cachePlan(rules: LlmCacheRules, endpoint: LlmEndpoint, request: Readonly<Json>, cacheControl: string | undefined): CachePlan {
  if (endpoint === 'messages') return BYPASS;
  if (request.stream === true && endpoint !== 'chat') return BYPASS;
  const deterministic = endpoint === 'embeddings' || request.temperature === 0;
  if (!deterministic && !rules.cacheNonDeterministic) return BYPASS;
  const directives = new Set((cacheControl ?? '').split(',').map((d) => d.trim().toLowerCase().split('=')[0]));
  if (directives.has('no-store')) return BYPASS;
  return { lookup: !directives.has('no-cache'), store: true };
}

/** One stored answer: the JSON body as the upstream (or the MLflow conversion) wrote it, and its version. */
export interface CachedAnswer {
  readonly version: string;
  readonly body: string;
}

interface MemoryEntry extends CachedAnswer {
  readonly expiresAt: number;
}

/**
 * Least recently used answers with a time to live, in one replica's memory. A Map keeps insertion order, so
 * re-inserting on each read makes its first key the least recently used. (The lru-cache in node_modules is
 * a transitive 6.x, years behind; this is all the cache needs.)
 */
export class MemoryAnswers {
  private readonly entries = new Map<string, MemoryEntry>();

  constructor(
    private maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string): CachedAnswer | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    if (entry.expiresAt <= this.now()) return undefined;
    this.entries.set(key, entry);
    return entry;
  }

  set(key: string, answer: CachedAnswer, ttlMs: number): void {
    this.entries.delete(key);
    this.entries.set(key, { ...answer, expiresAt: this.now() + ttlMs });
    this.trim();
  }

  /** A new limit from a new policy: the least recently used beyond it go. */
  resize(maxEntries: number): void {
    this.maxEntries = maxEntries;
    this.trim();
  }

  /** Drops every answer of a version not in `live`. */
  purge(live: ReadonlySet<string>): void {
    for (const [key, entry] of this.entries) if (!live.has(entry.version)) this.entries.delete(key);
  }

  private trim(): void {
    for (const key of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(key);
    }
  }
}

const redisWarning = new ThrottledWarning('redis answer cache unavailable; answers are not cached meanwhile');

/** Answers in the filter service's Redis, shared by its replicas; a key expires with the entry's TTL. */
export class RedisAnswers {
  private readonly redis: RedisClient;
  /** Set once the first connection attempt is over (whatever its result). */
  private connected = false;

  constructor(url: string, private readonly keyPrefix = 'flowgate:llm-cache:') {
    this.redis = failFastRedis(url, redisWarning);
  }

  /** The answer, or undefined when there is none or Redis cannot say (a cache failure is a miss, never an error). */
  async get(key: string): Promise<CachedAnswer | undefined> {
    try {
      await this.ready();
      const text = await this.redis.get(this.keyPrefix + key);
      if (text === null) return undefined;
      const parsed = JSON.parse(text) as Partial<CachedAnswer>;
      return typeof parsed.version === 'string' && typeof parsed.body === 'string' ? { version: parsed.version, body: parsed.body } : undefined;
    } catch (err) {
      redisWarning.warn({ err: errorMessage(err) });
      return undefined;
    }
  }

  async set(key: string, answer: CachedAnswer, ttlMs: number): Promise<void> {
    try {
      await this.ready();
      await this.redis.set(this.keyPrefix + key, JSON.stringify(answer), 'PX', ttlMs);
    } catch (err) {
      redisWarning.warn({ err: errorMessage(err) });
    }
  }

  /**
   * Waits (at most connectTimeout) for the first connection, opened on the first cached request: nothing is
   * queued while disconnected, so without this the first calls would all fail. Later outages fail at once.
   */
  private async ready(): Promise<void> {
    if (this.redis.status === 'ready' || this.connected) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.redis.off('ready', done);
        resolve();
      };
      const timer = setTimeout(done, 1_000);
      this.redis.once('ready', done);
    });
    this.connected = true;
  }

  async close(): Promise<void> {
    this.redis.disconnect();
    await Promise.resolve();
  }
}

const noRedisWarning = new ThrottledWarning('a model caches answers in redis but this filter service runs without --redis; its answers are not cached', 60_000);

/**
 * Every cached model's answers, across policy versions: one memory store per model (resized, and purged of
 * versions no longer live, as policies change) and one Redis connection for all, opened on first use.
 */
export class AnswerCaches {
  private readonly memory = new Map<string, { answers: MemoryAnswers; live: string }>();
  private redis: RedisAnswers | undefined;

  constructor(
    private readonly redisUrl: string | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether answers of a model with these rules can be kept here. */
  available(rules: LlmCacheRules): boolean {
    if (rules.store === 'redis' && this.redisUrl === undefined) {
      noRedisWarning.warn({});
      return false;
    }
    return true;
  }

  async get(model: string, rules: LlmCacheRules, live: readonly string[], key: string): Promise<CachedAnswer | undefined> {
    if (rules.store === 'redis') return this.redisStore()?.get(key);
    return this.memoryOf(model, rules, live).get(key);
  }

  async set(model: string, rules: LlmCacheRules, live: readonly string[], key: string, answer: CachedAnswer): Promise<void> {
    if (rules.store === 'redis') {
      await this.redisStore()?.set(key, answer, rules.ttlMs);
      return;
    }
    this.memoryOf(model, rules, live).set(key, answer, rules.ttlMs);
  }

  async close(): Promise<void> {
    await this.redis?.close();
  }

  private redisStore(): RedisAnswers | undefined {
    if (this.redisUrl === undefined) return undefined;
    this.redis ??= new RedisAnswers(this.redisUrl);
    return this.redis;
  }

  private memoryOf(model: string, rules: LlmCacheRules, live: readonly string[]): MemoryAnswers {
    const liveKey = [...live].sort().join(',');
    let slot = this.memory.get(model);
    if (!slot) {
      slot = { answers: new MemoryAnswers(rules.maxEntries, this.now), live: liveKey };
      this.memory.set(model, slot);
    } else {
      slot.answers.resize(rules.maxEntries);
      if (slot.live !== liveKey) {
        slot.answers.purge(new Set(live));
        slot.live = liveKey;
      }
    }
    return slot.answers;
  }
}

/** What the metric and the answer header say for a plan that was not a hit. */
export function notHit(plan: CachePlan): Exclude<LlmCacheResult, 'hit'> {
  return plan.store || plan.lookup ? 'miss' : 'bypass';
}
