#!/usr/bin/env bash
# Development certificates and credentials for the compose stack: a CA, a broker certificate it signed for the
# names the stack uses (mosquitto, localhost, 127.0.0.1), random MQTT passwords for ecgwatch, the simulator and
# the broker's health check (with the broker's password file), and Grafana's admin password.
# For production use your own PKI and secret store.
#   deploy/container/make-dev-certs.sh [DIR]      # default: deploy/container/certs (git-ignored)
# Existing passwords are kept, so re-running only renews the certificates.
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
chmod 600 ca.key
chmod 644 ca.crt broker.crt
# Mosquitto 2 drops to its own user (uid 1883 in the eclipse-mosquitto image) before it reads the key, and the
# certs folder is mounted read-only, so the image cannot chown it: give the key to that group where we may,
# else make this dev-only key readable (the CA key stays private).
if chgrp 1883 broker.key 2>/dev/null; then chmod 640 broker.key; else chmod 644 broker.key; fi

# Passwords. The containers run as other users than you (ecgwatch 10001, Grafana 472) and compose mounts
# secret files as they are on disk, so these dev-only files are world-readable (the daemon warns about it).
for name in mqtt-ecgwatch mqtt-simulator mqtt-healthcheck grafana-admin; do
    [ -s "$name.password" ] || openssl rand -hex 24 > "$name.password"
    chmod 644 "$name.password"
done
# The broker's password file holds salted hashes only. mosquitto_passwd comes with Mosquitto; without it
# here, the broker image's copy is used.
: > mosquitto.passwd
for user in ecgwatch simulator healthcheck; do
    if command -v mosquitto_passwd >/dev/null; then
        mosquitto_passwd -b mosquitto.passwd "$user" "$(cat "mqtt-$user.password")"
    else
        docker run --rm -v "$PWD:/work" eclipse-mosquitto:2.0 \
            mosquitto_passwd -b /work/mosquitto.passwd "$user" "$(cat "mqtt-$user.password")"
    fi
done
chmod 644 mosquitto.passwd
echo "wrote $(pwd)/{ca.crt,ca.key,broker.crt,broker.key,mosquitto.passwd,*.password}"
