#!/usr/bin/env bash
# Peak resident memory of wssgate on very large messages:
#  1. `wssgate encrypt` on a generated envelope of ENCRYPT_SIZE (default 1G), via /usr/bin/time -v;
#  2. `wssgate serve` streaming a REQUEST_SIZE (default 256M) chunked request to a sink receiver,
#     peak RSS read from /proc/PID/status (VmHWM).
# Loopback only; every process is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ENCRYPT_SIZE=${ENCRYPT_SIZE:-1G}
REQUEST_SIZE=${REQUEST_SIZE:-256M}
cargo build --release --quiet
bin=$PWD/target/release/wssgate
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=memory-receiver" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

echo "== wssgate encrypt, $ENCRYPT_SIZE envelope from a pipe"
python3 benches/tools/gen_envelope.py "$ENCRYPT_SIZE" \
  | /usr/bin/time -v "$bin" encrypt --cert "$work/cert.pem" 2> "$work/time.txt" | wc -c | sed 's/^/output bytes: /'
grep -E "Maximum resident set size|Elapsed" "$work/time.txt"

echo "== wssgate serve, $REQUEST_SIZE chunked request streamed to a sink"
port_sink=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
port_proxy=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 benches/tools/sink.py "$port_sink" & pids+=($!)
mkdir -p "$work/keystore"
cp "$work/cert.pem" "$work/keystore/rx.pem"
cat > "$work/wssgate.toml" <<TOML
[proxy]
listen = "127.0.0.1:$port_proxy"
max_body = "2GiB"
stream_threshold = "1MiB"
upstream_timeout = "300s"
[keystore]
dir = "keystore"
state_dir = "var"
[[route]]
name = "big"
path = "/big"
upstream = "http://127.0.0.1:$port_sink/big"
alias = "rx"
TOML
RUST_LOG=warn "$bin" serve -c "$work/wssgate.toml" & pids+=($!)
daemon=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port_proxy/" && break; sleep 0.1; done
grep VmRSS /proc/$daemon/status | sed 's/^/before: /'
python3 benches/tools/gen_envelope.py "$REQUEST_SIZE" \
  | curl -s -o /dev/null -w "status %{http_code}, sent %{size_upload} bytes in %{time_total}s\n" \
      -X POST -H "Content-Type: text/xml" -H "Transfer-Encoding: chunked" -T - "http://127.0.0.1:$port_proxy/big"
grep -E "VmHWM|VmRSS" /proc/$daemon/status
