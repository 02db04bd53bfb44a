import { Counter, Gauge } from 'prom-client';
import { metricsRegistry } from '../../src/observability/metrics.js';

/**
 * One budget for every body byte the filter service keeps across its ext_proc exchanges (request bodies,
 * answers kept for masking or for a JSON usage block, partial stream events, decoded copies). Each exchange
 * reserves STREAM_ENTRY_BYTES when it opens, for what it holds before it says so, and then grows and shrinks
 * its share as its processors keep bytes. A new exchange that finds no room for its entry is refused (503),
 * and so is an exchange whose next growth would pass the cap: the total never exceeds it, whatever the
 * number of slow exchanges at once. Everything an exchange holds is given back when it ends.
 */

/** Reserved by each exchange when it opens (gRPC message buffers, parser state). */
export const STREAM_ENTRY_BYTES = 16 * 1024;

/** The cap when the command line sets none: 256 MiB across every exchange. */
export const DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024;

export type BudgetPhase = 'open' | 'request_body' | 'response_body';

const bufferedBytes = new Gauge({
  name: 'flowgate_filter_buffered_bytes',
  help: 'Body bytes held by the filter service across all ext_proc exchanges (capped by --max-buffered-bytes)',
  registers: [metricsRegistry],
});

export const bufferRefusals = new Counter({
  name: 'flowgate_filter_buffer_refusals_total',
  help: 'ext_proc exchanges refused because the body-buffer budget was full: when opening (503), or when a body would have passed the cap',
  labelNames: ['phase'] as const,
  registers: [metricsRegistry],
});

export class BufferBudget {
  private used = 0;

  constructor(readonly capBytes: number = DEFAULT_MAX_BUFFERED_BYTES) {
    if (!(Number.isSafeInteger(capBytes) && capBytes >= STREAM_ENTRY_BYTES)) {
      throw new RangeError(`the buffer budget must be a whole number of bytes, at least ${STREAM_ENTRY_BYTES} (got ${capBytes})`);
    }
  }

  /** Bytes held now. */
  get usedBytes(): number {
    return this.used;
  }

  /** A share for a new exchange, or undefined (counted) when the budget has no room for another. */
  open(): ExchangeShare | undefined {
    if (!this.take(STREAM_ENTRY_BYTES)) {
      bufferRefusals.inc({ phase: 'open' });
      return undefined;
    }
    return new ExchangeShare(this);
  }

  /** Takes `bytes` (or gives them back, when negative); false and nothing taken when they do not fit. */
  take(bytes: number): boolean {
    if (bytes > 0 && this.used + bytes > this.capBytes) return false;
    this.used += bytes;
    bufferedBytes.inc(bytes);
    return true;
  }
}

/** What one exchange holds, by part (`request`, `usage`, `masking`...), on top of its entry reservation. */
export class ExchangeShare {
  private readonly parts = new Map<string, number>();
  private held = STREAM_ENTRY_BYTES;
  private released = false;

  constructor(private readonly budget: BufferBudget) {}

  /** Bytes this exchange holds now, its entry included. */
  get bytes(): number {
    return this.held;
  }

  /** Sets what `part` holds now; false (and nothing changed) when the growth does not fit under the cap. */
  resize(part: string, bytes: number): boolean {
    if (this.released) return bytes === 0;
    const delta = bytes - (this.parts.get(part) ?? 0);
    if (!this.budget.take(delta)) return false;
    this.parts.set(part, bytes);
    this.held += delta;
    return true;
  }

  /** Gives back everything; later resizes hold nothing. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.budget.take(-this.held);
    this.held = 0;
    this.parts.clear();
  }
}
