import { isIP } from 'node:net';
import { typed } from '../proto/codec.js';

/**
 * An Envoy upstream TLS transport socket (HTTP/2 over TLS): verify the server with `ca` (and its name with
 * `sni`, default the host when it is a name), and present `cert`/`key` for mutual TLS. Paths are on the
 * Envoy hosts. Used for the control plane in bootstraps and for the filter service in CDS.
 */

const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

export interface UpstreamTlsFiles {
  readonly ca: string;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly sni?: string | undefined;
}

export function upstreamTls(tls: UpstreamTlsFiles, host: string): object {
  const sni = tls.sni ?? (isIP(host) ? undefined : host);
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: typed(UPSTREAM_TLS, {
      common_tls_context: {
        alpn_protocols: ['h2'],
        ...(tls.cert && tls.key && { tls_certificates: [{ certificate_chain: { filename: tls.cert }, private_key: { filename: tls.key } }] }),
        validation_context: {
          trusted_ca: { filename: tls.ca },
          ...(sni && { match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: sni } }] }),
        },
      },
      ...(sni && { sni }),
    }),
  };
}
