#!/usr/bin/env bash
# make-test-ca.sh - a throwaway certificate authority for trying and testing
# Lumen's TLS: never for production (its keys sit unencrypted in DIR).
#   scripts/make-test-ca.sh DIR [DAYS]
# Writes into DIR (created, mode 0700):
#   ca.pem                      the CA certificate (LUMEN_TLS_CA, lumen_connect_opts.tls_ca)
#   server.pem, server.key      services' certificate for 127.0.0.1, ::1 and localhost
#                               (LUMEN_TLS_CERT, LUMEN_TLS_KEY); usable as a client
#                               certificate too, since services call each other
#   client.pem, client.key      a client certificate (lumen_connect_opts.tls_cert, tls_key)
# Services with a CA configured require clients to present a certificate it
# signed (mutual TLS). More host names for the server certificate:
#   LUMEN_TLS_HOSTS="DNS:node1,IP:10.0.0.5" scripts/make-test-ca.sh DIR
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 DIR [DAYS]" >&2; exit 2; }
dir=$1
days=${2:-30}
command -v openssl >/dev/null || { echo "$0: openssl not found (scripts/deps.sh install)" >&2; exit 1; }

mkdir -p "$dir"
chmod 700 "$dir"
umask 077
cd "$dir"

# EC P-256: small and fast to make; gRPC's TLS accepts it.
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# $1: name, $2: subject CN, $3: extensions (config text)
sign() {
    local name=$1 cn=$2 ext=$3
    newkey "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
    printf '%s\n' "$ext" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" -sha256 \
        -extfile "$name.ext" -out "$name.pem" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

newkey ca.key
openssl req -new -x509 -key ca.key -subj "/CN=Lumen test CA" -days "$days" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem

hosts="IP:127.0.0.1,IP:::1,DNS:localhost${LUMEN_TLS_HOSTS:+,$LUMEN_TLS_HOSTS}"
sign server "lumen-service" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$hosts"
sign client "lumen-client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 644 ca.pem server.pem client.pem

echo "make-test-ca.sh: CA, server and client certificates in $(pwd) (valid $days days)"
