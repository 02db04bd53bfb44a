import { serverTlsOption, TlsOptionError, type ServerTls } from '../tls/credentials.js';
import { UsageError, type OptionValues } from './command.js';

/**
 * Option values the serving commands (`serve`, `filters`) share, checked. Apart from serve.ts so that the
 * filter service's command does not load the control plane with it.
 */

/** A TLS option group, with a wrong combination reported as a usage error. */
export function tlsOption(options: OptionValues, prefix: string): ServerTls | undefined {
  try {
    return serverTlsOption(options, prefix);
  } catch (err) {
    if (err instanceof TlsOptionError) throw new UsageError(err.message);
    throw err;
  }
}

/** A --max-buffered-bytes value (absent: the filter service's default of 256 MiB). */
export function bufferedBytesOption(value: unknown, flag: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const bytes = Number(value);
  // The filter service refuses less than one exchange's entry reservation (16 KiB).
  if (!Number.isSafeInteger(bytes) || bytes < 16 * 1024) throw new UsageError(`${flag} must be a whole number of bytes, at least 16384`);
  return bytes;
}
