import type { RolloutCommand, RolloutPhase, RolloutState } from '../ir/types.js';

/**
 * A rollout's state <-> the `flowgate.rollout.*` tags of its canary model version. The tags are the only
 * place the state lives, so every replica reads the same state from the same registry snapshot, and a data
 * scientist reads it in the MLflow UI. Parsing is total: a tag edited by hand into nonsense reads as the
 * safest value (weight 0, phase paused), never as an exception.
 */

export const TAG_PREFIX = 'flowgate.rollout.';

export const Tag = {
  phase: `${TAG_PREFIX}phase`,
  step: `${TAG_PREFIX}step`,
  weight: `${TAG_PREFIX}weight`,
  failedChecks: `${TAG_PREFIX}failed_checks`,
  inconclusiveChecks: `${TAG_PREFIX}inconclusive_checks`,
  generation: `${TAG_PREFIX}generation`,
  startedAt: `${TAG_PREFIX}started`,
  stepStartedAt: `${TAG_PREFIX}step_started`,
  checkedAt: `${TAG_PREFIX}checked`,
  updatedAt: `${TAG_PREFIX}updated`,
  stableVersion: `${TAG_PREFIX}stable_version`,
  reason: `${TAG_PREFIX}reason`,
  command: `${TAG_PREFIX}command`,
  /** JSON of the last check's numbers (for people; never read back). */
  lastCheck: `${TAG_PREFIX}last_check`,
  /** On the canary after promotion: the version it replaced. */
  promotedFrom: `${TAG_PREFIX}promoted_from`,
  /** On the old stable version after promotion: the version that replaced it. */
  supersededBy: `${TAG_PREFIX}superseded_by`,
  supersededAt: `${TAG_PREFIX}superseded_at`,
} as const;

export const PHASES: readonly RolloutPhase[] = ['progressing', 'paused', 'succeeded', 'failed', 'aborted'];
export const COMMANDS: readonly RolloutCommand[] = ['pause', 'resume', 'promote', 'abort'];

/** MLflow's limit on a tag value; a longer reason is cut. */
const MAX_TAG_VALUE = 5000;

/** True for a phase that no check changes any more (a new canary version starts a new rollout). */
export function isFinished(phase: RolloutPhase): boolean {
  return phase === 'succeeded' || phase === 'failed' || phase === 'aborted';
}

/** The canary weight every replica serves for a state: from the phase first, so a half-written state is safe. */
export function servedWeight(state: RolloutState | undefined): number {
  if (!state) return 0;
  if (state.phase === 'succeeded') return 100;
  if (state.phase === 'failed' || state.phase === 'aborted') return 0;
  return state.weight;
}

const whole = (text: string | undefined, min: number, max: number): number | undefined => {
  if (text === undefined || !/^\d{1,15}$/.test(text.trim())) return undefined;
  const n = Number(text.trim());
  return n >= min && n <= max ? n : undefined;
};

const time = (text: string | undefined): number => {
  const ms = text === undefined ? NaN : Date.parse(text);
  return Number.isFinite(ms) ? ms : 0;
};

/** The state the tags describe; undefined when the version carries no rollout phase (not started). */
export function stateFromTags(tags: Readonly<Record<string, string>>): RolloutState | undefined {
  const phaseText = tags[Tag.phase];
  if (phaseText === undefined) return undefined;
  const known = (PHASES as readonly string[]).includes(phaseText.trim());
  const weight = whole(tags[Tag.weight], 0, 100);
  const command = tags[Tag.command]?.trim();
  return {
    // An unknown phase or an unreadable weight stops the ramp where it is safest: paused at weight 0.
    phase: known && weight !== undefined ? (phaseText.trim() as RolloutPhase) : 'paused',
    step: whole(tags[Tag.step], 0, 1000) ?? 0,
    weight: weight ?? 0,
    failedChecks: whole(tags[Tag.failedChecks], 0, 1_000_000) ?? 0,
    inconclusiveChecks: whole(tags[Tag.inconclusiveChecks], 0, 1_000_000) ?? 0,
    generation: whole(tags[Tag.generation], 0, Number.MAX_SAFE_INTEGER) ?? 0,
    startedAt: time(tags[Tag.startedAt]),
    stepStartedAt: time(tags[Tag.stepStartedAt]),
    checkedAt: time(tags[Tag.checkedAt]),
    updatedAt: time(tags[Tag.updatedAt]),
    stableVersion: tags[Tag.stableVersion],
    reason: known && weight !== undefined ? tags[Tag.reason] : `unreadable rollout tags (phase ${JSON.stringify(phaseText)}, weight ${JSON.stringify(tags[Tag.weight])}); paused at weight 0`,
    command: command !== undefined && (COMMANDS as readonly string[]).includes(command) ? (command as RolloutCommand) : undefined,
  };
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** The tags that write `state` (a pending command is written separately and deleted when applied). */
export function stateTags(state: RolloutState): Record<string, string> {
  const tags: Record<string, string> = {
    [Tag.phase]: state.phase,
    [Tag.step]: String(state.step),
    [Tag.weight]: String(state.weight),
    [Tag.failedChecks]: String(state.failedChecks),
    [Tag.inconclusiveChecks]: String(state.inconclusiveChecks),
    [Tag.generation]: String(state.generation),
    [Tag.startedAt]: iso(state.startedAt),
    [Tag.stepStartedAt]: iso(state.stepStartedAt),
    [Tag.updatedAt]: iso(state.updatedAt),
  };
  if (state.checkedAt > 0) tags[Tag.checkedAt] = iso(state.checkedAt);
  if (state.stableVersion !== undefined) tags[Tag.stableVersion] = state.stableVersion;
  if (state.reason !== undefined) tags[Tag.reason] = state.reason.slice(0, MAX_TAG_VALUE);
  return tags;
}

/** The tags of a step's clock: stamped as they are written, just before the weight (see writeOrder). */
export const STEP_CLOCK_TAGS: readonly string[] = [Tag.startedAt, Tag.stepStartedAt];

/**
 * The order to write changed tags in so that every prefix of the writes is safe to serve: the phase first
 * (a failed or succeeded phase decides the weight by itself), the weight last (a step is taken only once
 * everything that explains it is written), and the step's clock just before the weight, so that a step
 * is timed from when its weight can be served rather than from when it was decided.
 */
export function writeOrder(keys: readonly string[]): string[] {
  const rank = (k: string): number => (k === Tag.generation ? 0 : k === Tag.phase ? 1 : k === Tag.weight ? 4 : STEP_CLOCK_TAGS.includes(k) ? 3 : 2);
  return [...keys].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}
