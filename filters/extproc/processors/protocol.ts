import type { ModelProtocol, VersionProcessingRules } from '../../../src/contract/filter-policy.js';
import { decisions } from '../../service/metrics.js';
import type { Exchange, PhaseResult, Processor, ProcessorRun } from '../processor.js';
import { mlflowToOipRequest, mlflowToOipResponse, oipMetadata, oipToMlflowRequest, oipToMlflowResponse, versionRoute, type Converted, type VersionRoute } from '../protocol/convert.js';

/**
 * One stable public API whatever a version speaks: on the cluster of a version whose protocol is not the
 * model's, the request path and body are converted from the model's public protocol to the version's, and
 * the answer back. An OIP model-metadata call to an MLflow version is answered from its signature. A body
 * that cannot be converted is a 400 in the caller's protocol; an answer that cannot be, a 502.
 */

const JSON_TYPE = 'application/json';

class ProtocolRun implements ProcessorRun {
  private route: VersionRoute | undefined;
  private requestId: string | undefined;
  private status = 200;
  private readonly chunks: Buffer[] = [];

  constructor(
    private readonly ex: Exchange,
    private readonly rules: VersionProcessingRules,
    private readonly publicProtocol: ModelProtocol,
  ) {}

  private get registeredModel(): string {
    return this.ex.rules.registeredModel ?? this.ex.model;
  }

  requestHeaders(headers: Readonly<Record<string, string>>): PhaseResult {
    const route = versionRoute(headers[':path'] ?? '/', this.publicProtocol, this.rules.protocol, this.registeredModel);
    this.route = route;
    if ('metadata' in route) {
      decisions.inc({ stage: 'protocol', result: 'allow', reason: 'metadata' });
      return { refuse: { status: 200, code: 'metadata', message: '', body: `${JSON.stringify(oipMetadata(this.registeredModel, this.rules.version, this.rules.signature))}\n` } };
    }
    const set: Record<string, string> = { ':path': route.path };
    if (route.infer) set['content-type'] = JSON_TYPE;
    // A converted body has a new length; Envoy frames it again without the old header.
    return { headers: { set, ...(route.infer && { remove: ['content-length'] }) } };
  }

  requestBody(body: Buffer): PhaseResult {
    if (!this.route || 'metadata' in this.route || !this.route.infer) return undefined;
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      return this.badRequest('the request body is not JSON');
    }
    if (doc !== null && typeof doc === 'object' && typeof (doc as { id?: unknown }).id === 'string') this.requestId = (doc as { id: string }).id;
    const converted: Converted = this.publicProtocol === 'mlflow' ? mlflowToOipRequest(doc, this.rules.signature) : oipToMlflowRequest(doc, this.rules.signature);
    if (!converted.ok) return this.badRequest(converted.message);
    decisions.inc({ stage: 'protocol', result: 'allow', reason: `${this.publicProtocol}_to_${this.rules.protocol}` });
    return { body: Buffer.from(JSON.stringify(converted.body)) };
  }

  responseHeaders(status: number | undefined): PhaseResult {
    this.status = status ?? 200;
    if (!this.route || 'metadata' in this.route || !this.route.infer) return undefined;
    return { headers: { set: { 'content-type': JSON_TYPE }, remove: ['content-length'] } };
  }

  responseBody(chunk: Buffer, last: boolean): PhaseResult {
    if (!this.route || 'metadata' in this.route || !this.route.infer) return undefined;
    this.chunks.push(chunk);
    if (!last) return undefined;
    const text = Buffer.concat(this.chunks).toString('utf8');
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      if (this.status < 400) {
        decisions.inc({ stage: 'protocol', result: 'deny', reason: 'bad_upstream_json' });
        return { refuse: { status: 502, code: 'bad_upstream_json', message: `model '${this.ex.model}' version ${this.rules.version} answered with a body that is not JSON` } };
      }
      doc = { message: text.slice(0, 500), error: text.slice(0, 500) };
    }
    const answer =
      this.publicProtocol === 'mlflow'
        ? oipToMlflowResponse(doc, this.status)
        : mlflowToOipResponse(doc, this.status, { model: this.registeredModel, version: this.rules.version, id: this.requestId, signature: this.rules.signature });
    return { body: Buffer.from(JSON.stringify(answer)) };
  }

  /** A 400 in the caller's own protocol's error shape. */
  private badRequest(message: string): PhaseResult {
    decisions.inc({ stage: 'protocol', result: 'deny', reason: 'unconvertible' });
    const body = this.publicProtocol === 'oip' ? { error: message } : { error_code: 'BAD_REQUEST', message };
    return { refuse: { status: 400, code: 'unconvertible_input', message, body: `${JSON.stringify(body)}\n` } };
  }
}

export const protocolProcessor: Processor = {
  name: 'protocol',
  open: (ex) => {
    if (ex.version === undefined) return undefined;
    const rules = ex.engine.versionProcessing(ex.model, ex.version);
    const publicProtocol = ex.rules.protocol ?? 'mlflow';
    if (!rules || rules.protocol === publicProtocol) return undefined;
    return new ProtocolRun(ex, rules, publicProtocol);
  },
};
