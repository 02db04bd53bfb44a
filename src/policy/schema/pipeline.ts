import { z } from 'zod';
import { placeholders, TemplateError } from '../../contract/pipeline-template.js';
import { duration, httpPath, resourceName, roleName, shortName, wholeNumber } from '../fields.js';
import { route } from './model.js';
import { rateLimitShape } from './shared.js';

/**
 * The Pipeline document: a route that calls other Models in turn (sequential: each step's answer feeds the
 * next) or all at once (parallel: every step gets the request, the answers are merged). Each step goes back
 * through Envoy with the caller's own credential, so it is authorized, limited, masked and measured as the
 * Model it calls. Templates (step `input`, pipeline `output`) are checked here: their placeholders must name
 * the request, the previous step or an earlier step (docs/pipelines.md).
 */

const json: z.ZodType<unknown> = z.unknown();

const step = z.strictObject({
  name: shortName,
  /** The Model this step calls (by its policy name). */
  model: resourceName,
  /** Below the Model's route prefix; absent: /invocations (mlflow models) or /infer (oip). */
  path: httpPath.optional(),
  /** The body sent to the step; absent: the previous step's answer (sequential) or the request (parallel). */
  input: json.optional(),
  /** Absent: the IR's default (10s). */
  timeout: duration({ max: 600_000 }).optional(),
});

export const PipelineSchema = z
  .strictObject({
    kind: z.literal('Pipeline'),
    name: resourceName,
    /** Absent: /pipelines/{name} on every listener. */
    routes: z.array(route).min(1).optional(),
    mode: z.enum(['sequential', 'parallel']).default('sequential'),
    steps: z.array(step).min(1).max(32),
    /** The pipeline's answer; absent: the last step's answer (sequential) or {step name: answer} (parallel). */
    output: json.optional(),
    /** The whole pipeline, all steps included. Absent: the IR's default (30s). */
    timeout: duration({ max: 3_600_000 }).optional(),
    access: z.strictObject({ roles: z.array(roleName).default([]), consumers: z.array(resourceName).default([]) }).optional(),
    rateLimits: z.array(z.strictObject(rateLimitShape)).default([]),
    /** The largest request body the pipeline reads; absent: the IR's default (1 MiB). */
    maxBodyBytes: wholeNumber(1, 64 * 1024 * 1024).optional(),
    /** Absent: Gateway.filterService.failOpen. */
    failOpen: z.boolean().optional(),
  })
  .superRefine((p, ctx) => {
    const names = new Map<string, number>();
    p.steps.forEach((s, i) => {
      const first = names.get(s.name);
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['steps', i, 'name'], message: `step name '${s.name}' is already used by step ${first}` });
      else names.set(s.name, i);
    });
    const check = (template: unknown, path: (string | number)[], earlier: readonly string[], where: 'input' | 'output'): void => {
      let found;
      try {
        found = placeholders(template);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path, message: err instanceof TemplateError ? err.message : String(err) });
        return;
      }
      for (const ph of found) {
        if (ph.source === 'previous' && (p.mode === 'parallel' || where === 'output')) {
          ctx.addIssue({ code: 'custom', path, message: `${ph.text}: previous means the step before, which only a sequential pipeline's steps have; name the step (steps.NAME)` });
        } else if (ph.step !== undefined && !earlier.includes(ph.step)) {
          const why = !names.has(ph.step) ? 'there is no such step' : p.mode === 'parallel' && where === 'input' ? 'parallel steps start together and see only the request' : 'that step runs later';
          ctx.addIssue({ code: 'custom', path, message: `${ph.text} names step '${ph.step}', but ${why}` });
        }
      }
    };
    p.steps.forEach((s, i) => {
      if (s.input === undefined) return;
      const earlier = p.mode === 'sequential' ? p.steps.slice(0, i).map((x) => x.name) : [];
      check(s.input, ['steps', i, 'input'], earlier, 'input');
    });
    if (p.output !== undefined) check(p.output, ['output'], p.steps.map((s) => s.name), 'output');
  });
