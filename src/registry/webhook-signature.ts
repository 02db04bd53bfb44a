import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * MLflow 3 webhook signatures (mlflow/webhooks/delivery.py, after the Standard Webhooks scheme): MLflow sends
 * `X-MLflow-Delivery-Id` (a UUID), `X-MLflow-Timestamp` (Unix seconds) and, when the webhook has a secret,
 * `X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`. A delivery is
 * accepted only when signed by one of the configured secrets (several during a rotation), fresh, and not
 * seen before. Pure apart from the ledger's memory; the clock is passed in.
 */

export const WEBHOOK_HEADERS = {
  signature: 'x-mlflow-signature',
  timestamp: 'x-mlflow-timestamp',
  deliveryId: 'x-mlflow-delivery-id',
} as const;

const SIGNATURE_VERSION = 'v1';

/** Why a delivery is refused; each is a metric label and the `error` of the answer. */
export type DeliveryRefusal = 'unsigned' | 'bad_signature' | 'stale' | 'replayed' | 'malformed';

export type DeliveryVerdict =
  | { readonly ok: true; readonly deliveryId: string; readonly timestampSeconds: number }
  | { readonly ok: false; readonly reason: DeliveryRefusal; readonly message: string };

/** The signature header MLflow would send for this delivery (tests and benchmarks sign with it too). */
export function signDelivery(secret: string, deliveryId: string, timestampSeconds: number | string, body: Buffer | string): string {
  const mac = createHmac('sha256', Buffer.from(secret, 'utf8'));
  mac.update(`${deliveryId}.${timestampSeconds}.`, 'utf8');
  mac.update(typeof body === 'string' ? Buffer.from(body, 'utf8') : body);
  return `${SIGNATURE_VERSION},${mac.digest('base64')}`;
}

type Headers = Readonly<Record<string, string | readonly string[] | undefined>>;

/** One header's value; a header sent twice is not a delivery MLflow makes. */
function single(headers: Headers, name: string): string | undefined | null {
  const v = headers[name];
  if (Array.isArray(v)) return v.length === 1 ? (v[0] as string) : null;
  return v as string | undefined;
}

export interface VerifyInput {
  readonly headers: Headers;
  /** The body exactly as received: the signature covers its bytes. */
  readonly body: Buffer;
  /** Every secret currently accepted (one, or two while rotating). */
  readonly secrets: readonly string[];
  readonly nowMs: number;
  /** How far a timestamp may be from now, either way. */
  readonly maxAgeMs: number;
}

/** Checks the headers, the signature and the timestamp of a delivery (not replays: see DeliveryLedger). */
export function verifyDelivery(input: VerifyInput): DeliveryVerdict {
  const refuse = (reason: DeliveryRefusal, message: string): DeliveryVerdict => ({ ok: false, reason, message });
  const signature = single(input.headers, WEBHOOK_HEADERS.signature);
  const timestamp = single(input.headers, WEBHOOK_HEADERS.timestamp);
  const deliveryId = single(input.headers, WEBHOOK_HEADERS.deliveryId);
  if (signature === undefined || signature === '') return refuse('unsigned', `no ${WEBHOOK_HEADERS.signature} header: give the MLflow webhook a secret`);
  if (signature === null || timestamp === null || deliveryId === null) return refuse('malformed', 'a webhook header is repeated');
  if (timestamp === undefined || !/^\d{1,12}$/.test(timestamp)) return refuse('malformed', `${WEBHOOK_HEADERS.timestamp} must be Unix seconds`);
  if (deliveryId === undefined || !/^[A-Za-z0-9._-]{1,128}$/.test(deliveryId)) return refuse('malformed', `${WEBHOOK_HEADERS.deliveryId} is missing or not an id`);
  // Several space-separated signatures are allowed by the Standard Webhooks scheme; MLflow sends one.
  const offered = signature
    .split(' ')
    .filter((s) => s.startsWith(`${SIGNATURE_VERSION},`))
    .map((s) => Buffer.from(s.slice(SIGNATURE_VERSION.length + 1), 'base64'));
  if (offered.length === 0) return refuse('bad_signature', `the signature is not a ${SIGNATURE_VERSION} signature`);
  const matches = input.secrets.some((secret) => {
    const expected = Buffer.from(signDelivery(secret, deliveryId, timestamp, input.body).slice(SIGNATURE_VERSION.length + 1), 'base64');
    return offered.some((o) => o.length === expected.length && timingSafeEqual(o, expected));
  });
  if (!matches) return refuse('bad_signature', 'the signature does not match: the delivery was not signed with the configured secret');
  // Checked after the signature, so an unsigned sender learns nothing about the clock window.
  const timestampSeconds = Number(timestamp);
  const skewMs = Math.abs(input.nowMs - timestampSeconds * 1000);
  if (skewMs > input.maxAgeMs) {
    return refuse('stale', `the delivery is ${Math.round(skewMs / 1000)}s away from this server's clock (at most ${Math.round(input.maxAgeMs / 1000)}s is accepted)`);
  }
  return { ok: true, deliveryId, timestampSeconds };
}

/**
 * The delivery ids accepted within the freshness window: a second delivery with one of them is a replay.
 * An id can be forgotten once its timestamp is out of the window, since verifyDelivery refuses it as stale
 * from then on. Bounded: past `maxEntries` the oldest ids are dropped (only signed deliveries get here).
 */
export class DeliveryLedger {
  private readonly expiries = new Map<string, number>();

  constructor(
    private readonly maxAgeMs: number,
    private readonly maxEntries = 100_000,
  ) {}

  /** Records an accepted delivery; false when its id was already recorded (a replay). */
  admit(deliveryId: string, timestampSeconds: number, nowMs: number): boolean {
    this.forgetExpired(nowMs);
    if (this.expiries.has(deliveryId)) return false;
    this.expiries.set(deliveryId, timestampSeconds * 1000 + this.maxAgeMs);
    while (this.expiries.size > this.maxEntries) {
      const oldest = this.expiries.keys().next().value as string;
      this.expiries.delete(oldest);
    }
    return true;
  }

  /** Ids remembered now. */
  get size(): number {
    return this.expiries.size;
  }

  private forgetExpired(nowMs: number): void {
    // Insertion order is nearly expiry order (timestamps are close to the clock), so the scan stops early.
    for (const [id, expires] of this.expiries) {
      if (expires >= nowMs) break;
      this.expiries.delete(id);
    }
  }
}
