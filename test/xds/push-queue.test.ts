import { describe, expect, test } from 'vitest';
import { PushQueue, type PushTarget } from '../../src/xds/push-queue.js';

/** A target whose writes complete only when the test says so. */
function target(): PushTarget & { sent: number[]; finish(): void; close(): void } {
  const pending: (() => void)[] = [];
  let closed = false;
  return {
    sent: [],
    write(bytes, done) {
      this.sent.push(bytes[0] ?? -1);
      pending.push(done);
    },
    closed: () => closed,
    finish: () => pending.shift()?.(),
    close: () => {
      closed = true;
    },
  };
}

/** The queue drains on the next turn of the event loop. */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('PushQueue', () => {
  test('makes a response only when the bytes in flight leave room, in order, and frees a closed stream', async () => {
    const q = new PushQueue(10);
    const a = target();
    const b = target();
    const made: string[] = [];
    const push = (t: PushTarget, name: string, tag: number): void => q.push(t, () => (made.push(name), new Uint8Array(6).fill(tag)));
    push(a, 'a1', 1);
    push(b, 'b1', 2);
    push(a, 'a2', 3);
    push(b, 'b2', 4);
    // 6 bytes are in flight: the 10-byte bound lets one more start (12 > 10 then), the rest wait unmade.
    expect(made).toEqual(['a1', 'b1']);
    expect(q.stats()).toEqual({ inFlightBytes: 12, waiting: 2 });
    a.finish();
    await turn();
    expect(made).toEqual(['a1', 'b1', 'a2']);
    expect(q.stats()).toEqual({ inFlightBytes: 12, waiting: 1 });
    b.finish();
    await turn();
    expect(made).toEqual(['a1', 'b1', 'a2', 'b2']);
    expect(a.sent).toEqual([1, 3]);
    expect(b.sent).toEqual([2, 4]);
    // A stream that closes with writes unflushed (gRPC never calls back) gives its bytes back; a closed stream's queued response is never made.
    b.close();
    q.release(b);
    expect(q.stats().inFlightBytes).toBe(6);
    push(b, 'b3', 5);
    a.finish();
    await turn();
    expect(made).not.toContain('b3');
    expect(q.stats()).toEqual({ inFlightBytes: 0, waiting: 0 });
  });
});
