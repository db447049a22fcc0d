#!/usr/bin/env bash
# How much memory hostile clients can pin in the relay, on this machine, all on 127.0.0.1.
#
#   bench/hostile_clients.sh [--connections 1000] [--idle-connections 1100] [--nofile N]
#                            [--repeat 2] [--loads "bogus:at-once head:slow:15360 ..."] [--append]
#
# Builds nothing: run `cargo build --release` first. Creates an account on an unlimited plan
# and a category in a temporary SQLite database (as bench/run.sh does), then for each load
# starts a fresh `target/release/pingpilot serve` on that database with the default server
# limits (with `--nofile N`: under `ulimit -n N`, soft and hard, so the relay cannot raise it
# and derives a smaller max_connections), lets bench/hostile_clients.py run the load --repeat
# times against it (the script waits after each until the relay has closed the load's
# connections), checks the relay is still alive and stops it. The loads (see the script):
#   bogus  1,000 POSTs with a bogus key, Content-Length 65536, 60 KiB of body, held open
#   valid  the same with a valid key: the relay reads the bodies, until server.body_timeout
#   head   1,000 request heads that never end (15 KiB, just under the 16 KiB limit, or the
#          size given as a load's third field), until server.header_timeout or a 431
#   h2     one cleartext HTTP/2 prior-knowledge connection opening 3,000 streams
#   idle   1,100 connections that send nothing; does /healthz answer meanwhile
# each with the body (or head, or frames) sent at once or slowly (1 KiB every 100 ms).
# Results: bench/results/hostile-clients.txt (with --append, added to it).
set -euo pipefail
cd "$(dirname "$0")/.."

connections=1000 idle_connections=1100 nofile= repeat=2 append=
loads="bogus:at-once bogus:slow valid:at-once valid:slow head:at-once head:slow head:at-once:61440 h2:at-once h2:slow idle:-"
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) connections=$2; shift 2 ;;
    --idle-connections) idle_connections=$2; shift 2 ;;
    --nofile) nofile=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --loads) loads=$2; shift 2 ;;
    --append) append=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
bin=target/release/pingpilot
[ -x "$bin" ] || { echo "$bin is missing: cargo build --release first" >&2; exit 1; }

work=$(mktemp -d)
relay_pid=
stop_relay() {
  if [ -n "$relay_pid" ]; then
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=
  fi
}
cleanup() { stop_relay; rm -rf "$work"; }
trap cleanup EXIT

port=18190
url="http://127.0.0.1:$port"
# Discord points at a closed port: no event is ever accepted here, so nothing is delivered.
cat > "$work/pingpilot.toml" <<TOML
[server]
bind = "127.0.0.1:$port"

[database]
url = "sqlite://$work/relay.db"

[providers.discord]
bot_token = "bench-token"
api_base = "http://127.0.0.1:9"
TOML

start_relay() {
  local log=$1
  if [ -n "$nofile" ]; then
    (ulimit -n "$nofile" && exec "$bin" serve --config "$work/pingpilot.toml") 2>"$log" >&2 &
  else
    "$bin" serve --config "$work/pingpilot.toml" 2>"$log" >&2 &
  fi
  relay_pid=$!
  for _ in $(seq 1 100); do curl -sf "$url/readyz" >/dev/null && return; sleep 0.1; done
  echo "the relay did not start:" >&2; cat "$log" >&2; exit 1
}

key=$("$bin" account create --name hostile --plan unlimited --discord-id 123456789012345678 \
  --config "$work/pingpilot.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["apiKey"])')
auth="Authorization: Bearer $key"
start_relay "$work/setup.log"
curl -sf -X PATCH "$url/api/v1/account" -H "$auth" -H 'Content-Type: application/json' \
  -d '{"channels":{"telegram":false}}' >/dev/null
curl -sf "$url/api/v1/categories" -H "$auth" -H 'Content-Type: application/json' \
  -d '{"name":"load","color":"#FFB02E","emoji":"💰"}' >/dev/null
stop_relay

rows=$work/rows.tsv details=$work/details.txt limits=$work/limits.txt
: >"$rows"; : >"$details"; : >"$limits"
started=$(date +%s)
for entry in $loads; do
  IFS=: read -r load send head_bytes <<<"$entry"
  log="$work/relay-$load-$send-$head_bytes.log"
  start_relay "$log"
  # The ordinary requests every relay has served before an attack: the key, the quota.
  for _ in 1 2 3; do
    curl -sf "$url/healthz" >/dev/null
    curl -sf "$url/api/v1/quota" -H "$auth" >/dev/null
  done
  sleep 1
  args=(--url "$url" --pid "$relay_pid" --connections "$connections"
        --idle-connections "$idle_connections" --key "$key" --load "$load" --tsv --no-header)
  [ "$send" != - ] && args+=(--send "$send")
  [ -n "$head_bytes" ] && args+=(--head-bytes "$head_bytes")
  for i in $(seq 1 "$repeat"); do
    tag=""; [ "$i" -gt 1 ] && tag=" #$i"
    echo "== $load $send$tag" >&2
    python3 bench/hostile_clients.py "${args[@]}" --tag "$tag" >"$work/out.txt"
    grep -v '^\[' "$work/out.txt" >>"$rows" || true
    grep '^\[' "$work/out.txt" >>"$details" || true
  done
  kill -0 "$relay_pid" 2>/dev/null || { echo "the relay died during $load $send:" >&2; tail "$log" >&2; exit 1; }
  label=$load
  [ "$load" = head ] && label="head $(( ${head_bytes:-15360} / 1024 )) KiB"
  [ "$send" != - ] && label="$label ($send)"
  {
    echo "[$label] relay log: $(grep -o 'open_files=[0-9]*' "$log" | head -1), $(grep -o 'accepting connections max_connections=[0-9]*' "$log" | head -1 | sed 's/accepting connections //');" \
      "'connection limit reached' warnings: $(grep -c 'connection limit reached' "$log" || true)," \
      "'cannot accept' errors: $(grep -c 'cannot accept connections' "$log" || true)"
  } >>"$details"
  stop_relay
done
took=$(($(date +%s) - started))

mkdir -p bench/results
result=bench/results/hostile-clients.txt
header=$(python3 - <<'PY'
import sys
sys.path.insert(0, "bench")
import hostile_clients
print("\t".join(hostile_clients.HEADER))
PY
)
{
  echo "PingPilot hostile clients — finished $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), Python $(python3 -c 'import platform; print(platform.python_version())')"
  echo "relay: default server limits (header_timeout 10s, body_timeout 30s, idle_timeout 60s, heads 16 KiB, bodies 64 KiB)," \
    "open-file limit: ${nofile:-$(ulimit -Hn) (raised to the hard limit at start)}; a fresh relay per load, runs per load: $repeat; took $took s"
  echo "loads: $connections connections (idle: $idle_connections), bodies: 60 KiB sent of 64 KiB declared; slow = 1 KiB every 100 ms"
  echo
  { echo "$header"; cat "$rows"; } | column -t -s $'\t'
  echo
  cat "$details"
  echo
  echo "RSS before: median over 1 s before the load; RSS peak: sampled every 10 ms; VmHWM: the kernel's peak since" \
    "the load began (reset through /proc/PID/clear_refs); RSS after: once the relay closed the load's connections;" \
    "after traffic: after 20 more GET /healthz; KiB/relay conn: (max(RSS peak, VmHWM) - RSS before) / relay conns peak" \
    "(the sockets the relay held at once beyond its own, sampled every 50 ms)."
} >"$work/result.txt"
if [ -n "$append" ] && [ -f "$result" ]; then
  { echo; echo; cat "$work/result.txt"; } >>"$result"
else
  cp "$work/result.txt" "$result"
fi
cat "$work/result.txt"
