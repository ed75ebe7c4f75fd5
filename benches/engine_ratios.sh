#!/bin/sh
# The engine against its floor (benches/encrypt.rs), made robust to a noisy
# machine: each wssgate/floor pair is measured ROUNDS times, alternating, in short
# criterion runs, and the best estimate of each is kept (noise on a shared
# machine only ever adds time). Prints a Markdown table; nothing is asserted.
#
#   benches/engine_ratios.sh                 # every pair, 5 rounds
#   ROUNDS=3 benches/engine_ratios.sh 'aes128-cbc/.*/1048576'
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
FILTER=${1:-.}
cargo bench --quiet --bench encrypt --no-run 2>/dev/null
pairs='aes256-cbc/1024 aes256-cbc/10240 aes256-cbc/102400 aes256-cbc/1048576
aes256-cbc/10485760 aes128-cbc/1024 aes128-cbc/1048576 aes256-gcm/1024
aes256-gcm/1048576 aes256-cbc-payload/1048576'

# The point estimate of one benchmark, in microseconds.
measure() {
    cargo bench --quiet --bench encrypt -- --warm-up-time 0.5 --measurement-time 1.5 \
        --noplot "^encrypt/$1\$" 2>/dev/null |
        awk '/^ +time:/ { v = $4; u = $5; if (u == "ms") v *= 1000; if (u == "ns") v /= 1000; print v; exit }'
}

echo "| benchmark | wssgate | floor | wssgate time / floor | throughput / floor's |"
echo "|---|---|---|---|---|"
for pair in $pairs; do
    echo "$pair" | grep -Eq "$FILTER" || continue
    group=${pair%/*}
    size=${pair#*/}
    best_w=1e18; best_f=1e18
    round=0
    while [ "$round" -lt "$ROUNDS" ]; do
        w=$(measure "$group/wssgate/$size")
        f=$(measure "$group/floor/$size")
        best_w=$(echo "$best_w $w" | awk '{ print ($2 < $1) ? $2 : $1 }')
        best_f=$(echo "$best_f $f" | awk '{ print ($2 < $1) ? $2 : $1 }')
        round=$((round + 1))
    done
    echo "$pair $best_w $best_f" | awk '{
        printf "| %s | %.1f µs | %.1f µs | %.2f× | %.2f |\n", $1, $2, $3, $2 / $3, $3 / $2 }'
done
