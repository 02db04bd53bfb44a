import { z } from 'zod';
import { patterned, resourceName, roleName, shortName, wholeNumber } from '../fields.js';
import { rateLimitShape, tokenQuotaShape } from './shared.js';
import { budgetList } from './llm.js';

/** The Consumer document: a caller, its credentials (digests only), roles, and its own limits and quotas. */

export const ConsumerSchema = z.strictObject({
  kind: z.literal('Consumer'),
  name: resourceName,
  roles: z.array(roleName).default([]),
  apiKeys: z
    .array(
      z.strictObject({
        id: patterned(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "letters, digits, '.', '_' or '-'", 128),
        // The message never echoes the value: someone may have pasted the key itself here.
        sha256: z
          .string({ error: (iss) => (iss.input === undefined ? undefined : 'must be the hex SHA-256 of the key (64 hex digits)') })
          .transform((s) => s.toLowerCase())
          .refine((s) => /^[0-9a-f]{64}$/.test(s), { error: 'must be the hex SHA-256 of the key (64 hex digits), never the key itself' }),
      }),
    )
    .default([]),
  jwt: z.strictObject({ issuer: shortName, subject: z.string().min(1).max(1024) }).optional(),
  rateLimits: z.array(z.strictObject({ ...rateLimitShape, model: resourceName.optional() })).default([]),
  tokenQuotas: z.array(z.strictObject({ ...tokenQuotaShape, model: resourceName.optional() })).default([]),
  concurrency: wholeNumber(1, 1_000_000).optional(),
  /** Spending limits on the consumer's LLM calls across models (those priced in the budget's currency). */
  budgets: budgetList.default([]),
});