import { describe, expect, it } from 'vitest';
import type { MaskingRules, MaskMode } from '../../../src/contract/filter-policy.js';
import { checkBodySize, compileMasking, type Masker, type MaskResult } from '../../../filters/extproc/masking.js';

type RulesInput = Partial<Omit<MaskingRules, 'fields' | 'custom'>> & {
  fields?: { path: string; mode?: MaskMode }[];
  custom?: { name: string; regex: string; mode?: MaskMode }[];
};

/** Rules as the IR resolves them: a rule without a mode takes the section's (default replace). */
function rules(partial: RulesInput): MaskingRules {
  const mode = partial.mode ?? 'replace';
  return {
    patterns: partial.patterns ?? [],
    mode,
    fields: (partial.fields ?? []).map((f) => ({ ...f, mode: f.mode ?? mode })),
    custom: (partial.custom ?? []).map((c) => ({ ...c, mode: c.mode ?? mode })),
  };
}

function masked(result: MaskResult): { body: unknown; findings: readonly { rule: string; path: string }[]; changed: boolean } {
  if (!result.ok) throw new Error(`expected ok, got ${result.message}`);
  return { body: JSON.parse(result.body), findings: result.findings, changed: result.changed };
}

function maskOne(masker: Masker, text: string): string {
  const { body } = masked(masker.maskJson(JSON.stringify({ note: text })));
  return (body as { note: string }).note;
}

const SAMPLES = {
  email: { text: 'jane.doe@example.com', marker: '[EMAIL]', last4: `${'*'.repeat(16)}.com` },
  card: { text: '4111 1111 1111 1111', marker: '[CARD]', last4: '************1111' },
  phone: { text: '+1 415 555 2671', marker: '[PHONE]', last4: `${'*'.repeat(11)}2671` },
  ssn: { text: '123-45-6789', marker: '[SSN]', last4: '*******6789' },
} as const;

describe('built-in detectors in every mode', () => {
  for (const [pattern, sample] of Object.entries(SAMPLES)) {
    const compile = (mode: MaskMode, salt = 'test-salt'): Masker =>
      compileMasking(rules({ patterns: [pattern as keyof typeof SAMPLES], mode }), { salt });
    const text = `contact: ${sample.text} today`;

    it(`${pattern}: replace puts the marker in place`, () => {
      expect(maskOne(compile('replace'), text)).toBe(`contact: ${sample.marker} today`);
    });
    it(`${pattern}: remove deletes the match`, () => {
      expect(maskOne(compile('remove'), text)).toBe('contact:  today');
    });
    it(`${pattern}: last4 keeps the last four`, () => {
      expect(maskOne(compile('last4'), text)).toBe(`contact: ${sample.last4} today`);
    });
    it(`${pattern}: hash is a salted, stable token`, () => {
      const once = maskOne(compile('hash'), text);
      expect(once).toMatch(/^contact: sha256:[0-9a-f]{16} today$/);
      expect(maskOne(compile('hash'), text)).toBe(once);
      expect(maskOne(compile('hash', 'other-salt'), text)).not.toBe(once);
    });
    it(`${pattern}: findings name the rule and path, never the value`, () => {
      const { findings } = masked(compile('replace').maskJson(JSON.stringify({ a: { b: [text] } })));
      expect(findings).toEqual([{ rule: pattern, path: 'a.b[0]' }]);
      expect(JSON.stringify(findings)).not.toContain(sample.text);
    });
  }
});

describe('card', () => {
  const masker = compileMasking(rules({ patterns: ['card'] }));
  it('masks Luhn-valid numbers in the usual groupings', () => {
    expect(maskOne(masker, 'pay 4111 1111 1111 1111 now')).toBe('pay [CARD] now');
    expect(maskOne(masker, 'pay 4111-1111-1111-1111')).toBe('pay [CARD]');
    expect(maskOne(masker, '4111111111111111')).toBe('[CARD]');
    expect(maskOne(masker, 'amex 3782 822463 10005')).toBe('amex [CARD]');
  });
  it('leaves numbers failing Luhn, too short, all zeros or glued to letters', () => {
    for (const text of ['4111 1111 1111 1112', '411111111111', '0000 0000 0000 0000', 'id4111111111111111', '4111111111111111.5']) {
      expect(maskOne(masker, text)).toBe(text);
    }
  });
  it('finds a card inside a longer run of groups', () => {
    expect(maskOne(masker, 'ref 12 4111 1111 1111 1111 2024')).toContain('[CARD]');
    expect(maskOne(masker, 'ref 12 4111 1111 1111 1111 2024')).not.toContain('1111 1111');
  });
  it('last4 counts digits only', () => {
    const last4 = compileMasking(rules({ patterns: ['card'], mode: 'last4' }));
    expect(maskOne(last4, '4111-1111-1111-1111')).toBe('************1111');
  });
  it('hash ignores separators', () => {
    const hash = compileMasking(rules({ patterns: ['card'], mode: 'hash' }), { salt: 's' });
    expect(maskOne(hash, '4111-1111-1111-1111')).toBe(maskOne(hash, '4111 1111 1111 1111'));
  });
});

describe('phone', () => {
  const masker = compileMasking(rules({ patterns: ['phone'] }));
  it('masks international and North American forms', () => {
    for (const text of ['+14155552671', '+44 20 7946 0958', '+1 (415) 555-2671', '(415) 555-2671', '415-555-2671', '415.555.2671', '1-415-555-2671']) {
      expect(maskOne(masker, `call ${text}.`)).toBe('call [PHONE].');
    }
  });
  it('leaves ordinary numbers alone', () => {
    for (const text of ['4155552671', 'order 12345', '2024-01-15', 'v1.2.3', '+123', '115-555-2671', '3.14159', '12-415-555-2671', '+1 415 555 2671 1234 5678']) {
      expect(maskOne(masker, text)).toBe(text);
    }
  });
});

describe('ssn', () => {
  const masker = compileMasking(rules({ patterns: ['ssn'] }));
  it('masks dashed SSNs', () => {
    expect(maskOne(masker, 'ssn 078-05-1120, ok')).toBe('ssn [SSN], ok');
  });
  it('leaves never-issued numbers and other shapes', () => {
    for (const text of ['000-12-3456', '666-12-3456', '900-12-3456', '123-00-4567', '123-45-0000', '123456789', 'A123-45-6789', '123-45-67890']) {
      expect(maskOne(masker, text)).toBe(text);
    }
  });
});

describe('email', () => {
  const masker = compileMasking(rules({ patterns: ['email'] }));
  it('masks addresses and stops at their edges', () => {
    expect(maskOne(masker, '<a.b+tag@mail.example.co.uk>')).toBe('<[EMAIL]>');
    expect(maskOne(masker, 'two: x@y.io, z@w.dev.')).toBe('two: [EMAIL], [EMAIL].');
  });
  it('leaves things that only look a bit like addresses', () => {
    for (const text of ['@handle', 'user@localhost', 'a@b.c', 'price @ 5.00']) expect(maskOne(masker, text)).toBe(text);
  });
});

describe('field paths', () => {
  const doc = {
    customer: { email: 'jane@example.com', name: 'Jane', age: 41, vip: true, nick: null },
    items: [
      { card: '4111111111111111', sku: 'a' },
      { card: '5500005555555559', sku: 'b' },
    ],
    rows: [{ ssn: '078-05-1120' }, { ssn: '219-09-9999' }],
    profile: { address: { street: 'Main St 1', zip: 12345 }, tags: ['x', 'y'] },
  };

  it('replace masks strings, numbers and booleans, and leaves null', () => {
    const masker = compileMasking(rules({ fields: [{ path: 'customer.email' }, { path: 'customer.age' }, { path: 'customer.vip' }, { path: 'customer.nick' }] }));
    const { body, findings } = masked(masker.maskJson(JSON.stringify(doc)));
    expect(body).toMatchObject({ customer: { email: '[REDACTED]', name: 'Jane', age: '[REDACTED]', vip: '[REDACTED]', nick: null } });
    expect(findings.map((f) => f.path)).toEqual(['customer.email', 'customer.age', 'customer.vip', 'customer.nick']);
  });

  it('[*] and [0] select elements; modes fall back to the section mode', () => {
    const masker = compileMasking(rules({ mode: 'last4', fields: [{ path: 'items[*].card' }, { path: 'rows[0].ssn', mode: 'replace' }] }));
    const { body } = masked(masker.maskJson(JSON.stringify(doc)));
    expect(body).toMatchObject({
      items: [
        { card: '************1111', sku: 'a' },
        { card: '************5559', sku: 'b' },
      ],
      rows: [{ ssn: '[REDACTED]' }, { ssn: '219-09-9999' }],
    });
  });

  it('a path to an object masks every leaf inside it; numbers become strings', () => {
    const masker = compileMasking(rules({ fields: [{ path: 'profile', mode: 'hash' }] }), { salt: 's' });
    const { body } = masked(masker.maskJson(JSON.stringify(doc)));
    const profile = (body as typeof doc).profile as unknown as { address: { street: string; zip: string }; tags: string[] };
    expect(profile.address.street).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(profile.address.zip).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(profile.tags).toHaveLength(2);
    expect(profile.tags[0]).not.toBe(profile.tags[1]);
  });

  it('remove deletes keys and nulls array elements', () => {
    const masker = compileMasking(rules({ mode: 'remove', fields: [{ path: 'customer.email' }, { path: 'items[0]' }, { path: 'profile.address' }] }));
    const { body } = masked(masker.maskJson(JSON.stringify(doc, null, 2)));
    expect(body).toEqual({ ...doc, customer: { name: 'Jane', age: 41, vip: true, nick: null }, items: [null, doc.items[1]], profile: { tags: ['x', 'y'] } });
  });

  it('removing the first or last member keeps the JSON valid', () => {
    const masker = compileMasking(rules({ mode: 'remove', fields: [{ path: 'a' }, { path: 'c' }] }));
    const result = masker.maskJson('{ "a": 1 , "b" : [1, 2] , "c": {"d": 2} }');
    expect(result.ok && result.body).toBe('{"b" : [1, 2]}');
  });

  it('[*] also walks object members, at the root too', () => {
    const masker = compileMasking(rules({ fields: [{ path: '[*].secret' }] }));
    expect(masked(masker.maskJson('{"x": {"secret": 1}, "y": {"secret": 2, "k": 3}}')).body).toEqual({ x: { secret: '[REDACTED]' }, y: { secret: '[REDACTED]', k: 3 } });
    expect(masked(masker.maskJson('[{"secret": "s"}, 4]')).body).toEqual([{ secret: '[REDACTED]' }, 4]);
  });

  it('a field-masked value is not pattern-scanned again; keys are scanned and findings show them masked', () => {
    const masker = compileMasking(rules({ patterns: ['email'], fields: [{ path: 'to', mode: 'last4' }] }));
    const { body, findings } = masked(masker.maskJson('{"to": "ann@example.com", "cc@example.com": "bob@example.org"}'));
    expect(body).toEqual({ to: '***********.com', '[EMAIL]': '[EMAIL]' });
    expect(findings).toEqual([
      { rule: 'field', path: 'to' },
      { rule: 'email', path: '$' },
      { rule: 'email', path: '["[EMAIL]"]' },
    ]);
  });
});

describe('the body as sent', () => {
  const masker = compileMasking(rules({ patterns: ['email'] }));

  it('an unchanged body comes back byte for byte', () => {
    const text = '{\n  "id": 12345678901234567890,\n  "x": 1.50, "s": "caf\\u00e9"\n}';
    expect(masker.maskJson(text)).toEqual({ ok: true, body: text, changed: false, findings: [] });
  });

  it('a changed body keeps untouched literals and layout', () => {
    const result = masker.maskJson('{\n  "id": 12345678901234567890,\n  "to": "a@example.com"\n}');
    expect(result.ok && result.body).toBe('{\n  "id": 12345678901234567890,\n  "to": "[EMAIL]"\n}');
  });

  it('decodes escapes before scanning and re-encodes after', () => {
    const { body } = masked(masker.maskJson('{"s": "line\\nmail: a\\u0040example.com \\"quoted\\""}'));
    expect(body).toEqual({ s: 'line\nmail: [EMAIL] "quoted"' });
  });

  it('accepts UTF-8 bytes', () => {
    const { body } = masked(masker.maskJson(new TextEncoder().encode('{"s": "é a@example.com"}')));
    expect(body).toEqual({ s: 'é [EMAIL]' });
  });

  it('refuses invalid JSON and invalid UTF-8 with a 400 that does not echo the body', () => {
    for (const bad of ['{"secret": "a@example.com"', 'not json a@example.com', '', new Uint8Array([0x7b, 0xff, 0x7d])]) {
      const result = masker.maskJson(bad);
      expect(result).toMatchObject({ ok: false, status: 400, error: 'invalid_json' });
      expect(JSON.stringify(result)).not.toContain('example.com');
    }
  });

  it('refuses absurd nesting with a 400 instead of overflowing the stack', () => {
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    expect(masker.maskJson(deep)).toMatchObject({ ok: false, status: 400, error: 'invalid_json' });
  });
});

describe('custom RE2 patterns', () => {
  const custom = (regex: string, mode?: MaskMode): Masker =>
    compileMasking(rules({ custom: [{ name: 'employee-id', regex, ...(mode === undefined ? {} : { mode }) }] }), { salt: 's' });

  it('replace uses the upper-cased rule name and matches globally', () => {
    expect(maskOne(custom('EMP-[0-9]{6}'), 'EMP-123456 and EMP-654321')).toBe('[EMPLOYEE-ID] and [EMPLOYEE-ID]');
  });

  it('a per-rule mode overrides the section mode', () => {
    expect(maskOne(custom('EMP-[0-9]{6}', 'hash'), 'id EMP-123456')).toMatch(/^id sha256:[0-9a-f]{16}$/);
    expect(maskOne(custom('EMP-[0-9]{6}', 'last4'), 'id EMP-123456')).toBe('id ******3456');
  });

  it('finds every match in a value far longer than its search window', () => {
    const text = 'EMP-123456 '.repeat(2000);
    expect(maskOne(custom('EMP-[0-9]{6}'), text)).toBe('[EMPLOYEE-ID] '.repeat(2000));
  });

  it('keeps offsets right around astral characters', () => {
    expect(maskOne(custom('EMP-[0-9]{6}'), '😀😀 EMP-123456 é 😀 EMP-654321!')).toBe('😀😀 [EMPLOYEE-ID] é 😀 [EMPLOYEE-ID]!');
  });

  it('anchored patterns see the whole value', () => {
    const masker = custom('^EMP-[0-9]+$');
    expect(maskOne(masker, 'EMP-12')).toBe('[EMPLOYEE-ID]');
    expect(maskOne(masker, 'x EMP-12')).toBe('x EMP-12');
  });

  it('a pattern that matches no string in the document leaves it unchanged', () => {
    const result = custom('EMP-[0-9]{6}').maskJson('{"a": ["EMP-1", {"b": "EMP-"}], "EMP-12345": 1}');
    expect(result).toMatchObject({ ok: true, changed: false });
  });

  it('the prefilter counts keys: a match only in a key is still masked', () => {
    const { body } = masked(custom('EMP-[0-9]{6}').maskJson('{"a": ["EMP-1"], "EMP-123456": 1}'));
    expect(body).toEqual({ a: ['EMP-1'], '[EMPLOYEE-ID]': 1 });
  });

  it('(a+)+$ on a long near-miss completes, because RE2 does not backtrack', () => {
    const masker = compileMasking(rules({ custom: [{ name: 'as', regex: '(a+)+$' }] }));
    const nearMiss = `${'a'.repeat(100_000)}!`;
    expect(maskOne(masker, nearMiss)).toBe(nearMiss);
    expect(maskOne(masker, `x${'a'.repeat(100_000)}`)).toBe('x[AS]');
  });

  it('a regex RE2 refuses is a compile error naming the rule', () => {
    expect(() => custom('(?<=x)y')).toThrow(/employee-id/);
  });

  it('findings do not contain the match', () => {
    const { findings } = masked(custom('EMP-[0-9]{6}').maskJson('{"who": ["EMP-123456"]}'));
    expect(findings).toEqual([{ rule: 'employee-id', path: 'who[0]' }]);
    expect(JSON.stringify(findings)).not.toContain('123456');
  });
});

describe('maskText', () => {
  it('applies built-in and custom patterns to plain text', () => {
    const masker = compileMasking(rules({ patterns: ['email', 'ssn'], custom: [{ name: 'ticket', regex: 'TCK-[0-9]+' }], fields: [{ path: 'a' }] }));
    expect(masker.maskText('mail a@example.com about TCK-42 and 078-05-1120')).toEqual({
      text: 'mail [EMAIL] about [TICKET] and [SSN]',
      changed: true,
      findings: [
        { rule: 'email', path: '$' },
        { rule: 'ticket', path: '$' },
        { rule: 'ssn', path: '$' },
      ],
    });
    expect(masker.maskText('nothing here')).toEqual({ text: 'nothing here', changed: false, findings: [] });
  });
});

describe('checkBodySize', () => {
  it('passes bodies up to the limit and refuses larger ones with a 413', () => {
    expect(checkBodySize(1024, 1024)).toBeUndefined();
    expect(checkBodySize(1025, 1024)).toMatchObject({ status: 413, error: 'body_too_large' });
    expect(checkBodySize(1025, 1024)?.message).toContain('1024');
  });
});
