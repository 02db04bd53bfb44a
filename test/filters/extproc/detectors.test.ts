import { describe, expect, it } from 'vitest';
import { issuedLengths, luhnValid } from '../../../filters/extproc/cards.js';
import { DETECTORS, detectAll, fieldNamesSsn } from '../../../filters/extproc/detectors.js';
import { foldForDetection } from '../../../filters/extproc/fold.js';

/** The matched substrings of `text`. */
const found = (text: string, spans: readonly { start: number; end: number }[]): string[] => spans.map((s) => text.slice(s.start, s.end));
const cards = (text: string): string[] => found(text, DETECTORS.card(text));
const ssns = (text: string, field?: string): string[] => found(text, DETECTORS.ssn(text, field === undefined ? undefined : { field }));

describe('folding', () => {
  it('maps spans back over dropped and folded characters, keeping the invisible ones inside a match', () => {
    const text = '😀 x\u200b4111\u200b1111\u00a01111\uff11111\u200b y';
    const folded = foldForDetection(text);
    expect(folded.text).toBe('😀 x41111111 11111111 y');
    expect(cards(text)).toEqual([]); // glued to the x once the zero-width space is skipped
    const spaced = `😀 \u200b4111\u200b1111\u00a01111\uff11111\u200b y`;
    expect(cards(spaced)).toEqual(['4111\u200b1111\u00a01111\uff11111']);
  });

  it('leaves text without look-alikes as it is', () => {
    const text = 'plain ascii 4111 1111 1111 1111 and é';
    expect(foldForDetection(text).text).toBe(text);
  });

  it('detectAll folds once and answers per detector, in the order asked', () => {
    const text = 'ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ ４１１１１１１１１１１１１１１１';
    expect(detectAll(text, ['card', 'email']).map((spans) => found(text, spans))).toEqual([['４１１１１１１１１１１１１１１１'], ['ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ']]);
  });
});

describe('card rules', () => {
  it('separators of one kind join groups, mixed freely within the kind', () => {
    for (const text of ['4111-1111.1111/1111', '4111_1111-1111.1111', '4111 1111\t1111\n1111', '4111\r\n1111\r\n1111\r\n1111']) expect(cards(text)).toEqual([text]);
  });

  it('spaces mixed with punctuation are a list of numbers, not a card', () => {
    expect(cards('4111 1111-1111 1111')).toEqual([]);
    // 39904201164074 passes Luhn with a Diners prefix: as one number these coordinates would be a card.
    expect(luhnValid([3, 9, 9, 0, 4, 2, 0, 1, 1, 6, 4, 0, 7, 4], 0, 14)).toBe(true);
    expect(issuedLengths(399042) & (1 << 14)).not.toBe(0);
    expect(cards('39.90420 116.4074')).toEqual([]);
  });

  it('a gap has at most two separators, and a space next to a dash ends the run', () => {
    expect(cards('4111   1111 1111 1111')).toEqual([]);
    expect(cards('4111 -1111 1111 1111')).toEqual([]);
    expect(cards('4111  1111 1111 1111')).toEqual(['4111  1111 1111 1111']);
  });

  it('inside a longer run, a window starts and ends at spaces and is grouped like a printed card', () => {
    expect(cards('ref 12 4111 1111 1111 1111 2024')).toEqual(['4111 1111 1111 1111']);
    expect(cards('4111 1111 1111 1111 12/25 123')).toEqual(['4111 1111 1111 1111']);
    expect(cards('1.4111111111111111')).toEqual([]);
    expect(cards('4111111111111111.5')).toEqual([]);
    expect(cards('12-4111-1111-1111-1111')).toEqual([]);
    // The first 13 digits, 4155552671412, pass Luhn with a Visa prefix; the groups (3-3-4-3) are no card's.
    expect(luhnValid([4, 1, 5, 5, 5, 5, 2, 6, 7, 1, 4, 1, 2], 0, 13)).toBe(true);
    expect(cards('415 555 2671 412 555 2672')).toEqual([]);
    expect(cards('4155552671412')).toEqual(['4155552671412']);
  });

  it('the whole run may be grouped any way', () => {
    for (const text of ['4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1', '41-11111-1-11111-111', '3 7 8 2 8 2 2 4 6 3 1 0 0 0 5']) expect(cards(text)).toEqual([text]);
  });

  it('needs an issuer prefix and one of its lengths', () => {
    expect(issuedLengths(411111)).toBe((1 << 13) | (1 << 16) | (1 << 19));
    expect(issuedLengths(378282)).toBe(1 << 15);
    expect(issuedLengths(123456)).toBe(0);
    expect(issuedLengths(700000)).toBe(0);
    expect(cards('1234567890123452')).toEqual([]); // passes Luhn
    expect(cards('41111111111111113')).toEqual([]); // passes Luhn, 17 digits
    expect(cards('378282246310005')).toEqual(['378282246310005']);
  });

  it('is not glued to a word in any script', () => {
    for (const text of ['id4111111111111111', 'x_4111111111111111', '4111111111111111ab', 'é4111111111111111', '4111111111111111ж']) expect(cards(text)).toEqual([]);
    for (const text of ['id-4111111111111111', '#4111111111111111', '"4111111111111111"']) expect(cards(text)).toEqual(['4111111111111111']);
  });

  it('finds every card in a long run of them', () => {
    const text = Array.from({ length: 50 }, () => '4111 1111 1111 1111').join(' ');
    expect(cards(text)).toHaveLength(50);
  });
});

describe('ssn rules', () => {
  it('dashed and spaced forms are always SSNs', () => {
    expect(ssns('078-05-1120 and 078 05 1120')).toEqual(['078-05-1120', '078 05 1120']);
  });

  it('a spaced SSN inside a longer space-grouped number is not one', () => {
    expect(ssns('12 078 05 1120')).toEqual([]);
    expect(ssns('078 05 1120 99')).toEqual([]);
  });

  it('nine bare digits need the word within 40 characters, before or after', () => {
    const gap = (n: number): string => 'x'.repeat(n - 2).padStart(n - 1, ' ').padEnd(n, ' ');
    expect(gap(40)).toHaveLength(40);
    expect(ssns(`ssn${gap(40)}078051120`)).toEqual(['078051120']);
    expect(ssns(`ssn${gap(41)}078051120`)).toEqual([]);
    expect(ssns(`078051120${gap(40)}SSN`)).toEqual(['078051120']);
    expect(ssns(`078051120${gap(41)}SSN`)).toEqual([]);
    expect(ssns('078051120')).toEqual([]);
  });

  it('the word must be a word: not inside another one', () => {
    for (const text of ['assn 078051120', 'classname 078051120', 'session 078051120', 'ssnumber 078051120']) expect(ssns(text)).toEqual([]);
  });

  it('a member name says so too', () => {
    for (const field of ['ssn', 'SSN', 'ssns', 'customerSSN', 'SSNLast4', 'social_security_number', 'socialSecurityNo', 'soc-sec']) {
      expect(fieldNamesSsn(field), field).toBe(true);
      expect(ssns('078051120', field), field).toEqual(['078051120']);
    }
    for (const field of ['classname', 'session', 'assn', 'ssnumber', 'id', 'lessons']) {
      expect(fieldNamesSsn(field), field).toBe(false);
      expect(ssns('078051120', field), field).toEqual([]);
    }
  });

  it('never-issued numbers stay, with the word or without', () => {
    for (const digits of ['000123456', '666123456', '900123456', '123004567', '123450000']) expect(ssns(`ssn ${digits}`, 'ssn')).toEqual([]);
  });
});
