#!/usr/bin/env bash
# Micro-benchmarks (criterion) of the pure functions on the hot paths: intake's body validation and
# API key hashing (core/benches/hot_paths.rs), the Discord embed (providers/discord/benches/render.rs)
# and the Telegram message text (providers/telegram/benches/render.rs), on small and large events.
#
#   bench/micro.sh [criterion options, e.g. --warm-up-time 1 --measurement-time 2]
#
# Prints each benchmark's time per call as criterion's [lower bound, estimate, upper bound] and
# writes the same to bench/results/micro.txt. Criterion's progress goes to stderr; its reports and
# baselines stay in target/criterion.
set -euo pipefail
cd "$(dirname "$0")/.."

benches=("pingpilot-core hot_paths" "pingpilot-discord render" "pingpilot-telegram render")
# Build them all before measuring anything, so no compiler runs beside a measurement.
for bench in "${benches[@]}"; do
  read -r package name <<<"$bench"
  cargo bench -q -p "$package" --bench "$name" --features pingpilot-core/samples --no-run
done

mkdir -p bench/results
result=bench/results/micro.txt
{
  echo "PingPilot micro-benchmarks — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(rustc --version)"
  echo "time per call: [lower bound, estimate, upper bound] of criterion's 95% confidence interval${*:+; options: $*}"
  for bench in "${benches[@]}"; do
    read -r package name <<<"$bench"
    echo
    echo "$package ($name)"
    # --quiet prints a long name on a line of its own, its time on the next: one line each here.
    cargo bench -q -p "$package" --bench "$name" --features pingpilot-core/samples -- --quiet --color never "$@" |
      awk '/^[^ ]/ { name = $1 } /time:/ { sub(/.*time: */, ""); printf "  %-26s %s\n", name, $0 }'
  done
} | tee "$result"
