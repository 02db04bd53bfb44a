import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import { untrusted } from '../../src/observability/untrusted.js';

/**
 * The audit log: one JSON line per authorization, rate-limit, quota, masking, signature and pipeline decision, to stdout or a file
 * (Gateway.audit). It names the model, the consumer, the decision and why, the request id, and for masking
 * the rule and JSON path that fired; never a credential, and never a value that was masked.
 */

export interface AuditEvent {
  readonly kind: 'authz' | 'ratelimit' | 'quota' | 'masking' | 'usage' | 'body' | 'signature' | 'pipeline' | 'guardrail' | 'budget' | 'prompt';
  readonly model: string;
  /** The model version (signature checks), or the failed step (pipelines). */
  readonly version?: string;
  readonly step?: string;
  readonly consumer?: string | undefined;
  readonly decision: 'allow' | 'deny' | 'masked' | 'charged';
  readonly code?: string;
  readonly status?: number;
  readonly requestId?: string | undefined;
  readonly findings?: readonly { readonly rule: string; readonly path: string }[];
  readonly tokens?: { readonly input: number; readonly output: number; readonly total: number; readonly estimated: boolean };
  /** Guardrails: the rule that fired and on which side (never the text it matched). */
  readonly rule?: string;
  readonly direction?: 'input' | 'output';
  readonly action?: 'block' | 'mask' | 'monitor';
  /** Usage of a priced model: the answer's cost, in the price table's currency. */
  readonly cost?: number;
  readonly currency?: string;
  /** Budgets: the budget that refused (as written in the policy). */
  readonly budget?: string | undefined;
  /** Prompts: the prompt version rendered into the request, NAME/VERSION. */
  readonly prompt?: string;
  /** Usage: how the exchange ended (an aborted one is charged an estimate). */
  readonly outcome?: 'complete' | 'aborted';
}

export interface AuditLog {
  write(event: AuditEvent): void;
}

/** An audit log to stdout or to an absolute file path (appended). */
export function openAuditLog(sink: 'stdout' | 'file', path?: string): AuditLog {
  let destination: pino.DestinationStream;
  if (sink === 'file' && path) {
    mkdirSync(dirname(path), { recursive: true });
    destination = pino.destination({ dest: path, append: true, sync: false, mkdir: true });
  } else {
    destination = pino.destination({ fd: 1, sync: false });
  }
  const log = pino({ base: { log: 'flowgate.audit' }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }, destination);
  // The request id is the client's x-request-id when Envoy keeps it: cut like any text a client chose.
  return { write: (event) => log.info(event.requestId === undefined ? event : { ...event, requestId: untrusted(event.requestId) }) };
}

/** An audit log that keeps events in memory (tests, benchmarks). */
export class MemoryAuditLog implements AuditLog {
  readonly events: AuditEvent[] = [];
  write(event: AuditEvent): void {
    this.events.push(event);
  }
}
