import { Header } from '../../../src/contract/filter-wire.js';
import { genAiOperation, genAiRequestDuration, genAiTimePerOutputToken, genAiTimeToFirstToken, genAiTokenUsage } from '../../llm/genai-metrics.js';
import type { Exchange, ExchangeOutcome, PhaseResult, Processor, ProcessorRun } from '../processor.js';

/**
 * GenAI metrics (filters/llm/genai-metrics.ts) and the overhead header of an LLM model's answers. Runs after
 * the usage processor, whose settled usage it reads at the end of the exchange. Times are taken on the
 * filter service's clock from when the route's ext_proc stream opened (the request's headers reaching the
 * model's routes), so they include the upstream's time and Envoy's, not the client's network.
 *
 * x-flowgate-overhead-ms, set on the answer's headers: the time the filter service spent on this exchange's
 * route stream up to them (request headers and body: credentials are ext_authz's, in another call), its own
 * processing only, not the time messages waited in Envoy or on the wire.
 */

class GenAiRun implements ProcessorRun {
  private firstByteAt: number | undefined;
  private stream = false;

  constructor(
    private readonly ex: Exchange,
    private readonly provider: string,
  ) {}

  responseHeaders(_status: number | undefined, headers: Readonly<Record<string, string>>): PhaseResult {
    this.stream = (headers['content-type'] ?? '').includes('text/event-stream');
    return { headers: { set: { [Header.overheadMs]: this.ex.processingMs.toFixed(2) } } };
  }

  responseBody(chunk: Buffer): void {
    if (this.firstByteAt === undefined && chunk.length > 0) this.firstByteAt = performance.now();
  }

  end(outcome: ExchangeOutcome): void {
    if (outcome !== 'complete' || this.ex.responseFromUpstream === false) return;
    const status = this.ex.responseStatus ?? 0;
    if (status < 200 || status >= 300) return;
    const now = performance.now();
    const usage = this.ex.usage;
    const labels = {
      gen_ai_operation_name: genAiOperation(this.ex.requestHeaders[':path'] ?? ''),
      gen_ai_request_model: this.ex.model,
      gen_ai_response_model: usage?.model ?? this.ex.model,
      gen_ai_provider_name: this.provider,
      version: usage?.version ?? this.ex.responseHeaders[Header.servedVersion] ?? '',
    };
    genAiRequestDuration.observe(labels, (now - this.ex.startedAt) / 1000);
    if (usage) {
      genAiTokenUsage.observe({ ...labels, gen_ai_token_type: 'input' }, usage.input);
      if (labels.gen_ai_operation_name !== 'embeddings') genAiTokenUsage.observe({ ...labels, gen_ai_token_type: 'output' }, usage.output);
    }
    if (this.stream && this.firstByteAt !== undefined) {
      genAiTimeToFirstToken.observe(labels, (this.firstByteAt - this.ex.startedAt) / 1000);
      if (usage && usage.output > 1) genAiTimePerOutputToken.observe(labels, (now - this.firstByteAt) / 1000 / (usage.output - 1));
    }
  }
}

export const genAiProcessor: Processor = {
  name: 'genai',
  open: (ex) => {
    const genAi = ex.rules.llm?.genAi;
    return genAi ? new GenAiRun(ex, genAi.providerName) : undefined;
  },
};
