import { describe, expect, test } from 'vitest';
import { formatIssues } from '../../src/policy/format.js';
import { policyFromFiles } from '../../src/policy/load.js';

/** kind: Pipeline in the policy loader: its templates, its step references, its names and routes, with file:line. */

const MODELS = `kind: Gateway
listeners: [{ name: public, port: 10000 }, { name: internal, port: 10001 }]
---
kind: Model
name: fraud
upstream: { addressTemplate: "127.0.0.1:9000" }
traffic: { stable: { version: "1" } }
---
kind: Model
name: private
routes: [{ listener: internal }]
upstream: { addressTemplate: "127.0.0.1:9001" }
traffic: { stable: { version: "1" } }
`;

function issues(pipelines: string): string {
  const load = policyFromFiles('policy', [
    { file: 'models.yaml', text: MODELS },
    { file: 'pipelines.yaml', text: pipelines },
  ]);
  return load.ok ? '' : formatIssues(load.issues, 'policy');
}

describe('Pipeline documents', () => {
  test('a valid sequential and parallel pipeline load', () => {
    const load = policyFromFiles('policy', [
      { file: 'models.yaml', text: MODELS },
      {
        file: 'p.yaml',
        text: `kind: Pipeline
name: chain
steps:
  - { name: a, model: fraud }
  - { name: b, model: fraud, input: { x: "\${previous/predictions}", y: "\${steps.a}", z: "\${request/q}" } }
---
kind: Pipeline
name: fan
mode: parallel
routes: [{ listener: internal }]
steps: [{ name: a, model: fraud }, { name: b, model: private }]
output: { both: ["\${steps.a}", "\${steps.b}"] }
`,
      },
    ]);
    if (!load.ok) expect.fail(formatIssues(load.issues, 'policy'));
    expect([...load.policy.pipelines.keys()]).toEqual(['chain', 'fan']);
  });

  test('templates naming a later step, an unknown step, previous in a parallel pipeline, or a malformed placeholder', () => {
    const text = issues(`kind: Pipeline
name: p
steps:
  - { name: a, model: fraud, input: "\${steps.b/x}" }
  - { name: b, model: fraud, input: "\${steps.zzz}" }
  - { name: c, model: fraud, input: "\${nonsense}" }
---
kind: Pipeline
name: q
mode: parallel
steps:
  - { name: a, model: fraud, input: "\${previous}" }
  - { name: b, model: fraud, input: "\${steps.a}" }
`);
    expect(text).toContain("pipelines.yaml:4:37: steps[0].input: ${steps.b/x} names step 'b', but that step runs later");
    expect(text).toContain("steps[1].input: ${steps.zzz} names step 'zzz', but there is no such step");
    expect(text).toContain('steps[2].input: ${nonsense} must name request, previous or steps.NAME');
    expect(text).toContain('${previous}: previous means the step before, which only a sequential pipeline');
    expect(text).toContain("${steps.a} names step 'a', but parallel steps start together and see only the request");
  });

  test('an unknown model, a model without a route on the pipeline listener, a reused step name', () => {
    const text = issues(`kind: Pipeline
name: p
steps:
  - { name: a, model: frud }
  - { name: b, model: private }
---
kind: Pipeline
name: q
steps:
  - { name: a, model: fraud }
  - { name: a, model: fraud }
`);
    expect(text).toContain("steps[0].model: reference to an unknown model 'frud' (did you mean 'fraud'?)");
    expect(text).toContain("steps[1].model: Model 'private' has no route on listener 'public', where this pipeline is published");
    expect(text).toContain("pipelines.yaml:11:13: steps[1].name: step name 'a' is already used by step 0");
  });

  test('a Pipeline named like a Model, or claiming a Model route, is refused', () => {
    const text = issues(`kind: Pipeline
name: fraud
steps: [{ name: a, model: fraud }]
---
kind: Pipeline
name: other
routes: [{ listener: public, pathPrefix: /models/fraud }]
steps: [{ name: a, model: fraud }]
`);
    expect(text).toContain("the name 'fraud' is already used by a Model (models.yaml:5:7); Models and Pipelines share one namespace");
    expect(text).toContain("listener 'public', host '*', path prefix '/models/fraud' is already claimed by Model 'fraud'");
  });
});
