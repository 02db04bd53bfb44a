import { errorMessage } from '../errors.js';
import type { GatewayIR, ModelIR, RolloutCommand, RolloutIR, RolloutState } from '../ir/types.js';
import { logger, type Logger } from '../observability/log.js';
import type { RegistryWriter } from '../registry/writer.js';
import type { TrafficWindowSource } from '../traffic/window-stats.js';
import { analyze, applyCommand, checkDue, judge, judgingLastStep, passMayDecide, type CheckResult, type Decision, type WebhookOutcome } from './analyzer.js';
import type { RolloutLease } from './lease.js';
import { leaseHeld, rolloutChecks, rolloutDecisions } from './metrics.js';
import { STEP_CLOCK_TAGS, stateFromTags, stateTags, Tag, writeOrder } from './state.js';
import { checkPoints, type RolloutEvent, type RolloutTimeline } from './timeline.js';
import { callWebhook } from './webhooks.js';

/**
 * The rollout controller: on the lease holder, once a tick, for each Model with a Rollout it reads the
 * canary version's state fresh from MLflow, applies a pending manual command or asks the analyzer, and
 * writes the decision back as tags (and, for a promotion, moves the stable alias). It never sets a weight
 * anywhere else: every replica, this one included, serves the weight the IR derives from those tags. A
 * crash between two writes leaves a state the next holder continues from.
 */

export interface RolloutControllerOptions {
  /** The IR serving now (which rollouts exist, which versions they judge). */
  readonly ir: () => GatewayIR | undefined;
  readonly source: TrafficWindowSource;
  readonly writer: RegistryWriter;
  readonly lease: RolloutLease;
  readonly timeline: RolloutTimeline;
  /** Re-reads the registry at once, so this replica serves a decision without waiting for its next poll. */
  readonly refresh: () => Promise<void>;
  readonly tickMs?: number;
  readonly now?: () => number;
  readonly log?: Logger;
  /** The audit sink: one line per decision. */
  readonly audit?: (event: RolloutEvent) => void;
}

/** Thrown when the lease ran out (or a newer holder wrote) while a decision was being written. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';
}

export class RolloutController {
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(private readonly options: RolloutControllerOptions) {
    this.log = options.log ?? logger('rollout');
  }

  start(): void {
    const loop = (): void => {
      if (this.stopped) return;
      void this.tickNow().finally(() => {
        if (this.stopped) return;
        this.timer = setTimeout(loop, this.options.tickMs ?? 1000);
        this.timer.unref();
      });
    };
    loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    await Promise.all(this.inFlight.values());
  }

  /**
   * Starts a pass over every rollout that may decide something (and over `model`, whatever its state: a
   * command was just written for it, which the last poll has not seen); resolves when the passes have started.
   */
  tickNow(model?: string): Promise<void> {
    this.running = this.running.then(() => this.tick(model)).catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'rollout tick failed'));
    return this.running;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private tick(kicked?: string): void {
    const generation = this.options.lease.generation();
    leaseHeld.set(generation === undefined ? 0 : 1);
    if (generation === undefined) return;
    const now = this.now();
    // Rollouts are independent: a model whose last pass is still writing to MLflow is skipped this tick,
    // and nobody waits for it, so one slow write never delays another model's check.
    for (const model of this.options.ir()?.models ?? []) {
      const r = model.rollout;
      if (!r || r.canaryVersion === undefined || r.stableVersion === undefined || this.inFlight.has(model.name)) continue;
      // The IR's state is at most one poll behind MLflow's, so a skipped pass starts at worst one poll
      // later than it could have; what a pass writes is decided on its own fresh read in advance().
      if (model.name !== kicked && !passMayDecide(r.plan, r.state, now)) continue;
      const pass = this.advance(model, r, r.canaryVersion, r.stableVersion, generation)
        .catch((err: unknown) => {
          const level = err instanceof LeaseLostError ? 'warn' : 'error';
          this.log[level]({ model: model.name, canary: r.canaryVersion, err: errorMessage(err) }, 'rollout step not taken; the next tick tries again');
        })
        .finally(() => this.inFlight.delete(model.name));
      this.inFlight.set(model.name, pass);
    }
  }

  private async advance(model: ModelIR, r: RolloutIR, canary: string, stable: string, generation: number): Promise<void> {
    const fresh = await this.options.writer.getVersion(model.registeredModel, canary);
    const state = stateFromTags(fresh.tags);
    if (state && state.generation > generation) {
      throw new LeaseLostError(`version ${canary} carries generation ${state.generation}, newer than this holder's ${generation}`);
    }
    const command = state?.command ?? (fresh.tags[Tag.command] !== undefined ? parseCommandTag(fresh.tags[Tag.command]) : undefined);
    if (state?.phase === 'succeeded') {
      // A command on a succeeded rollout (one whose acknowledgement did not land, or one given after the
      // promotion was decided) changes nothing, but it must be acknowledged before the stable alias moves:
      // from then on the rollout is idle and never ticked again, and the command would stay pending forever.
      if (command) {
        this.log.info({ model: model.name, command, why: 'the rollout has succeeded' }, 'rollout command ignored');
        await this.clearCommand(model, canary, generation, command);
      }
      await this.finishPromotion(model, r, canary, stable, generation);
      return;
    }
    const now = this.now();
    let decision: Decision;
    let checkResult: CheckResult | undefined;
    if (command) {
      const by = fresh.tags[`${Tag.command}_by`] ?? 'an MLflow tag';
      decision = applyCommand(r.plan, state, command, now, generation, stable, by);
      if (decision.kind === 'hold') this.log.info({ model: model.name, command, why: decision.reason }, 'rollout command ignored');
    } else {
      let window: { canary: Awaited<ReturnType<TrafficWindowSource['window']>>; stable: Awaited<ReturnType<TrafficWindowSource['window']>> } | undefined;
      let checkWebhook: WebhookOutcome | undefined;
      let confirmPromotion: WebhookOutcome | undefined;
      if (checkDue(r.plan, state, now) && state) {
        const from = now - r.plan.intervalMs;
        try {
          const [c, s] = await Promise.all([this.options.source.window(model.name, canary, from, now), this.options.source.window(model.name, stable, from, now)]);
          window = { canary: c, stable: s };
        } catch (err) {
          rolloutChecks.inc({ model: model.name, result: 'error' });
          this.log.warn({ model: model.name, source: this.options.source.kind, err: errorMessage(err) }, 'rollout check skipped: the metric source did not answer');
          return;
        }
        const payload = { model: model.name, canaryVersion: canary, stableVersion: stable, phase: state.phase, step: state.step, weight: state.weight };
        if (r.plan.webhooks.check) checkWebhook = await callWebhook(r.plan.webhooks.check, { ...payload, type: 'check' });
        const preview = judge(r.plan, window.canary, window.stable, now, checkWebhook);
        // The gate is asked only when a promotion would follow, as Flagger does.
        if (preview.verdict === 'pass' && judgingLastStep(r.plan, state) && r.plan.onSuccess === 'promote' && r.plan.webhooks.confirmPromotion) {
          confirmPromotion = await callWebhook(r.plan.webhooks.confirmPromotion, { ...payload, type: 'confirm-promotion' });
        }
      }
      decision = analyze({ plan: r.plan, state, now, generation, stableVersion: stable, window, checkWebhook, confirmPromotion });
    }
    if ('check' in decision && decision.check) {
      checkResult = decision.check;
      rolloutChecks.inc({ model: model.name, result: decision.check.verdict });
    }
    if (decision.kind === 'hold') {
      if (command) await this.clearCommand(model, canary, generation, command);
      return;
    }
    await this.writeState(model.registeredModel, canary, fresh.tags, decision.next, generation, checkResult);
    if (command) await this.clearCommand(model, canary, generation, command);
    rolloutDecisions.inc({ model: model.name, decision: decision.kind });
    const event: RolloutEvent = {
      at: now,
      model: model.name,
      canaryVersion: canary,
      stableVersion: stable,
      decision: decision.kind,
      phase: decision.next.phase,
      step: decision.next.step,
      weight: decision.next.weight,
      reason: decision.next.reason,
      check: checkResult && checkPoints(checkResult, canary, stable),
      by: this.options.lease.holder,
    };
    await this.options.timeline.add(event);
    this.options.audit?.(event);
    const level = decision.kind === 'rollback' || decision.kind === 'abort' ? 'warn' : 'info';
    this.log[level]({ model: model.name, canary, stable, decision: decision.kind, phase: event.phase, step: event.step, weight: event.weight, reason: event.reason, check: event.check?.summary }, `rollout ${decision.kind}`);
    if (decision.kind === 'promote') await this.finishPromotion(model, r, canary, stable, generation);
    await this.options.refresh().catch((err: unknown) => this.log.debug({ err: errorMessage(err) }, 'registry refresh after a rollout decision failed'));
  }

  /** Writes the tags of `next` that differ from `current`, in the safe order, checking the lease before each. */
  private async writeState(name: string, version: string, current: Readonly<Record<string, string>>, next: RolloutState, generation: number, check: CheckResult | undefined): Promise<void> {
    const desired = stateTags(next);
    if (check) desired[Tag.lastCheck] = JSON.stringify({ at: new Date(check.at).toISOString(), verdict: check.verdict, summary: check.summary, canary: check.canary, stable: check.stable });
    const changed = writeOrder(Object.keys(desired).filter((k) => current[k] !== desired[k]));
    const stale = [Tag.reason, Tag.checkedAt, Tag.stableVersion].filter((k) => current[k] !== undefined && desired[k] === undefined);
    let clock: string | undefined;
    for (const key of changed) {
      this.assertLease(generation);
      let value = desired[key] as string;
      if (STEP_CLOCK_TAGS.includes(key)) {
        // A step lasts one interval at its own weight, so its clock starts now, as the weight is about to be
        // written: with several rollouts' writes queued on MLflow the step was decided seconds ago, and a
        // clock from then would make its first check judge traffic that never saw its weight.
        clock ??= new Date(Math.max(Date.parse(value), this.now())).toISOString();
        value = clock;
      }
      await this.options.writer.setVersionTag(name, version, key, value);
    }
    for (const key of stale) {
      this.assertLease(generation);
      await this.options.writer.deleteVersionTag(name, version, key);
    }
  }

  /**
   * Acknowledges `applied` by deleting the command tag, unless the tag now names another command: a person
   * may give one while this pass writes, and deleting it unread would lose it (the next tick applies it).
   * MLflow has no compare-and-delete, so only the short gap between this read and the delete stays open.
   */
  private async clearCommand(model: ModelIR, canary: string, generation: number, applied: RolloutCommand): Promise<void> {
    const tags = (await this.options.writer.getVersion(model.registeredModel, canary)).tags;
    if (tags[Tag.command] === undefined) return;
    const pending = parseCommandTag(tags[Tag.command]);
    if (pending !== applied) {
      this.log.info({ model: model.name, canary, applied, pending: tags[Tag.command] }, 'rollout command left for the next tick: another one was given meanwhile');
      return;
    }
    this.assertLease(generation);
    await this.options.writer.deleteVersionTag(model.registeredModel, canary, Tag.command);
    await this.options.writer.deleteVersionTag(model.registeredModel, canary, `${Tag.command}_by`);
  }

  /**
   * After a succeeded phase: the stable alias moves to the canary, and both versions are tagged. Idempotent,
   * so a holder that crashed half-way (or its successor) completes it on the next tick.
   */
  private async finishPromotion(model: ModelIR, r: RolloutIR, canary: string, stable: string, generation: number): Promise<void> {
    const alias = r.plan.stableAlias;
    if (alias === undefined) {
      this.log.warn({ model: model.name, canary }, 'promoted, but the stable version is not named by an alias: point it at the canary by hand');
      return;
    }
    this.assertLease(generation);
    const at = new Date(this.now()).toISOString();
    await this.options.writer.setVersionTag(model.registeredModel, stable, Tag.supersededBy, canary);
    await this.options.writer.setVersionTag(model.registeredModel, stable, Tag.supersededAt, at);
    await this.options.writer.setVersionTag(model.registeredModel, canary, Tag.promotedFrom, stable);
    this.assertLease(generation);
    await this.options.writer.setAlias(model.registeredModel, alias, canary);
    this.log.info({ model: model.name, alias, from: stable, to: canary }, `promoted: alias '${alias}' now points at version ${canary}`);
    await this.options.refresh().catch(() => undefined);
  }

  private assertLease(generation: number): void {
    if (this.options.lease.generation() !== generation) throw new LeaseLostError(`the rollout lease (generation ${generation}) is no longer held`);
  }
}

/** A command tag's value, or undefined for one that names no command. */
export function parseCommandTag(text: string | undefined): RolloutCommand | undefined {
  const t = text?.trim();
  return t === 'pause' || t === 'resume' || t === 'promote' || t === 'abort' ? t : undefined;
}
