import { errorMessage } from '../errors.js';
import type { RolloutWebhook } from '../ir/types.js';
import type { WebhookOutcome } from './analyzer.js';

/**
 * Flagger-style rollout webhooks: a POST with the rollout's identity and where it stands; a 2xx answer
 * within the timeout lets it go on, anything else (another status, no answer) holds it (confirm-promotion)
 * or fails the check (the per-check hook).
 */

export interface WebhookPayload {
  readonly type: 'check' | 'confirm-promotion';
  readonly model: string;
  readonly canaryVersion: string;
  readonly stableVersion: string;
  readonly phase: string;
  readonly step: number;
  readonly weight: number;
}

/** Calls one webhook; never rejects. */
export async function callWebhook(hook: RolloutWebhook, payload: WebhookPayload): Promise<WebhookOutcome> {
  try {
    const res = await fetch(hook.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(payload),
      signal: AbortSignal.timeout(hook.timeoutMs),
      redirect: 'error',
    });
    const text = (await res.text()).slice(0, 200).trim();
    return { ok: res.status >= 200 && res.status < 300, detail: `${payload.type} webhook answered ${res.status}${text ? `: ${text}` : ''}` };
  } catch (err) {
    return { ok: false, detail: `${payload.type} webhook did not answer within ${hook.timeoutMs}ms (${errorMessage(err)})` };
  }
}
