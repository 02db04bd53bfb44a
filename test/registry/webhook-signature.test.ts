import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { DeliveryLedger, WEBHOOK_HEADERS, signDelivery, verifyDelivery } from '../../src/registry/webhook-signature.js';
import { venvBin } from '../harness/venv.js';

/**
 * Webhook signatures as MLflow makes them: the signature MLflow's own delivery code computes (run in the
 * venv's Python) is accepted byte for byte, and every way a delivery can be wrong is refused for its reason.
 */

const SECRET = 'whsec-test-0123456789abcdef';
const BODY = '{"entity": "model_version_alias", "action": "created", "timestamp": "2025-01-01T00:00:00+00:00", "data": {"name": "fraud", "alias": "champion", "version": "2"}}';

function headers(id: string, ts: number | string, signature: string | undefined): Record<string, string> {
  const h: Record<string, string> = { [WEBHOOK_HEADERS.deliveryId]: id, [WEBHOOK_HEADERS.timestamp]: String(ts) };
  if (signature !== undefined) h[WEBHOOK_HEADERS.signature] = signature;
  return h;
}

const verify = (h: Record<string, string | string[]>, body = BODY, nowMs = Date.now(), secrets = [SECRET]) =>
  verifyDelivery({ headers: h, body: Buffer.from(body), secrets, nowMs, maxAgeMs: 300_000 });

describe('MLflow webhook signatures', () => {
  test("accepts the signature MLflow's own delivery code computes, including non-ASCII bodies", () => {
    const id = randomUUID();
    const ts = Math.floor(Date.now() / 1000);
    const body = BODY.replace('fraud', 'fraude-détection');
    const script = 'import sys; from mlflow.webhooks.delivery import _generate_hmac_signature as s; print(s(*sys.argv[1:5]))';
    const fromMlflow = execFileSync(venvBin('python'), ['-c', script, SECRET, id, String(ts), body], { encoding: 'utf8', env: { ...process.env, MLFLOW_DISABLE_TELEMETRY: 'true' } }).trim();
    expect(fromMlflow).toMatch(/^v1,/);
    expect(signDelivery(SECRET, id, ts, body)).toBe(fromMlflow);
    expect(verify(headers(id, ts, fromMlflow), body)).toEqual({ ok: true, deliveryId: id, timestampSeconds: ts });
  }, 60_000);

  test('refuses unsigned, wrongly signed, tampered, stale and malformed deliveries, each for its reason', () => {
    const id = randomUUID();
    const now = Date.now();
    const ts = Math.floor(now / 1000);
    const good = signDelivery(SECRET, id, ts, BODY);
    const reason = (v: ReturnType<typeof verify>): string => (v.ok ? 'ok' : v.reason);
    expect(reason(verify(headers(id, ts, good)))).toBe('ok');
    expect(reason(verify(headers(id, ts, undefined)))).toBe('unsigned');
    expect(reason(verify(headers(id, ts, signDelivery('another-secret-of-16+', id, ts, BODY))))).toBe('bad_signature');
    expect(reason(verify(headers(id, ts, good), BODY.replace('"2"', '"3"')))).toBe('bad_signature');
    // The id and the timestamp are signed too: neither can be changed to slip past the replay check.
    expect(reason(verify(headers(randomUUID(), ts, good)))).toBe('bad_signature');
    expect(reason(verify(headers(id, ts + 1, good)))).toBe('bad_signature');
    expect(reason(verify(headers(id, ts, 'v2,abc')))).toBe('bad_signature');
    const old = ts - 301;
    expect(reason(verify(headers(id, old, signDelivery(SECRET, id, old, BODY)), BODY, now))).toBe('stale');
    const future = ts + 301;
    expect(reason(verify(headers(id, future, signDelivery(SECRET, id, future, BODY)), BODY, now))).toBe('stale');
    expect(reason(verify(headers(id, 'yesterday', good)))).toBe('malformed');
    expect(reason(verify({ ...headers(id, ts, good), [WEBHOOK_HEADERS.signature]: [good, good] }))).toBe('malformed');
    expect(reason(verify(headers('', ts, good)))).toBe('malformed');
  });

  test('during a rotation either secret is accepted, and one of several offered signatures may match', () => {
    const id = randomUUID();
    const ts = Math.floor(Date.now() / 1000);
    const oldSecret = 'the-old-secret-0123456789';
    const secrets = [SECRET, oldSecret];
    expect(verify(headers(id, ts, signDelivery(oldSecret, id, ts, BODY)), BODY, Date.now(), secrets).ok).toBe(true);
    expect(verify(headers(id, ts, signDelivery(SECRET, id, ts, BODY)), BODY, Date.now(), secrets).ok).toBe(true);
    const both = `v1,AAAA ${signDelivery(SECRET, id, ts, BODY)}`;
    expect(verify(headers(id, ts, both)).ok).toBe(true);
    expect(verify(headers(id, ts, signDelivery(oldSecret, id, ts, BODY))).ok).toBe(false);
  });

  test('the ledger refuses a second delivery of an id and forgets ids once they are stale anyway', () => {
    const ledger = new DeliveryLedger(300_000, 3);
    const now = Date.now();
    const ts = Math.floor(now / 1000);
    expect(ledger.admit('a', ts, now)).toBe(true);
    expect(ledger.admit('a', ts, now)).toBe(false);
    expect(ledger.admit('b', ts, now)).toBe(true);
    // Past the window, 'a' would be refused as stale before the ledger is asked, so it may be forgotten.
    expect(ledger.admit('c', ts + 400, now + 400_000)).toBe(true);
    expect(ledger.size).toBe(1);
    // Bounded: the oldest id goes first.
    for (const id of ['d', 'e', 'f']) ledger.admit(id, ts + 400, now + 400_000);
    expect(ledger.size).toBe(3);
    expect(ledger.admit('c', ts + 400, now + 400_000)).toBe(true);
    expect(ledger.admit('f', ts + 400, now + 400_000)).toBe(false);
  });
});
