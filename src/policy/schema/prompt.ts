import { z } from 'zod';
import { PROMPT_ROLES, PROMPT_VARIABLE } from '../../contract/prompts.js';
import { aliasName, headerName, patterned, versionNumber } from '../fields.js';

/**
 * `Model.llm.prompt` (a template of MLflow's Prompt Registry that the gateway renders into every chat request)
 * and `Model.llm.messages` (fixed messages put before and after the caller's: Kong's prompt decorator).
 * Absent fields stay absent: the IR decides every default (src/ir/prompts.ts).
 */

/** MLflow's prompt-name rule (mlflow/prompt/constants.py PROMPT_NAME_RULE). */
const promptName = patterned(/^[A-Za-z0-9_.-]+$/, "letters, digits, '_', '.' or '-' (MLflow's prompt names)", 255);
const variableName = patterned(new RegExp(`^${PROMPT_VARIABLE}$`), "a template variable name (letters, digits and '_', dotted parts allowed)", 128);

export const promptBlock = z
  .strictObject({
    name: promptName,
    /** Exactly one of alias and version: which version of the prompt is rendered. */
    alias: aliasName.optional(),
    version: versionNumber.optional(),
    variables: z
      .strictObject({
        /** variable -> request header it is read from (never from the body then). */
        fromHeaders: z.record(variableName, headerName).default({}),
      })
      .optional(),
    /** Absent: true. false refuses requests that bring their own system or developer message. */
    allowUntemplated: z.boolean().optional(),
    /** The role of a text prompt's one message; absent: system. A chat prompt's messages carry their own. */
    role: z.enum(PROMPT_ROLES).optional(),
  })
  .superRefine((p, ctx) => {
    if ((p.alias === undefined) === (p.version === undefined)) ctx.addIssue({ code: 'custom', path: ['alias'], message: 'name exactly one of alias and version' });
  });

const message = z.strictObject({ role: z.enum(PROMPT_ROLES), content: z.string().min(1).max(65_536) });

export const messagesBlock = z.strictObject({
  /** Put before the caller's messages (after the prompt's). */
  prepend: z.array(message).max(16).default([]),
  /** Put after the caller's messages. */
  append: z.array(message).max(16).default([]),
});

export type PromptBlock = z.output<typeof promptBlock>;
export type MessagesBlock = z.output<typeof messagesBlock>;
