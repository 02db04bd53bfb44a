import { estimateRequestTokens, estimateTokens } from '../tokenizer.js';
import { SseUsageReader, usageFromJson, type Usage } from '../usage.js';
import type { Exchange, Processor, ProcessorRun } from '../processor.js';

/**
 * Token usage: reads what the upstream reports (JSON `usage`, or server-sent events) and charges it to the
 * consumer's token quotas once the exchange is over; with nothing reported, a tokenizer estimate of the
 * request and response text is charged instead.
 */

/** Response bytes kept for a JSON usage block; past this only an SSE stream is still read (incrementally). */
const KEEP_BYTES = 8 * 1024 * 1024;

class UsageRun implements ProcessorRun {
  private sse: SseUsageReader | undefined;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private charged = false;

  constructor(private readonly ex: Exchange) {}

  responseHeaders(_status: number | undefined, headers: Readonly<Record<string, string>>): void {
    if ((headers['content-type'] ?? '').includes('text/event-stream')) this.sse = new SseUsageReader();
  }

  responseBody(chunk: Buffer): void {
    if (this.sse) {
      this.sse.push(chunk);
      return;
    }
    if (this.size + chunk.length <= KEEP_BYTES) this.chunks.push(chunk);
    this.size += chunk.length;
  }

  async end(): Promise<void> {
    if (this.charged) return;
    this.charged = true;
    const usage = this.usage();
    if (!usage || usage.total === 0) return;
    await this.ex.engine.quotas.charge({ consumer: this.ex.consumer, model: this.ex.model, usage });
    this.ex.audit.write({ kind: 'usage', model: this.ex.model, consumer: this.ex.consumer, decision: 'charged', tokens: usage, requestId: this.ex.requestId });
  }

  /** Reported usage, else an estimate from the request and response text. */
  private usage(): Usage | undefined {
    let reported: Usage | undefined;
    if (this.sse) {
      this.sse.end();
      reported = this.sse.result();
    } else if (this.size > 0 && this.size <= KEEP_BYTES) {
      reported = usageFromJson(Buffer.concat(this.chunks));
    }
    if (reported && !reported.estimated) return reported;
    const input = this.inputEstimate();
    const output = reported?.output ?? (this.size > 0 ? estimateTokens(Buffer.concat(this.chunks).toString('utf8')) : 0);
    return { input, output, total: input + output, estimated: true };
  }

  private inputEstimate(): number {
    const body = this.ex.requestBody;
    if (!body || body.length === 0) return 0;
    try {
      return estimateRequestTokens(JSON.parse(body.toString('utf8')));
    } catch {
      return estimateTokens(body.toString('utf8'));
    }
  }
}

export const usageProcessor: Processor = {
  name: 'usage',
  open: (ex) => (ex.engine.hasQuotas(ex.model) ? new UsageRun(ex) : undefined),
};
