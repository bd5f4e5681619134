#!/usr/bin/env bash
# Development certificates for the compose stack's TLS listener: a CA, and a broker certificate it signed
# for the names the stack uses (mosquitto, localhost, 127.0.0.1). For production use your own PKI.
#   deploy/container/make-dev-certs.sh [DIR]      # default: deploy/container/certs
set -euo pipefail
dir="${1:-$(dirname "$0")/certs}"
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 -subj "/CN=ecgwatch dev CA" \
    -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=mosquitto" \
    -keyout broker.key -out broker.csr 2>/dev/null
printf 'subjectAltName=DNS:mosquitto,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > broker.ext
openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -extfile broker.ext \
    -out broker.crt 2>/dev/null
rm -f broker.csr broker.ext ca.srl
chmod 600 ca.key broker.key
chmod 644 ca.crt broker.crt
echo "wrote $(pwd)/{ca.crt,ca.key,broker.crt,broker.key}"
