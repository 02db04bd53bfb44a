/**
 * How the LLM API reads a `model` string: a model's name or one of its public names, optionally pinned with
 * `@alias` or `/VERSION` (`support-bot`, `support-bot@challenger`, `support-bot/3`, `gpt-4o`). A name is looked
 * up whole first, so a public name that itself contains `/` (`meta-llama/Llama-3-8B`) is never cut. The
 * control plane reads fallback chains with it and the filter service reads request bodies with it, so both
 * agree on every string. This module imports nothing.
 */

export type ModelPin = { readonly alias: string } | { readonly version: string };

export interface ModelRef {
  /** The policy Model the string names. */
  readonly model: string;
  readonly pin: ModelPin | undefined;
}

const ALIAS = /^[A-Za-z0-9_-]{1,255}$/;
const VERSIONED = /^(.+)\/([1-9]\d{0,17})$/;

/** The model a string names, given `lookup` from a name to its Model (or undefined); undefined when it names none. */
export function resolveModelRef(text: string, lookup: (name: string) => string | undefined): ModelRef | undefined {
  const whole = lookup(text);
  if (whole !== undefined) return { model: whole, pin: undefined };
  const at = text.lastIndexOf('@');
  if (at > 0) {
    const alias = text.slice(at + 1);
    const model = lookup(text.slice(0, at));
    // MLflow reserves `latest` and `v<N>` for versions; they are never aliases.
    if (model !== undefined && ALIAS.test(alias) && !/^(v\d+|latest)$/i.test(alias)) return { model, pin: { alias } };
    return undefined;
  }
  const versioned = VERSIONED.exec(text);
  if (versioned?.[1] !== undefined && versioned[2] !== undefined) {
    const model = lookup(versioned[1]);
    if (model !== undefined) return { model, pin: { version: versioned[2] } };
  }
  return undefined;
}
