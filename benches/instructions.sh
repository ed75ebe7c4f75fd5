#!/usr/bin/env bash
# Instructions per message of the engine and of its floor, counted by callgrind
# (valgrind): a count, not a time, so it is the same on a busy machine as on an
# idle one, and two builds compare exactly. Each figure is (run of N+1 messages −
# run of 1 message) / N, so start-up and the certificate parse cancel out.
#
#   benches/instructions.sh                    # this tree
#   BASE=<git rev> benches/instructions.sh     # and <rev>'s build, with the ratio
#
# Knobs: SIZES ("1024 102400"), MESSAGES (200), CIPHER (aes256-cbc).
# Needs valgrind. Nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${SIZES:-1024 102400}
n=${MESSAGES:-200}
cipher=${CIPHER:-aes256-cbc}
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet --example engine_loop
cp target/release/examples/engine_loop "$work/current"
builds=(current)
if [ -n "${BASE:-}" ]; then
  git worktree add -q --detach "$work/base-src" "$BASE"
  # The workload is this tree's, so both builds run the same loop; the floor
  # calls cipher code whose API may differ in <rev>, so only the engine (whose
  # entry point is stable) is counted there.
  mkdir -p "$work/base-src/examples" "$work/base-src/benches/data" "$work/base-src/benches/common"
  sed 's|"floor" => common::floor(&recipient, &algorithms, &input, &mut out),|"floor" => std::process::exit(3),|' \
    examples/engine_loop.rs > "$work/base-src/examples/engine_loop.rs"
  { echo '#![allow(dead_code)]'; sed -n '/^\/\/\/ A SOAP 1.1 envelope/,/^}/p' benches/common/mod.rs; } \
    > "$work/base-src/benches/common/mod.rs"
  cp benches/data/receiver-2048.pem "$work/base-src/benches/data/"
  (cd "$work/base-src" && CARGO_TARGET_DIR="$work/base-target" cargo build --release --quiet --example engine_loop)
  cp "$work/base-target/release/examples/engine_loop" "$work/base"
  git worktree remove --force "$work/base-src"
  builds=(base current)
fi

count() {  # binary workload size messages -> instructions
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" "$2" "$3" "$4" "$cipher" 2>&1 \
    | awk '/Collected/ { gsub(",", "", $NF); print $NF }'
}
per_message() {  # binary workload size
  local one many
  one=$(count "$1" "$2" "$3" 1)
  many=$(count "$1" "$2" "$3" $((n + 1)))
  echo $(((many - one) / n))
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ), callgrind, $cipher, $n messages per figure"
echo
echo "| size | build | engine (instructions/message) | floor | floor / engine |"
echo "|---|---|---|---|---|"
for size in $sizes; do
  for build in "${builds[@]}"; do
    e=$(per_message "$work/$build" engine "$size")
    if [ "$build" = base ]; then f=0; else f=$(per_message "$work/$build" floor "$size"); fi
    eval "engine_$build=$e"
    awk -v s="$size" -v b="$build" -v e="$e" -v f="$f" \
      'BEGIN { if (f) printf "| %d | %s | %d | %d | %.2f |\n", s, b, e, f, f / e;
               else printf "| %d | %s | %d | | |\n", s, b, e }'
  done
  if [ -n "${BASE:-}" ]; then
    awk -v s="$size" -v b="$engine_base" -v c="$engine_current" \
      'BEGIN { printf "| %d | current / base | %.3f | | |\n", s, c / b }'
  fi
done
