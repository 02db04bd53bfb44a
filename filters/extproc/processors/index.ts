import type { Processor } from '../processor.js';
import { budgetsProcessor } from './budgets.js';
import { genAiProcessor } from './genai.js';
import { guardrailsProcessor } from './guardrails.js';
import { maskingProcessor } from './masking.js';
import { protocolProcessor } from './protocol.js';
import { signatureProcessor } from './signature.js';
import { usageProcessor } from './usage.js';

/**
 * The ext_proc processors in the order they run on every phase: usage first, so it reads the upstream's
 * own answer, then the LLM guardrails, on the texts as the caller and the model wrote them, then masking,
 * which rewrites what the client and the model see; budgets second (a reservation before anything is sent, settled on the usage
 * the first settled); GenAI metrics last.
 * A new body feature is one new
 * file here and one line in this list.
 */
export const PROCESSORS: readonly Processor[] = [usageProcessor, budgetsProcessor, guardrailsProcessor, maskingProcessor, genAiProcessor];

/**
 * The processors of a version's cluster-level stream (the version is known there): the signature check
 * first, on the body as the caller sent it (so problems point into the caller's body), then the protocol
 * conversion to what the version speaks.
 */
export const VERSION_PROCESSORS: readonly Processor[] = [signatureProcessor, protocolProcessor];
