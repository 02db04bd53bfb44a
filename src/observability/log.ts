import pino from 'pino';

/**
 * The process logger: pino JSON lines on stderr. Level from FLOWGATE_LOG_LEVEL (default info).
 * Credentials never reach a log line: the redact paths cover every header and field that can carry one.
 */
export type Logger = pino.Logger;

const REDACT = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  'headers["x-api-key"]',
  '*.headers.authorization',
  '*.headers["x-api-key"]',
  'apiKey',
  '*.apiKey',
  'token',
  '*.token',
  'password',
  '*.password',
];

let root: Logger | undefined;

/** The shared root logger, created on first use. */
export function rootLogger(): Logger {
  root ??= pino(
    {
      level: process.env.FLOWGATE_LOG_LEVEL ?? 'info',
      base: { pid: process.pid },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: 2, sync: false }),
  );
  return root;
}

/** A child logger tagged with the component that writes through it. */
export function logger(component: string): Logger {
  return rootLogger().child({ component });
}
