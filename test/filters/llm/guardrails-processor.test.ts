import { describe, expect, it } from 'vitest';
import type { ModelRules } from '../../../src/contract/filter-policy.js';
import type { GuardrailRule } from '../../../src/contract/guardrails.js';
import type { Exchange, PhaseResult, ProcessorRun } from '../../../filters/extproc/processor.js';
import { guardrailsProcessor } from '../../../filters/extproc/processors/guardrails.js';
import type { AuditEvent } from '../../../filters/service/audit.js';
import type { FilterEngine } from '../../../filters/service/engine.js';

/** The guardrails processor on one exchange, as the ext_proc stream handler drives it. */

const rule = (partial: Partial<GuardrailRule> & Pick<GuardrailRule, 'name' | 'type'>): GuardrailRule => ({ action: 'block', patterns: [], pii: [], failOpen: false, ...partial });

function open(guardrails: ModelRules['guardrails']): { run: ProcessorRun; audit: AuditEvent[] } {
  const audit: AuditEvent[] = [];
  const rules = { name: 'm', failOpen: false, pinning: false, live: [], requestLimits: [], tokenQuotas: [], guardrails } as ModelRules;
  const ex: Exchange = {
    model: 'm',
    rules,
    engine: {} as FilterEngine,
    audit: { write: (e) => audit.push(e) },
    consumer: 'acme',
    requestId: 'r1',
    requestHeaders: {},
    requestBody: undefined,
    responseStatus: undefined,
    responseHeaders: {},
    responseFromUpstream: undefined,
    keep: () => true,
    usage: undefined,
    startedAt: 0,
    processingMs: 0,
  };
  const run = guardrailsProcessor.open(ex);
  if (!run) throw new Error('the processor did not open');
  return { run, audit };
}

const bodyOf = (r: PhaseResult): string | undefined => (r && 'body' in r && r.body ? r.body.toString('utf8') : undefined);
const event = (content: string): string => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`;

describe('the guardrails processor', () => {
  it('does not open for a model without guardrails', () => {
    const rules = { name: 'm', failOpen: false, pinning: false, live: [], requestLimits: [], tokenQuotas: [] } as ModelRules;
    expect(guardrailsProcessor.open({ rules } as Exchange)).toBeUndefined();
  });

  it('refuses a blocked request with 400 in the API shape, naming the rule and not the text; audits the hit', async () => {
    const { run, audit } = open({ input: [rule({ name: 'no-falcon', type: 'deny_patterns', patterns: ['falcon'] })], output: [] });
    await run.requestHeaders?.({ ':path': '/v1/chat/completions' });
    const out = await run.requestBody?.(Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'falcon?' }] })));
    expect(out && 'refuse' in out && out.refuse.status).toBe(400);
    const body = JSON.parse((out as { refuse: { body: string } }).refuse.body) as { error: { code: string; type: string; message: string } };
    expect(body.error).toMatchObject({ code: 'guardrail_blocked', type: 'invalid_request_error' });
    expect(body.error.message).toContain('no-falcon');
    expect(body.error.message).not.toContain('falcon?');
    expect(audit).toEqual([expect.objectContaining({ kind: 'guardrail', rule: 'no-falcon', direction: 'input', action: 'block', decision: 'deny' })]);
    expect(JSON.stringify(audit)).not.toContain('falcon?');
  });

  it('masks the request body and drops its length', async () => {
    const { run } = open({ input: [rule({ name: 'pii', type: 'pii', action: 'mask', pii: ['email'] })], output: [] });
    expect(await run.requestHeaders?.({ ':path': '/v1/completions' })).toEqual({ headers: { remove: ['content-length'] } });
    const out = await run.requestBody?.(Buffer.from(JSON.stringify({ model: 'm', prompt: 'mail bob@example.com' })));
    expect(JSON.parse(bodyOf(out) ?? '{}')).toEqual({ model: 'm', prompt: 'mail [EMAIL]' });
  });

  it('refuses a JSON answer with 422, and leaves an error answer alone', async () => {
    const rules = { input: [], output: [rule({ name: 'leak', type: 'deny_patterns', patterns: ['internal-only'] })] };
    const answer = Buffer.from(JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content: 'this is internal-only' } }] }));
    const { run } = open(rules);
    await run.requestHeaders?.({ ':path': '/v1/chat/completions' });
    await run.responseHeaders?.(200, { 'content-type': 'application/json' }, false);
    const out = await run.responseBody?.(answer, true);
    expect(out && 'refuse' in out && [out.refuse.status, out.refuse.code]).toEqual([422, 'guardrail_blocked']);
    const failed = open(rules).run;
    await failed.responseHeaders?.(500, { 'content-type': 'application/json' }, false);
    expect(await failed.responseBody?.(answer, true)).toBeUndefined();
  });

  it('streams: switches to STREAMED, passes clean chunks, ends a split match with an error event and drops the rest', async () => {
    const { run, audit } = open({ input: [], output: [rule({ name: 'code', type: 'deny_patterns', patterns: ['secret code'] })] });
    await run.requestHeaders?.({ ':path': '/v1/chat/completions' });
    const headers = await run.responseHeaders?.(200, { 'content-type': 'text/event-stream' }, false);
    expect(headers && 'modeOverride' in headers && headers.modeOverride).toMatchObject({ response_body_mode: 'STREAMED' });
    expect(await run.responseBody?.(Buffer.from(event('the secret')), false)).toBeUndefined();
    // The event is split inside its JSON too: the parser keeps the partial line.
    const second = event(' code is 42');
    expect(await run.responseBody?.(Buffer.from(second.slice(0, 20)), false)).toBeUndefined();
    const cut = bodyOf(await run.responseBody?.(Buffer.from(second.slice(20)), false));
    expect(cut).toMatch(/^data: \{"error":\{.*"code":"guardrail_blocked"/);
    expect(cut).not.toContain('42');
    const rest = await run.responseBody?.(Buffer.from(`${event(' more')}data: [DONE]\n\n`), true);
    expect(rest && 'body' in rest && rest.body?.length).toBe(0);
    expect(audit.filter((a) => a.kind === 'guardrail').map((a) => a.rule)).toEqual(['code']);
  });

  it('refuses a streamed request to a model whose output rules mask', async () => {
    const { run } = open({ input: [], output: [rule({ name: 'pii', type: 'pii', action: 'mask', pii: ['email'] })] });
    await run.requestHeaders?.({ ':path': '/v1/chat/completions' });
    const out = await run.requestBody?.(Buffer.from(JSON.stringify({ model: 'm', stream: true, messages: [] })));
    expect(out && 'refuse' in out && [out.refuse.status, out.refuse.code]).toEqual([400, 'guardrail_stream_unsupported']);
  });

  it('fails closed on a request that is not JSON, and open when every rule says failOpen', async () => {
    const closed = open({ input: [rule({ name: 'x', type: 'deny_patterns', patterns: ['x'] })], output: [] }).run;
    const out = await closed.requestBody?.(Buffer.from('not json'));
    expect(out && 'refuse' in out && out.refuse.status).toBe(400);
    const opened = open({ input: [rule({ name: 'x', type: 'deny_patterns', patterns: ['x'], failOpen: true })], output: [] }).run;
    expect(await opened.requestBody?.(Buffer.from('not json'))).toBeUndefined();
  });
});
