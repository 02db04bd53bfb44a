import type * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { grpcJs } from '../proto/grpc-js.js';

/** TLS for a gRPC port Flowgate serves (PEM file paths); with `clientCa`, clients must present a certificate it signed. */
export interface ServerTls {
  readonly cert: string;
  readonly key: string;
  readonly clientCa?: string | undefined;
}

/** Plaintext, TLS, or mutual TLS credentials for a gRPC server. */
export function grpcServerCredentials(tls: ServerTls | undefined): grpc.ServerCredentials {
  const { ServerCredentials } = grpcJs();
  if (!tls) return ServerCredentials.createInsecure();
  const ca = tls.clientCa ? readFileSync(tls.clientCa) : null;
  return ServerCredentials.createSsl(ca, [{ cert_chain: readFileSync(tls.cert), private_key: readFileSync(tls.key) }], ca !== null);
}

/** ServerTls from three optional CLI values named PREFIX-cert, PREFIX-key and PREFIX-client-ca. */
export function serverTlsOption(values: Readonly<Record<string, unknown>>, prefix: string): ServerTls | undefined {
  const str = (name: string): string | undefined => {
    const v = values[`${prefix}-${name}`];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const cert = str('cert');
  const key = str('key');
  const clientCa = str('client-ca');
  if (!cert && !key && !clientCa) return undefined;
  if (!cert || !key) throw new TlsOptionError(`--${prefix}-cert and --${prefix}-key go together`);
  return { cert, key, clientCa };
}

/** TLS to a server Flowgate calls (PEM file paths): verify it with `ca`; present `cert` + `key` for mutual TLS. */
export interface ClientTls {
  readonly ca: string;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
}

/** Plaintext or (mutual) TLS credentials for a gRPC client. */
export function grpcClientCredentials(tls: ClientTls | undefined): grpc.ChannelCredentials {
  const { credentials } = grpcJs();
  if (!tls) return credentials.createInsecure();
  return credentials.createSsl(readFileSync(tls.ca), tls.key ? readFileSync(tls.key) : null, tls.cert ? readFileSync(tls.cert) : null);
}

/** A TLS option combination that cannot work. */
export class TlsOptionError extends Error {}
