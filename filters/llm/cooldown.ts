/**
 * Cooldowns: a model whose upstream answered 429 with Retry-After is left alone for that long, its new
 * requests starting at its fallback chain (the LLM router tells Envoy so). Envoy already retried the request
 * that got the 429 on the next model; this keeps the following ones from knocking first. Kept in this filter
 * service's memory: each replica learns from the 429s its own adapters see (the first one still falls back).
 */

/** Milliseconds a Retry-After value asks for (seconds or an HTTP date), or undefined when it is neither. */
export function retryAfterMs(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export class Cooldowns {
  private readonly until = new Map<string, number>();

  /** Leaves `model` alone for `ms` (capped at `maxMs`), unless it already is for longer. */
  start(model: string, ms: number, maxMs: number, now: number = Date.now()): void {
    const end = now + Math.min(ms, maxMs);
    if ((this.until.get(model) ?? 0) < end) this.until.set(model, end);
  }

  /** Whether `model` is cooling down now. */
  active(model: string, now: number = Date.now()): boolean {
    const end = this.until.get(model);
    if (end === undefined) return false;
    if (end > now) return true;
    this.until.delete(model);
    return false;
  }
}
