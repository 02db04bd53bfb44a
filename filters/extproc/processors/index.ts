import type { Processor } from '../processor.js';
import { maskingProcessor } from './masking.js';
import { usageProcessor } from './usage.js';

/**
 * The ext_proc processors in the order they run on every phase: usage first, so it reads the upstream's
 * own answer, then masking, which rewrites what the client and the model see. A new body feature is one new
 * file here and one line in this list.
 */
export const PROCESSORS: readonly Processor[] = [usageProcessor, maskingProcessor];
