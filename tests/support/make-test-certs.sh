#!/usr/bin/env bash
# Makes a throwaway TLS setup for the tests in DIR: a CA (ca.pem, ca.key) and a server
# certificate it signed for localhost and 127.0.0.1 (cert.pem, key.pem), valid one day.
set -euo pipefail
dir=${1:?usage: make-test-certs.sh DIR}
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -days 1 -subj "/CN=editfeed test CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req "${ec[@]}" -subj "/CN=localhost" -keyout key.pem -out leaf.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >leaf.ext
openssl x509 -req -days 1 -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -extfile leaf.ext -out cert.pem 2>/dev/null
