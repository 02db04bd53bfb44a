import type { EchoReply } from './upstreams.js';

/** HTTP traffic for tests: single requests and a steady background load that counts failures. */

export interface HttpAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

/** One request; network errors become status 0 with the error as text. */
export async function request(url: string, init: RequestInit = {}): Promise<HttpAnswer> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
    return { status: res.status, headers: res.headers, text: await res.text() };
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? ` (${err.cause.message})` : '';
    return { status: 0, headers: new Headers(), text: err instanceof Error ? `${err.message}${cause}` : String(err) };
  }
}

/** The name of the echo upstream that answered, or undefined if something else answered. */
export async function upstreamOf(url: string, init: RequestInit = {}): Promise<string | undefined> {
  const answer = await request(url, init);
  if (answer.status !== 200) return undefined;
  try {
    return (JSON.parse(answer.text) as EchoReply).upstream;
  } catch {
    return undefined;
  }
}

export interface LoadResult {
  readonly sent: number;
  readonly failed: number;
  /** The first few failures, for the assertion message. */
  readonly failures: string[];
  /** Answers by upstream name (from x-upstream or the JSON body). */
  readonly byUpstream: Map<string, number>;
}

/**
 * Steady load: `concurrency` loops each sending requests back to back over `urls` until stop() is called.
 * A failure is a network error or a status that `ok` rejects (default: not 200).
 */
export function steadyLoad(
  urls: readonly string[],
  options: { concurrency?: number; init?: () => RequestInit; ok?: (a: HttpAnswer) => boolean } = {},
): { stop(): Promise<LoadResult>; progress(requests: number): Promise<void> } {
  let running = true;
  let sent = 0;
  let failed = 0;
  const failures: string[] = [];
  const byUpstream = new Map<string, number>();
  const ok = options.ok ?? ((a: HttpAnswer) => a.status === 200);
  const loop = async (offset: number): Promise<void> => {
    for (let i = offset; running; i++) {
      const url = urls[i % urls.length] ?? '';
      const answer = await request(url, options.init?.() ?? {});
      sent++;
      if (!ok(answer)) {
        failed++;
        if (failures.length < 10) failures.push(`${url} -> ${answer.status} ${answer.text.slice(0, 200)}`);
      } else {
        const name = answer.headers.get('x-upstream') ?? 'other';
        byUpstream.set(name, (byUpstream.get(name) ?? 0) + 1);
      }
    }
  };
  const loops = Array.from({ length: options.concurrency ?? 2 }, (_, i) => loop(i));
  return {
    // Waits until `requests` more answers have come back: a load's progress, instead of a sleep.
    progress: async (requests) => {
      const target = sent + requests;
      while (sent < target) {
        if (!running) throw new Error('the load was stopped');
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return { sent, failed, failures, byUpstream };
    },
  };
}

/**
 * Answers by the version that served them (x-flowgate-model-version; 'none' without it) over `n` requests,
 * `concurrency` at a time. Any answer other than a 200 throws, with its status and body.
 */
export async function versionShares(url: string, n: number, options: { concurrency?: number; init?: () => RequestInit } = {}): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: options.concurrency ?? 8 }, async () => {
      while (next < n) {
        next++;
        const a = await request(url, options.init?.() ?? {});
        if (a.status !== 200) throw new Error(`${url} answered ${a.status}: ${a.text.slice(0, 200)}`);
        const v = a.headers.get('x-flowgate-model-version') ?? 'none';
        counts.set(v, (counts.get(v) ?? 0) + 1);
      }
    }),
  );
  return counts;
}
