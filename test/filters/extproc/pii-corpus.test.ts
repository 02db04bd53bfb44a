import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUILTIN_PATTERNS, type BuiltinPattern } from '../../../filters/extproc/detectors.js';
import { compileMasking, type Masker } from '../../../filters/extproc/masking.js';

/**
 * The false-positive and positive corpora (fixtures/pii-negatives.json, fixtures/pii-positives.json), run
 * through masking in every mode and in every place text can sit in a JSON body.
 */

interface Category {
  readonly why: string;
  readonly against?: readonly BuiltinPattern[];
  readonly samples: readonly string[];
}

const fixtures = join(import.meta.dirname, 'fixtures');
const negativesText = readFileSync(join(fixtures, 'pii-negatives.json'), 'utf8');
const negatives = JSON.parse(negativesText) as { categories: Record<string, Category> };
const positives = (JSON.parse(readFileSync(join(fixtures, 'pii-positives.json'), 'utf8')) as { entries: { text: string; masked: string; note?: string }[] }).entries;

const MASK_MODES = ['replace', 'remove', 'last4', 'hash'] as const;
const maskers = (patterns: readonly BuiltinPattern[]): Masker[] => MASK_MODES.map((mode) => compileMasking({ fields: [], patterns: [...patterns], custom: [], mode }, { salt: 's' }));
const everything = maskers(BUILTIN_PATTERNS);

describe('the false-positive corpus', () => {
  const categories = Object.entries(negatives.categories);

  it('has samples in every category', () => {
    expect(categories.length).toBeGreaterThan(15);
    for (const [, category] of categories) expect(category.samples.length).toBeGreaterThan(0);
  });

  it('the whole file, numbers and keys included, comes back byte for byte in every mode (phone aside: it lists phone numbers)', () => {
    for (const masker of maskers(['email', 'card', 'ssn'])) expect(masker.maskJson(negativesText)).toEqual({ ok: true, body: negativesText, changed: false, findings: [] });
  });

  for (const [name, category] of categories) {
    it(`${name}: nothing is masked, alone, in a sentence, as a key or in a list`, () => {
      for (const masker of maskers(category.against ?? BUILTIN_PATTERNS)) {
        for (const sample of category.samples) {
          for (const text of [sample, `see ${sample} today`, `${sample}\n`]) {
            expect(masker.maskText(text), JSON.stringify(text)).toEqual({ text, changed: false, findings: [] });
          }
          const asKey = JSON.stringify({ [sample]: { note: sample } });
          expect(masker.maskJson(asKey), asKey).toMatchObject({ ok: true, body: asKey, changed: false });
        }
        const list = JSON.stringify({ items: category.samples });
        expect(masker.maskJson(list)).toMatchObject({ ok: true, changed: false });
      }
    });
  }
});

describe('the positive corpus', () => {
  const [replace] = maskers(BUILTIN_PATTERNS);

  it('has entries, some of them documented costs', () => {
    expect(positives.length).toBeGreaterThan(60);
    expect(positives.filter((e) => e.note !== undefined).length).toBeGreaterThan(0);
  });

  it('each entry masks to what the fixture says, as text and as a JSON string value', () => {
    for (const { text, masked } of positives) {
      expect(replace?.maskText(text).text, JSON.stringify(text)).toBe(masked);
      const result = replace?.maskJson(JSON.stringify({ note: text }));
      expect(result?.ok && (JSON.parse(result.body) as { note: string }).note, JSON.stringify(text)).toBe(masked);
    }
  });

  it('each entry is masked as a key too: to the same text in replace mode, to something else in every mode', () => {
    for (const [m, masker] of everything.entries()) {
      for (const { text, masked } of positives) {
        const result = masker.maskJson(JSON.stringify({ [text]: 1 }));
        if (!result.ok) throw new Error(result.message);
        const [key] = Object.keys(JSON.parse(result.body) as object);
        if (MASK_MODES[m] === 'replace') expect(key, JSON.stringify(text)).toBe(masked);
        else expect(key, JSON.stringify(text)).not.toBe(text);
      }
    }
  });
});
