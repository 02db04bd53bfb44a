import type { VersionProcessingRules } from '../../../src/contract/filter-policy.js';
import { decisions } from '../../service/metrics.js';
import type { Exchange, PhaseResult, Processor, ProcessorRun, Refusal } from '../processor.js';
import { isInferencePath } from '../protocol/convert.js';
import { validateRequest } from '../signature/validate.js';

/**
 * Input validation from the model version's MLflow signature, on the version's own cluster (so the
 * signature is the one of the version Envoy chose). An inference request whose body the signature does not
 * accept is refused with 400 `invalid_input` and the list of problems, and never reaches the model. A
 * version without a signature passes everything (the control plane flags it). Only JSON is checked: another
 * content type on a checked model is a 415, so a CSV body cannot slip past the check.
 */

class SignatureRun implements ProcessorRun {
  private inference = false;
  private contentType = '';

  constructor(
    private readonly ex: Exchange,
    private readonly rules: VersionProcessingRules & { signature: NonNullable<VersionProcessingRules['signature']> },
  ) {}

  requestHeaders(headers: Readonly<Record<string, string>>): PhaseResult {
    const rm = this.ex.rules.registeredModel ?? this.ex.model;
    this.inference = (headers[':method'] ?? 'POST') === 'POST' && isInferencePath(headers[':path'] ?? '', this.ex.rules.protocol ?? 'mlflow', rm);
    this.contentType = (headers['content-type'] ?? '').toLowerCase();
    if (this.inference && this.contentType !== '' && !this.contentType.includes('json')) {
      return this.refuse({ status: 415, code: 'unsupported_media_type', message: `model '${this.ex.model}' checks request bodies against its signature, which needs application/json (got ${this.contentType})` }, 'media_type');
    }
    return undefined;
  }

  requestBody(body: Buffer): PhaseResult {
    if (!this.inference) return undefined;
    const limit = this.ex.rules.maxBodyBytes;
    if (limit !== undefined && body.length > limit) {
      return this.refuse({ status: 413, code: 'body_too_large', message: `body of ${body.length} bytes is over this model's limit of ${limit} bytes (validation.maxBodyBytes)` }, 'too_large');
    }
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      return this.refuse({ status: 400, code: 'invalid_json', message: 'the request body is not JSON' }, 'invalid_json');
    }
    const { problems, truncated } = validateRequest(doc, this.rules.signature, this.ex.rules.protocol ?? 'mlflow');
    if (problems.length === 0) {
      decisions.inc({ stage: 'signature', result: 'allow', reason: 'valid' });
      return undefined;
    }
    const count = truncated ? `more than ${problems.length}` : String(problems.length);
    return this.refuse(
      {
        status: 400,
        code: 'invalid_input',
        message: `the request does not match the input signature of model '${this.ex.model}' version ${this.rules.version}: ${count} problem${problems.length === 1 ? '' : 's'}`,
        extra: { model: this.ex.model, version: this.rules.version, problems, ...(truncated && { truncated: true }) },
      },
      'invalid_input',
    );
  }

  private refuse(refusal: Refusal, reason: string): PhaseResult {
    decisions.inc({ stage: 'signature', result: 'deny', reason });
    this.ex.audit.write({ kind: 'signature', model: this.ex.model, version: this.rules.version, consumer: this.ex.consumer, decision: 'deny', code: refusal.code, status: refusal.status, requestId: this.ex.requestId });
    return { refuse: refusal };
  }
}

export const signatureProcessor: Processor = {
  name: 'signature',
  open: (ex) => {
    if (ex.version === undefined) return undefined;
    const rules = ex.engine.versionProcessing(ex.model, ex.version);
    if (!rules?.validateInput) return undefined;
    if (!rules.signature) {
      decisions.inc({ stage: 'signature', result: 'allow', reason: 'no_signature' });
      return undefined;
    }
    return new SignatureRun(ex, { ...rules, signature: rules.signature });
  },
};
