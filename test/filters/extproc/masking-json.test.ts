import { describe, expect, it } from 'vitest';
import type { MaskingRules, MaskMode } from '../../../src/contract/filter-policy.js';
import { compileMasking, type MaskResult } from '../../../filters/extproc/masking.js';

/** Card numbers and SSNs where JSON puts them besides string values: number literals and object keys. */

function rules(partial: Partial<MaskingRules>): MaskingRules {
  return { fields: [], patterns: ['email', 'card', 'phone', 'ssn'], custom: [], mode: 'replace', ...partial };
}

const compile = (mode: MaskMode = 'replace', partial: Partial<MaskingRules> = {}) => compileMasking(rules({ mode, ...partial }), { salt: 'test-salt' });

function body(result: MaskResult): string {
  if (!result.ok) throw new Error(`expected ok, got ${result.message}`);
  return result.body;
}

describe('cards and SSNs as JSON numbers', () => {
  it('a card number becomes a masked string in every mode', () => {
    const doc = '{"card": 4111111111111111, "n": 7}';
    expect(body(compile('replace').maskJson(doc))).toBe('{"card": "[CARD]", "n": 7}');
    expect(body(compile('remove').maskJson(doc))).toBe('{"card": "", "n": 7}');
    expect(body(compile('last4').maskJson(doc))).toBe('{"card": "************1111", "n": 7}');
    const hashed = JSON.parse(body(compile('hash').maskJson(doc))) as { card: string };
    const asString = JSON.parse(body(compile('hash').maskJson('{"card": "4111 1111 1111 1111"}'))) as { card: string };
    expect(hashed.card).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(hashed.card).toBe(asString.card);
  });

  it('in arrays, nested, and as the whole document', () => {
    expect(body(compile().maskJson('[4111111111111111, 1, [5555555555554444, {"x": [378282246310005]}]]'))).toBe('["[CARD]", 1, ["[CARD]", {"x": ["[CARD]"]}]]');
    expect(body(compile().maskJson(' 4111111111111111 '))).toBe(' "[CARD]" ');
  });

  it('digits past 2^53 are read from the text, not from a rounded double', () => {
    // As a double, 6011000000000000001 is 6011000000000000000, which fails Luhn.
    expect(String(Number('6011000000000000001'))).toBe('6011000000000000000');
    expect(body(compile().maskJson('{"card": 6011000000000000001}'))).toBe('{"card": "[CARD]"}');
    const notACard = '{"id": 6011000000000000002, "big": 12345678901234567890}';
    expect(compile().maskJson(notACard)).toMatchObject({ ok: true, body: notACard, changed: false });
  });

  it('the integer forms floats are printed in count, fractions do not', () => {
    for (const literal of ['4111111111111111.0', '4111111111111111.000', '4.111111111111111e15', '4.111111111111111E+15', '41111111111111110e-1', '-4111111111111111']) {
      expect(body(compile().maskJson(`[${literal}]`)), literal).toBe('["[CARD]"]');
    }
    for (const literal of ['4111111111111111.5', '4.1111111111111115e15', '4111111111111111e1', '1e400', '0.4111111111111111']) {
      expect(compile().maskJson(`[${literal}]`), literal).toMatchObject({ changed: false });
    }
  });

  it('an SSN as a number under a member named like one, leading zeros restored', () => {
    expect(body(compile().maskJson('{"ssn": 78051120, "ssns": [219099999], "id": 219099999, "count": 78051120}'))).toBe('{"ssn": "[SSN]", "ssns": ["[SSN]"], "id": 219099999, "count": 78051120}');
    expect(body(compile('last4').maskJson('{"ssn": 78051120}'))).toBe('{"ssn": "*****1120"}');
    const hash = compile('hash');
    const asNumber = JSON.parse(body(hash.maskJson('{"ssn": 78051120}'))) as { ssn: string };
    const asString = JSON.parse(body(hash.maskJson('{"x": "078-05-1120"}'))) as { x: string };
    expect(asNumber.ssn).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(asNumber.ssn).toBe(asString.x);
  });

  it('a field rule still decides for the numbers it selects', () => {
    expect(body(compile('replace', { fields: [{ path: 'card', mode: 'hash' }] }).maskJson('{"card": 4111111111111111}'))).toMatch(/^\{"card": "sha256:[0-9a-f]{16}"\}$/);
  });

  it('without the card and ssn patterns, numbers are left alone; custom patterns never see them', () => {
    const doc = '{"card": 4111111111111111, "emp": 123456}';
    const masker = compileMasking(rules({ patterns: ['email', 'phone'], custom: [{ name: 'emp', regex: '[0-9]{6}', mode: 'replace' }] }));
    expect(masker.maskJson(doc)).toMatchObject({ ok: true, body: doc, changed: false });
  });

  it('findings name the path, never the number', () => {
    const result = compile().maskJson('{"pay": [1, 4111111111111111]}');
    expect(result.ok && result.findings).toEqual([{ rule: 'card', path: 'pay[1]' }]);
  });
});

describe('personal data in object keys', () => {
  it('is masked in the key, nested too, values under it scanned as usual', () => {
    const doc = '{"cards": {"4111111111111111": {"jane@example.com": "call +1 415 555 2671"}}}';
    expect(JSON.parse(body(compile().maskJson(doc)))).toEqual({ cards: { '[CARD]': { '[EMAIL]': 'call [PHONE]' } } });
  });

  it('keys that mask alike get #2, #3 in document order, skipping names already there', () => {
    const doc = '{"4111111111111111": 1, "[CARD]#2": 2, "5555555555554444": 3, "378282246310005": 4}';
    expect(body(compile().maskJson(doc))).toBe('{"[CARD]": 1, "[CARD]#2": 2, "[CARD]#3": 3, "[CARD]#4": 4}');
  });

  it('an unchanged key that equals a masked name keeps it; the masked one moves', () => {
    expect(body(compile().maskJson('{"4111111111111111": 1, "[CARD]": 2}'))).toBe('{"[CARD]#2": 1, "[CARD]": 2}');
  });

  it('equal keys as sent stay equal', () => {
    expect(body(compile().maskJson('{"4111111111111111": 1, "4111111111111111": 2}'))).toBe('{"[CARD]": 1, "[CARD]": 2}');
  });

  it('every mode keeps the keys distinct', () => {
    const doc = '{"4111 1111 1111 1111": 1, "4111-1111-1111-1111": 2, "5555555555554444": 3}';
    for (const mode of ['replace', 'remove', 'last4', 'hash'] as const) {
      const out = body(compile(mode).maskJson(doc));
      const keys = Object.keys(JSON.parse(out) as object);
      expect(keys, mode).toHaveLength(3);
      expect(out, mode).not.toMatch(/4111|5555/);
    }
    // hash is stable per card, so the same card written two ways collides and gets a suffix.
    const hashed = Object.keys(JSON.parse(body(compile('hash').maskJson(doc))) as object);
    expect(hashed[1]).toBe(`${hashed[0] ?? ''}#2`);
    expect(Object.keys(JSON.parse(body(compile('remove').maskJson(doc))) as object)).toEqual(['', '#2', '#3']);
  });

  it('field paths match the keys as sent, and removal rebuilds the object with masked keys', () => {
    const masker = compile('replace', { fields: [{ path: 'accounts.4111111111111111.pin', mode: 'remove' }] });
    const doc = '{"accounts": {"4111111111111111": {"pin": 1234, "owner": "Jane"}, "x": 1}}';
    expect(body(masker.maskJson(doc))).toBe('{"accounts": {"[CARD]": {"owner": "Jane"}, "x": 1}}');
  });

  it('a key finding names the object holding the key; values under it show the masked key', () => {
    const result = compile().maskJson('{"a": {"4111111111111111": "jane@example.com"}}');
    expect(result.ok && result.findings).toEqual([
      { rule: 'card', path: 'a' },
      { rule: 'email', path: 'a["[CARD]"]' },
    ]);
  });

  it('keys inside a field-selected value are scanned as well', () => {
    const masker = compile('replace', { fields: [{ path: 'profile', mode: 'hash' }] });
    const out = JSON.parse(body(masker.maskJson('{"profile": {"jane@example.com": "x"}}'))) as { profile: Record<string, string> };
    expect(Object.keys(out.profile)).toEqual(['[EMAIL]']);
  });

  it('a body with repeated plain keys is unchanged', () => {
    const doc = JSON.stringify({ messages: Array.from({ length: 50 }, (_, i) => ({ role: 'user', content: `hello ${i}` })) });
    expect(compile().maskJson(doc)).toMatchObject({ ok: true, body: doc, changed: false });
  });
});
