/**
 * Default ports and addresses, shared by the CLI, the bootstrap generator and the deployment files.
 */
export const DEFAULTS = {
  /** Control plane xDS gRPC port. */
  xdsPort: 18000,
  /** Control plane admin HTTP port (/metrics, /readyz, /debug/*). */
  adminPort: 18090,
  /** Filter service gRPC port (ext_authz, rate limit, ext_proc). */
  filtersPort: 18081,
  /** Filter service admin HTTP port. */
  filtersAdminPort: 18091,
  /** Envoy admin port in generated bootstraps (always on loopback). */
  envoyAdminPort: 9901,
  /** Envoy's probe listener in the deployment files (`flowgate bootstrap --health-listen`): GET /ready only. */
  envoyHealthPort: 9902,
  /** The public listener of the default policy. */
  listenerPort: 10000,
} as const;
