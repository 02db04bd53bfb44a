import { Header } from '../../../src/contract/filter-wire.js';
import { estimateRequestTokens, estimateTokens } from '../tokenizer.js';
import { SseUsageReader, usageFromJson, type Usage } from '../usage.js';
import { overloaded, type Exchange, type ExchangeOutcome, type PhaseResult, type Processor, type ProcessorRun } from '../processor.js';

/**
 * Token usage: reads what the upstream reports (JSON `usage`, or server-sent events) and charges it to the
 * consumer's token quotas once the exchange is over.
 *  - complete: the reported usage; with nothing reported, a tokenizer estimate of the request and answer.
 *  - aborted (the client left, the upstream broke off, Envoy timed out): usage comes in the last event, so
 *    what was reported so far is a floor, never the bill: the output is the larger of the reported count and
 *    the estimate of the text sent up to the cut, so leaving just before the final event does not make an
 *    answer free.
 *  - refused (Envoy's own 401/403/429, or a refusal before the upstream saw the request): nothing, to anyone.
 * An answer Envoy made itself (a timeout, a reset) is charged for the request only: its text is not the
 * model's.
 */

/** Response bytes kept for a JSON usage block; past this only an SSE stream is still read (incrementally). */
const KEEP_BYTES = 8 * 1024 * 1024;

class UsageRun implements ProcessorRun {
  private sse: SseUsageReader | undefined;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private kept = 0;
  private charged = false;

  constructor(private readonly ex: Exchange) {}

  responseHeaders(_status: number | undefined, headers: Readonly<Record<string, string>>): void {
    if ((headers['content-type'] ?? '').includes('text/event-stream')) this.sse = new SseUsageReader();
  }

  responseBody(chunk: Buffer): PhaseResult {
    if (this.sse) {
      this.sse.push(chunk);
      return this.ex.keep('usage', this.sse.heldBytes) ? undefined : { refuse: overloaded() };
    }
    if (this.size + chunk.length <= KEEP_BYTES) {
      if (!this.ex.keep('usage', this.kept + chunk.length)) return { refuse: overloaded() };
      this.chunks.push(chunk);
      this.kept += chunk.length;
    }
    this.size += chunk.length;
    return undefined;
  }

  async end(outcome: ExchangeOutcome): Promise<void> {
    if (this.charged) return;
    this.charged = true;
    if (outcome === 'refused') return;
    // An answer the LLM cache served cost the model nothing; it is charged only if the model says so.
    // Only for a model that caches: every attempt of its requests passes the adapter, which sets or removes the
    // header, so an upstream cannot claim a hit.
    const cache = this.ex.rules.llm?.cache;
    if (cache && !cache.chargeHits && this.ex.responseHeaders[Header.llmCache] === 'hit') return;
    const usage = outcome === 'complete' && this.ex.responseFromUpstream !== false ? this.completeUsage() : this.partialUsage();
    if (!usage || usage.total === 0) return;
    await this.ex.engine.quotas.charge({ consumer: this.ex.consumer, model: this.ex.model, usage });
    this.ex.audit.write({ kind: 'usage', model: this.ex.model, consumer: this.ex.consumer, decision: 'charged', outcome: outcome === 'complete' ? 'complete' : 'aborted', tokens: usage, requestId: this.ex.requestId });
  }

  /** Reported usage, else an estimate from the request and response text. */
  private completeUsage(): Usage | undefined {
    const reported = this.reported();
    if (reported && !reported.estimated) return reported;
    const input = this.inputEstimate();
    const output = reported?.output ?? this.outputEstimate();
    return { input, output, total: input + output, estimated: true };
  }

  /**
   * An exchange cut short. The input an upstream reported is final (it reports it once the prompt is read);
   * the output it reported so far is not (Anthropic says 1 at the start), so it is the larger of that and
   * the text sent until the cut.
   */
  private partialUsage(): Usage {
    const reported = this.ex.responseFromUpstream === false ? undefined : this.reported();
    const input = reported && !reported.estimated ? reported.input : this.inputEstimate();
    const output = this.ex.responseFromUpstream === false ? 0 : Math.max(reported?.output ?? 0, this.outputEstimate());
    return { input, output, total: input + output, estimated: true };
  }

  private reported(): Usage | undefined {
    if (this.sse) {
      this.sse.end();
      return this.sse.result();
    }
    if (this.size > 0 && this.size <= KEEP_BYTES) return usageFromJson(Buffer.concat(this.chunks));
    return undefined;
  }

  private outputEstimate(): number {
    if (this.sse) return this.sse.generatedTokens;
    return this.size > 0 ? estimateTokens(Buffer.concat(this.chunks).toString('utf8')) : 0;
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
