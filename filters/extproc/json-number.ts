/**
 * The integer a JSON number literal denotes, read from its text: `4111111111111111`, `4111111111111111.0`
 * (a float from Python or pandas), `4.111111111111111e15` and `6011000990139424012` all give their exact
 * digits. JSON.parse would round the last one (it is above 2^53), so a card number or id written as a JSON
 * number is only ever judged by the digits the client sent.
 */

const LITERAL = /^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/** The most digits an integer read here may have; longer ones are nothing the detectors look for. */
const MAX_DIGITS = 19;

/** The decimal digits of the integer `literal` denotes (no sign, no leading zeros), or undefined if it has a fraction or more than 19 digits. */
export function integerDigits(literal: string): string | undefined {
  const m = LITERAL.exec(literal);
  if (m === null) return undefined;
  const whole = m[1] as string;
  const fraction = m[2] ?? '';
  const exponent = m[3] === undefined ? 0 : Number(m[3]);
  if (Math.abs(exponent) > 64) return undefined;
  const digits = whole + fraction;
  // Where the decimal point falls in `digits` once the exponent is applied.
  const point = whole.length + exponent;
  if (point <= 0) return /^0*$/.test(digits) ? '0' : undefined;
  let integer: string;
  if (point >= digits.length) {
    integer = digits + '0'.repeat(point - digits.length);
  } else {
    if (!/^0*$/.test(digits.slice(point))) return undefined;
    integer = digits.slice(0, point);
  }
  integer = integer.replace(/^0+(?=\d)/, '');
  return integer.length <= MAX_DIGITS ? integer : undefined;
}
