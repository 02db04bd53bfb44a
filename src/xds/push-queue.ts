import { wireLength, type XdsWireMessage } from './wire.js';

/**
 * PushQueue: bounds the response bytes handed to gRPC and not yet flushed, over every stream of a server. A
 * snapshot change to thousands of streams would otherwise encode a response per stream at once and leave all
 * of them in HTTP/2 buffers until each client's flow-control window lets them out (the RSS peak of a push);
 * here a response is made (its shared body and the stream's nonce, spliced) only when the bytes in flight leave room,
 * and the queue moves on as writes complete. Order per stream is kept: one FIFO for all.
 */

export interface PushTarget {
  /** Writes the response; `done` is called when gRPC has flushed it (or failed to). */
  write(message: XdsWireMessage, done: () => void): void;
  /** True once the stream is gone: its queued responses are dropped, its bytes in flight released. */
  closed(): boolean;
}

interface Queued {
  readonly target: PushTarget;
  readonly make: () => XdsWireMessage;
}

/**
 * Bytes in flight at most (one response bigger than this is still sent, alone). 16 MB: at 1,000 models (3.2 MB
 * route configurations) five responses at a time keep the sockets busy; 64 MB (twenty) gave the same or a
 * slower fan-out with a higher RSS peak and event-loop stalls of a second (each in-flight response was then
 * also one framed copy in gRPC, garbage once written; state-of-the-world responses now share their frames,
 * framing.ts, so the bound is no longer re-measured): docs/performance-fleet.md.
 */
export const DEFAULT_PUSH_BYTES_IN_FLIGHT = 16 * 1024 * 1024;

/** Responses started per turn of the event loop while draining. */
const START_PER_TURN = 100;

export class PushQueue {
  private readonly queue: Queued[] = [];
  private head = 0;
  private inFlight = 0;
  private drainScheduled = false;
  /** What each target has in flight, so a stream that closes with writes unflushed gives its bytes back. */
  private readonly byTarget = new Map<PushTarget, Set<{ bytes: number }>>();

  constructor(private readonly maxBytes: number = DEFAULT_PUSH_BYTES_IN_FLIGHT) {}

  /** Queues the response `make` encodes for `target`; sent at once when nothing waits and there is room. */
  push(target: PushTarget, make: () => XdsWireMessage): void {
    if (this.head === this.queue.length && this.inFlight < this.maxBytes) this.start({ target, make });
    else this.queue.push({ target, make });
  }

  /** Releases what a closed target still had in flight, and sends what waited for it. */
  release(target: PushTarget): void {
    const held = this.byTarget.get(target);
    if (!held) return;
    this.byTarget.delete(target);
    for (const h of held) this.inFlight -= h.bytes;
    this.drainSoon();
  }

  /** Bytes handed to gRPC and not flushed yet; responses waiting. */
  stats(): { inFlightBytes: number; waiting: number } {
    return { inFlightBytes: this.inFlight, waiting: this.queue.length - this.head };
  }

  private start(q: Queued): void {
    if (q.target.closed()) return;
    const message = q.make();
    const entry = { bytes: wireLength(message) };
    let held = this.byTarget.get(q.target);
    if (!held) {
      held = new Set();
      this.byTarget.set(q.target, held);
    }
    held.add(entry);
    this.inFlight += entry.bytes;
    let settled = false;
    q.target.write(message, () => {
      if (settled) return;
      settled = true;
      const mine = this.byTarget.get(q.target);
      if (mine?.delete(entry)) {
        this.inFlight -= entry.bytes;
        if (mine.size === 0) this.byTarget.delete(q.target);
      }
      this.drainSoon();
    });
  }

  /**
   * Drains on the next turn of the event loop, not from the write callback: gRPC may call it back at once, and
   * a chain of writes started from callbacks would run the whole fan-out without letting the loop breathe.
   */
  private drainSoon(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    let started = 0;
    while (this.head < this.queue.length && this.inFlight < this.maxBytes) {
      if (started++ >= START_PER_TURN) {
        this.drainSoon();
        break;
      }
      const next = this.queue[this.head] as Queued;
      this.head++;
      this.start(next);
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }
}
