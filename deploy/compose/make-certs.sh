#!/usr/bin/env bash
# Makes the demo PKI docker-compose.yml runs with: one CA and a certificate per service, so that every internal
# gRPC port (xDS + access logs on control-plane:18000, the filter service on filters:18081) is mutual TLS.
#   bash deploy/compose/make-certs.sh [DIR]  (before the first `docker compose up`; again to rotate)
# Writes DIR, by default deploy/compose/certs/ (git-ignored):
#   ca.crt                     trusted by every service; ca.key stays in certs/ca/ and is mounted nowhere
#   control-plane.crt/.key     server certificate of control-plane (xDS, access logs)
#   filters.crt/.key           server certificate of filters, also its client certificate towards control-plane
#   envoy.crt/.key             Envoy's client certificate, for xDS and for its calls to the filter service
# These are demo certificates (2-year, RSA 2048). In production, issue them from your own CA (deploy/k8s uses
# cert-manager). Keys are readable by the containers' users (uid 1000 flowgate, uid 101 envoy), hence mode 0644
# inside a directory only you can list.
set -euo pipefail
dir="${1:-$(cd "$(dirname "$0")" && pwd)/certs}"
mkdir -p "$dir/ca"
chmod 0711 "$dir"
chmod 0700 "$dir/ca"
cd "$dir"
days=730
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca/ca.key -out ca.crt -days "$days" -subj '/CN=flowgate-compose-ca' 2>/dev/null

leaf() { # name subjectAltName extendedKeyUsage
  local name=$1 san=$2 eku=$3
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "ca/$name.csr" -subj "/CN=$name" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nkeyUsage=digitalSignature,keyEncipherment\n' "$san" "$eku" > "ca/$name.ext"
  openssl x509 -req -in "ca/$name.csr" -CA ca.crt -CAkey ca/ca.key -CAserial ca/ca.srl -CAcreateserial -out "$name.crt" -days "$days" -extfile "ca/$name.ext" 2>/dev/null
  chmod 0644 "$name.key" "$name.crt"
}
leaf control-plane 'DNS:control-plane' serverAuth
leaf filters 'DNS:filters' 'serverAuth,clientAuth'
leaf envoy 'DNS:envoy' clientAuth
chmod 0644 ca.crt
echo "wrote $dir: ca.crt, control-plane.{crt,key}, filters.{crt,key}, envoy.{crt,key}" >&2
