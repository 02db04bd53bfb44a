import { checkBodySize } from '../masking.js';
import { decisions } from '../../service/metrics.js';
import { overloaded, type Exchange, type PhaseResult, type Processor, type ProcessorRun, type Refusal } from '../processor.js';

/**
 * Masking: rewrites the request body before it reaches the model and the response body before it reaches
 * the client, as the model's masking rules say (fields, built-in detectors, custom patterns). Bodies over
 * the model's limit are refused (413) rather than passed uninspected; a request that is not JSON is a 400.
 */

class MaskingRun implements ProcessorRun {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private responseType = '';

  constructor(
    private readonly ex: Exchange,
    private readonly masking: NonNullable<ReturnType<Exchange['engine']['maskingOf']>>,
  ) {}

  requestHeaders(): PhaseResult {
    // A rewritten body has a new length; Envoy frames it again without the old header.
    return this.masking.request ? { headers: { remove: ['content-length'] } } : undefined;
  }

  requestBody(body: Buffer): PhaseResult {
    const masker = this.masking.request;
    if (!masker) return undefined;
    const tooLarge = checkBodySize(body.length, this.masking.maxBodyBytes);
    if (tooLarge) return this.refuse('request', { status: tooLarge.status, code: tooLarge.error, message: tooLarge.message });
    const masked = masker.maskJson(body);
    if (!masked.ok) return this.refuse('request', { status: masked.status, code: masked.error, message: masked.message });
    this.audit(masked.findings);
    return masked.changed ? { body: Buffer.from(masked.body) } : undefined;
  }

  responseHeaders(_status: number | undefined, headers: Readonly<Record<string, string>>): PhaseResult {
    this.responseType = headers['content-type'] ?? '';
    return this.masking.response ? { headers: { remove: ['content-length'] } } : undefined;
  }

  responseBody(chunk: Buffer, last: boolean): PhaseResult {
    const masker = this.masking.response;
    if (!masker) return undefined;
    this.kept += chunk.length;
    if (!this.ex.keep('masking', this.kept)) return this.refuse('response', overloaded());
    this.chunks.push(chunk);
    if (!last) return undefined;
    const whole = Buffer.concat(this.chunks);
    const tooLarge = checkBodySize(whole.length, this.masking.maxBodyBytes);
    if (tooLarge) return this.refuse('response', { status: tooLarge.status, code: tooLarge.error, message: tooLarge.message });
    const masked = this.responseType.includes('json') ? masker.maskJson(whole) : { ok: true as const, ...masker.maskText(whole.toString('utf8')) };
    if (!masked.ok) return this.refuse('response', { status: 502, code: 'bad_upstream_json', message: 'the model answered with JSON that cannot be masked' });
    this.audit(masked.findings);
    const text = 'body' in masked ? masked.body : masked.text;
    return masked.changed ? { body: Buffer.from(text) } : undefined;
  }

  private refuse(direction: 'request' | 'response', refusal: Refusal): PhaseResult {
    decisions.inc({ stage: 'masking', result: 'deny', reason: refusal.code });
    this.ex.audit.write({ kind: 'masking', model: this.ex.model, consumer: this.ex.consumer, decision: 'deny', code: `${direction}_${refusal.code}`, status: refusal.status, requestId: this.ex.requestId });
    return { refuse: refusal };
  }

  private audit(findings: readonly { rule: string; path: string }[]): void {
    if (findings.length === 0) return;
    decisions.inc({ stage: 'masking', result: 'allow', reason: 'masked' });
    this.ex.audit.write({ kind: 'masking', model: this.ex.model, consumer: this.ex.consumer, decision: 'masked', findings, requestId: this.ex.requestId });
  }
}

export const maskingProcessor: Processor = {
  name: 'masking',
  open: (ex) => {
    const masking = ex.engine.maskingOf(ex.model);
    return masking && (masking.request || masking.response) ? new MaskingRun(ex, masking) : undefined;
  },
};
