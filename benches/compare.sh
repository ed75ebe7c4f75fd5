#!/bin/sh
# The performance comparison of docs/PERFORMANCE.md in one run, on this machine:
# the engine against its floor (criterion), libxmlsec1 encrypting the same
# envelopes (python-xmlsec), and the proxy under load (benches/load.rs: direct,
# nginx if installed, wssgate pass-through and encrypting, exchanges under load,
# memory with 1,000 concurrent requests).
#
#   benches/compare.sh               # LOAD_SECONDS=10 per load measurement
#
# Needs what scripts/install-test-deps installs (python3-xmlsec) and, for the
# nginx row, nginx. Prints Markdown-ready figures; nothing is asserted.
set -eu
cd "$(dirname "$0")/.."
XMLSEC_SECONDS=${XMLSEC_SECONDS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
cargo build --release --benches --quiet

echo
echo "## Engine and floor (criterion, one thread)"
cargo bench --quiet --bench encrypt -- --warm-up-time 1 --measurement-time 4 \
    '(aes128-cbc|aes256-gcm|aes256-cbc-payload)/.*/(1024|1048576)$' 2>/dev/null \
    | grep -E '^encrypt/|time:|thrpt:' | grep -v '%'

echo
echo "## libxmlsec1, same envelopes, one thread"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
    -days 2 -subj "/CN=compare" 2>/dev/null
/usr/bin/python3 benches/tools/xmlsec_encrypt.py "$tmp/cert.pem" "$XMLSEC_SECONDS"

echo
echo "## Proxy under load"
cargo bench --quiet --bench load
