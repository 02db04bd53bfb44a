import { Header, LLM_METADATA } from '../../../src/contract/filter-wire.js';
import { costOf } from '../../llm/pricing.js';
import { llmCost } from '../../service/metrics.js';
import { estimateRequestTokens, estimateTokens } from '../tokenizer.js';
import { UsageChunkStripper } from '../usage-chunk.js';
import { SseUsageReader, usageFromJson, type Usage } from '../usage.js';
import { overloaded, type Exchange, type ExchangeOutcome, type PhaseResult, type Processor, type ProcessorRun, type SettledUsage } from '../processor.js';

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
 *
 * A stream the LLM router asked for usage the caller did not ask for (Header.llmUsageAdded) has its usage-only
 * chunk removed here, after it is read. With a price table, the usage is priced at the prices of the model
 * and version that served the answer (x-flowgate-model, x-flowgate-model-version): counted per consumer in
 * flowgate_llm_cost_total, and set as Envoy dynamic metadata (LLM_METADATA) on the answer's last message so
 * the access log carries it.
 */

/** Response bytes kept for a JSON usage block; past this only an SSE stream is still read (incrementally). */
const KEEP_BYTES = 8 * 1024 * 1024;

class UsageRun implements ProcessorRun {
  private sse: SseUsageReader | undefined;
  private strip = false;
  private stripper: UsageChunkStripper | undefined;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private kept = 0;
  private charged = false;
  private sseEnded = false;

  constructor(private readonly ex: Exchange) {}

  requestHeaders(headers: Readonly<Record<string, string>>): void {
    this.strip = headers[Header.llmUsageAdded] === '1';
  }

  responseHeaders(_status: number | undefined, headers: Readonly<Record<string, string>>): void {
    if (!(headers['content-type'] ?? '').includes('text/event-stream')) return;
    this.sse = new SseUsageReader();
    // An encoded stream cannot be rewritten piecewise: its usage chunk is left in (the router asked for it).
    if (this.strip && (headers['content-encoding'] ?? 'identity') === 'identity') this.stripper = new UsageChunkStripper();
  }

  responseBody(chunk: Buffer, last: boolean): PhaseResult {
    if (this.sse) {
      this.sse.push(chunk);
      if (!this.ex.keep('usage', this.sse.heldBytes + (this.stripper?.heldBytes ?? 0))) return { refuse: overloaded() };
    } else if (this.size + chunk.length <= KEEP_BYTES) {
      if (!this.ex.keep('usage', this.kept + chunk.length)) return { refuse: overloaded() };
      this.chunks.push(chunk);
      this.kept += chunk.length;
    }
    if (!this.sse) this.size += chunk.length;
    const body = this.stripper?.push(chunk, last);
    const metadata = last ? this.settleComplete() : undefined;
    if (body === undefined && metadata === undefined) return undefined;
    return { ...(body !== undefined && { body }), ...(metadata && { metadata }) };
  }

  /** At the last byte of an upstream's answer: the usage and cost are final; the cost goes into Envoy's metadata. */
  private settleComplete(): Record<string, Record<string, unknown>> | undefined {
    if (this.ex.responseFromUpstream === false) return undefined;
    const settled = this.settle(this.completeUsage());
    if (!settled?.cost) return undefined;
    return {
      [LLM_METADATA.namespace]: {
        [LLM_METADATA.cost]: settled.cost.amount,
        [LLM_METADATA.currency]: settled.cost.currency,
        [LLM_METADATA.inputTokens]: settled.input,
        [LLM_METADATA.outputTokens]: settled.output,
      },
    };
  }

  /** Records the exchange's usage (and its cost) on the exchange, once. */
  private settle(usage: Usage | undefined): SettledUsage | undefined {
    if (this.ex.usage || !usage) return this.ex.usage;
    const model = this.servedModel();
    const version = this.ex.responseHeaders[Header.servedVersion] || undefined;
    const pricing = this.ex.engine.model(model)?.llm?.pricing;
    this.ex.usage = { ...usage, model, version, cost: pricing ? costOf(pricing, version, usage) : undefined };
    return this.ex.usage;
  }

  /** The policy model that served the answer (after a fallback, the fallback's), else the one asked for. */
  private servedModel(): string {
    const served = this.ex.responseHeaders[Header.servedModel];
    return served && this.ex.engine.model(served) ? served : this.ex.model;
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
    const complete = outcome === 'complete' && this.ex.responseFromUpstream !== false;
    const usage = complete ? (this.ex.usage ?? this.settle(this.completeUsage())) : this.settle(this.partialUsage());
    if (!usage || usage.total === 0) return;
    if (usage.cost) {
      const consumer = this.ex.engine.quotas.consumerLabel(this.ex.consumer);
      llmCost.inc({ model: usage.model, version: usage.version ?? '', consumer, currency: usage.cost.currency }, usage.cost.amount);
    }
    await this.ex.engine.quotas.charge({ consumer: this.ex.consumer, model: this.ex.model, usage });
    if (!this.ex.engine.hasQuotas(this.ex.model) && !usage.cost) return;
    this.ex.audit.write({
      kind: 'usage',
      model: this.ex.model,
      consumer: this.ex.consumer,
      decision: 'charged',
      outcome: complete ? 'complete' : 'aborted',
      tokens: { input: usage.input, output: usage.output, total: usage.total, estimated: usage.estimated },
      ...(usage.cost && { cost: usage.cost.amount, currency: usage.cost.currency }),
      requestId: this.ex.requestId,
    });
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
      if (!this.sseEnded) this.sse.end();
      this.sseEnded = true;
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
  open: (ex) => (ex.engine.readsUsage(ex.model) ? new UsageRun(ex) : undefined),
};
