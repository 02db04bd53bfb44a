/**
 * `{ ...value }` and `{ ...target, ...value }` for the plain objects the translators build (own enumerable
 * string keys, no symbols), as loops: Node 20's V8 copies a spread source 5-10x slower (0.4-0.7 µs against
 * 0.05-0.1 µs for a two-key object), and the translators copy several per route and per cluster at 10,000
 * models (docs/performance-cold.md, eighth pass). Inherited properties are skipped, as a spread skips them.
 */

/** A shallow copy of `value`'s own enumerable properties. */
export function shallowCopy(value: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return copyInto({}, value);
}

/** `value`'s own enumerable properties set on `target` (later ones replace earlier ones, as in a spread); returns `target`. */
export function copyInto<T extends Record<string, unknown>>(target: T, value: object): T {
  const from = value as Readonly<Record<string, unknown>>;
  for (const key in from) if (Object.hasOwn(from, key)) (target as Record<string, unknown>)[key] = from[key];
  return target;
}
