#!/usr/bin/env bash
# The HTTP path under load, in one run: wrk against nginx (plain reverse proxy)
# and wssgate (pass-through and encrypting routes), all in front of the same stub
# receiver, and optionally the same wssgate rows for a baseline build. Prints a
# Markdown table: requests/s, p50/p99, and CPU per request of the proxy process(es)
# alone, read from /proc (user + system time over the requests served), and of
# the whole machine (the proxy, wrk and the stub).
#
#   benches/http.sh                      # this tree
#   BASE=<git rev> benches/http.sh       # and the build of <rev>, in the same run
#   BASE_BIN=path/to/wssgate benches/http.sh   # or a baseline binary built before
#   CURRENT_BIN=path/to/wssgate ...            # a binary built before as "current"
#
# Knobs: SECONDS_PER_ROW (10), CONNECTIONS (64), BODY_BYTES (2048), LOG (info),
# ROUNDS (1: each row once; more: rows in turn, medians reported);
# PERF_DIR=dir records a cpu-clock profile of each row there (perf record -g;
# PERF_EVENT=sched:sched_switch, say, records another event; PERF_CALLGRAPH=dwarf
# unwinds code built without frame pointers).
# STAT=1 counts each row's system calls, context switches, wake-ups and page faults
# (perf stat).
# PACE_MS=n has each connection wait n ms after every answer (wrk's delay hook),
# so every row is offered about the same load, CONNECTIONS / (n ms + latency),
# instead of as much as it can take: a cost that comes only with saturation
# (queueing, preemption by wrk and the stub) then shows as the difference.
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light). Nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECONDS_PER_ROW:-10}
conns=${CONNECTIONS:-64}
body_bytes=${BODY_BYTES:-2048}
log=${LOG:-info}
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk nginx-light)" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  [ -f "$work/stub.pid" ] && kill "$(cat "$work/stub.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${CURRENT_BIN:-}" ]; then
  cp "$CURRENT_BIN" "$work/wssgate-current"
else
  cargo build --release --quiet --bin wssgate
  cp target/release/wssgate "$work/wssgate-current"
fi
builds=(current)
if [ -n "${BASE_BIN:-}" ]; then
  cp "$BASE_BIN" "$work/wssgate-base"
  builds=(base current)
elif [ -n "${BASE:-}" ]; then
  git worktree add -q --detach "$work/base-src" "$BASE"
  (cd "$work/base-src" && CARGO_TARGET_DIR="$PWD/../base-target" cargo build --release --quiet --bin wssgate)
  cp "$work/base-target/release/wssgate" "$work/wssgate-base"
  git worktree remove --force "$work/base-src"
  builds=(base current)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
stub_port=$(free_port); nginx_port=$(free_port)

# The stub receiver and the nginx proxy: one nginx, two servers. The stub answers
# every POST with a small SOAP response; the proxy server forwards with keep-alive
# to it, without an access log.
answer='<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ok/></soap:Body></soap:Envelope>'
cat > "$work/stub.conf" <<EOF
worker_processes 1;
pid $work/stub.pid;
error_log $work/stub-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_buffer_size 1m;
  server {
    listen 127.0.0.1:$stub_port;
    location / { client_max_body_size 64m; default_type text/xml; return 200 '$answer'; }
  }
}
EOF
cat > "$work/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream stub { server 127.0.0.1:$stub_port; keepalive 128; }
  # Request bodies held in memory up to 1 MiB, as wssgate holds them up to its
  # stream_threshold: nginx's default (16 KiB) writes larger ones to a file.
  client_body_buffer_size 1m;
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      client_max_body_size 64m;
      proxy_pass http://stub;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -c "$work/stub.conf" -p "$work"
nginx -c "$work/nginx.conf" -p "$work"
sleep 0.5

# The request: a SOAP 1.1 envelope of about BODY_BYTES.
python3 - "$body_bytes" > "$work/body.xml" <<'EOF'
import sys
size = int(sys.argv[1])
lines, i = [], 0
while sum(map(len, lines)) < size - 200:
    lines.append(f'<ord:line no="{i}"><ord:sku>SKU-{i:08}</ord:sku><ord:qty>3</ord:qty></ord:line>')
    i += 1
sys.stdout.write('<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
                 '<ord:submit xmlns:ord="urn:example:orders">' + ''.join(lines) +
                 '</ord:submit></soap:Body></soap:Envelope>')
EOF
cat > "$work/post.lua" <<EOF
local f = io.open("$work/body.xml", "rb"); local body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = body
wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
wrk.headers["SOAPAction"] = '"urn:submit"'
local pace = ${PACE_MS:-0}
if pace > 0 then delay = function() return pace end end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %.3f %.3f %d\n", summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
EOF

mkdir -p "$work/keystore" "$work/var"
cp benches/data/receiver-2048.pem "$work/keystore/bench.pem"
start_wssgate() {  # build port -> pid
  local build=$1 port=$2
  cat > "$work/wssgate-$build.toml" <<EOF
[proxy]
listen = "127.0.0.1:$port"
[admin]
listen = "127.0.0.1:0"
[keystore]
dir = "$work/keystore"
state_dir = "$work/var"
[[route]]
name = "pass"
path = "/pass"
upstream = "http://127.0.0.1:$stub_port/s"
alias = "bench"
mode = "pass-through"
[[route]]
name = "encrypt"
path = "/encrypt"
upstream = "http://127.0.0.1:$stub_port/s"
alias = "bench"
EOF
  RUST_LOG=$log "$work/wssgate-$build" serve -c "$work/wssgate-$build.toml" >"$work/wssgate-$build.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    curl -s -o /dev/null -X POST -H 'Content-Type: text/xml' --data-binary @"$work/body.xml" "http://127.0.0.1:$port/pass" && break
    sleep 0.1
  done
  echo "$pid"
}

# CPU seconds (user + system) of the given processes, from /proc.
cpu_of() {
  local total=0 ticks
  ticks=$(getconf CLK_TCK)
  for p in "$@"; do
    # Fields 14 and 15 of /proc/PID/stat, after the parenthesized name.
    read -r u s < <(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12, $13}')
    total=$((total + u + s))
  done
  echo "$total $ticks"
}

# Busy ticks of the whole machine (user, nice, system, irq, softirq; not idle,
# iowait or steal), from /proc/stat: the proxy's own CPU plus what it makes wrk
# and the stub spend, such as being woken from idle or waking it.
machine_busy() {
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}

row() {  # name url pids...
  local name=$1 url=$2; shift 2
  read -r before ticks < <(cpu_of "$@")
  local machine_before
  machine_before=$(machine_busy)
  local out perf_pid=
  if [ -n "${PERF_DIR:-}" ]; then
    mkdir -p "$PERF_DIR"
    local file="$PERF_DIR/$(echo "$name" | tr -c 'a-z0-9\n' '-').data"
    perf record -q -e "${PERF_EVENT:-cpu-clock}" -F 999 --call-graph "${PERF_CALLGRAPH:-fp}" -p "$(IFS=,; echo "$*")" -o "$file" -- sleep "$secs" 2>/dev/null &
    perf_pid=$!
  fi
  local stat_pid=
  if [ -n "${STAT:-}" ]; then
    perf stat -x, -e raw_syscalls:sys_enter,context-switches,sched:sched_wakeup,page-faults \
      -p "$(IFS=,; echo "$*")" -o "$work/stat.out" -- sleep "$secs" 2>/dev/null &
    stat_pid=$!
  fi
  out=$(wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s -s "$work/post.lua" "$url" | grep '^RESULT')
  read -r after _ < <(cpu_of "$@")
  local machine_after
  machine_after=$(machine_busy)
  [ -n "$perf_pid" ] && wait "$perf_pid" 2>/dev/null || true
  read -r _ requests p50 p99 errors <<<"$out"
  if [ -n "$stat_pid" ]; then
    wait "$stat_pid" 2>/dev/null || true
    awk -F, -v n="$name" -v r="$requests" '
      $3 == "raw_syscalls:sys_enter" { sc = $1 } $3 == "context-switches" { cs = $1 }
      $3 == "sched:sched_wakeup" { wu = $1 } $3 == "page-faults" { pf = $1 }
      END { printf "| %s | %.2f | %.2f | %.2f | %.2f |\n", n, sc / r, cs / r, wu / r, pf / r }' \
      "$work/stat.out" >> "$work/stat-rows"
  fi
  awk -v n="$name" -v r="$requests" -v s="$secs" -v p50="$p50" -v p99="$p99" -v e="$errors" \
      -v cpu="$((after - before))" -v machine="$((machine_after - machine_before))" -v t="$ticks" \
      'BEGIN { printf "| %s | %.0f | %.2f | %.2f | %d | %.1f | %.1f |\n", n, r / s, p50, p99, e, cpu / t * 1e6 / r, machine / t * 1e6 / r }'
}

nginx_pids=($(pgrep -P "$(cat "$work/nginx.pid")") "$(cat "$work/nginx.pid")")
# Every build's daemon runs from the start; the rows then go round ROUNDS times
# in turn (nginx, then each build), so that a slow minute of the machine falls
# on every row alike. Each figure is the median of its rounds.
declare -A ports daemon_pids
for build in "${builds[@]}"; do
  ports[$build]=$(free_port)
  daemon_pids[$build]=$(start_wssgate "$build" "${ports[$build]}")
done
rounds=${ROUNDS:-1}
for round in $(seq "$rounds"); do
  row "nginx, plain reverse proxy" "http://127.0.0.1:$nginx_port/s" "${nginx_pids[@]}"
  for build in "${builds[@]}"; do
    row "wssgate ($build), pass-through" "http://127.0.0.1:${ports[$build]}/pass" "${daemon_pids[$build]}"
    row "wssgate ($build), encrypting" "http://127.0.0.1:${ports[$build]}/encrypt" "${daemon_pids[$build]}"
  done
done > "$work/rows"
for build in "${builds[@]}"; do kill "${daemon_pids[$build]}"; done
pacing=${PACE_MS:+, each connection pausing ${PACE_MS} ms after an answer}
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t1 -c$conns ${secs}s per row, ${body_bytes}-byte body, log level $log$pacing, median of $rounds round(s)"
echo
echo "| proxy | requests/s | p50 ms | p99 ms | errors | CPU µs per request | machine CPU µs per request |"
echo "|---|---|---|---|---|---|---|"
# The median of each column, per row name, in the order the rows first came.
awk -F' [|] ' '
  function median(list,   n, v, i, j, t) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  {
    name = substr($1, 3)
    if (!(name in seen)) { seen[name] = 1; order[++count] = name }
    for (c = 2; c <= 7; c++) { sub(/ [|]$/, "", $c); col[name, c] = col[name, c] " " $c }
  }
  END {
    for (k = 1; k <= count; k++) {
      name = order[k]
      printf "| %s | %.0f | %.2f | %.2f | %d | %.1f | %.1f |\n", name, median(col[name, 2]), median(col[name, 3]), median(col[name, 4]), median(col[name, 5]), median(col[name, 6]), median(col[name, 7])
    }
  }' "$work/rows"
if [ -n "${STAT:-}" ]; then
  echo
  echo "Per request, the proxy's own threads (perf stat, last round):"
  echo
  echo "| proxy | system calls | context switches | wake-ups it made | page faults |"
  echo "|---|---|---|---|---|"
  tail -n "$(( ${#builds[@]} * 2 + 1 ))" "$work/stat-rows"
fi
