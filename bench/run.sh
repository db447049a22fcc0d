#!/usr/bin/env bash
# Benchmark event intake and end-to-end delivery on this machine, all on loopback.
#
#   bench/run.sh [--backend sqlite|postgres] [--processes N] [--duration 10s] [--connections 64] [--profile perf.data]
#                [--log LEVELS] [--log-format text|json]
#
# Builds the release binary and a provider stand-in that answers at once (examples/standin.rs),
# starts N relays on one database with Discord pointed at the stand-in (rate limit lifted),
# creates an account on an unlimited plan, warms up, then loads POST /api/v1/event with wrk and
# prints accepted events/s, p50/p99 latency, non-2xx answers, end-to-end events/s (first request
# until the stand-in has every accepted event), deliveries per second during the load and the
# relays' peak RSS. In the same run, after the warm-up, the same load (wrk threads, connections,
# duration and Lua script) goes to nginx answering a static {"message":"ok"}: the summary gives
# its answers/s and the ratio relay / nginx. Results are written to
# bench/results/<backend>-<N>p.txt. The relays log at --log (PINGPILOT_LOG; default warn: only
# what needs attention; the server's own default, info, adds a line per request) in --log-format.
# Needs wrk and nginx (apt-get install wrk nginx-light);
# PostgreSQL runs use $PINGPILOT_BENCH_POSTGRES_URL (default
# postgres://postgres@127.0.0.1:5432/test) and a fresh database on that server.
set -euo pipefail
cd "$(dirname "$0")/.."

backend=sqlite processes=1 duration=10s connections=64 profile= log=warn log_format=text
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend=$2; shift 2 ;;
    --processes) processes=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --log-format) log_format=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
# /usr/sbin is not on every user's PATH.
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "nginx is missing: apt-get install nginx-light" >&2; exit 1; }

cargo build --release -q --bin pingpilot --example standin
bin=target/release/pingpilot
work=$(mktemp -d)
pids=() nginx_pid=
cleanup() {
  for pid in "${pids[@]}" $nginx_pid; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$backend" = postgres ]; then
    psql "$pg_server" -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

standin_port=19900
target/release/examples/standin "127.0.0.1:$standin_port" & pids+=($!)

case "$backend" in
  sqlite) database_url="sqlite://$work/bench.db" ;;
  postgres)
    pg_server=${PINGPILOT_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
    pg_db="pp_bench_$$"
    psql "$pg_server" -qc "CREATE DATABASE $pg_db"
    database_url="${pg_server%/*}/$pg_db" ;;
  *) echo "backend must be sqlite or postgres" >&2; exit 2 ;;
esac

cat > "$work/pingpilot.toml" <<TOML
[database]
url = "$database_url"

[delivery]
concurrency = 64

[providers.discord]
bot_token = "bench-token"
api_base = "http://127.0.0.1:$standin_port"
requests_per_second = 1000000
TOML

key=$("$bin" account create --name bench --plan unlimited --discord-id 100000000000000001 \
  --config "$work/pingpilot.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["apiKey"])')

urls=()
for i in $(seq 1 "$processes"); do
  port=$((18180 + i))
  PINGPILOT_SERVER__BIND="127.0.0.1:$port" PINGPILOT_LOG="$log" PINGPILOT_LOG__FORMAT="$log_format" \
    "$bin" serve --config "$work/pingpilot.toml" 2>"$work/relay-$i.log" & pids+=($!)
  urls+=("http://127.0.0.1:$port")
done
relay_pids=("${pids[@]:1}")
for url in "${urls[@]}"; do
  for _ in $(seq 1 100); do curl -sf "$url/readyz" >/dev/null && break; sleep 0.1; done
done
auth="Authorization: Bearer $key"
curl -sf -X PATCH "${urls[0]}/api/v1/account" -H "$auth" -H 'Content-Type: application/json' \
  -d '{"channels":{"telegram":false}}' >/dev/null
curl -sf "${urls[0]}/api/v1/categories" -H "$auth" -H 'Content-Type: application/json' \
  -d '{"name":"sale","color":"#FFB02E","emoji":"💰"}' >/dev/null

cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"category":"sale","description":"New purchase completed","fields":{"plan":"pro","amount":99.99,"recurring":true}}'
LUA

# Load every relay at once, splitting the connections among them.
load() {
  local length=$1 per=$((connections / processes)) i=0 loaders=()
  for url in "${urls[@]}"; do
    i=$((i + 1))
    wrk -t2 -c"$per" -d"$length" --latency -s "$work/post.lua" "$url/api/v1/event" > "$work/wrk-$i.txt" &
    loaders+=($!)
  done
  wait "${loaders[@]}"
}

delivered() { curl -sf "http://127.0.0.1:$standin_port/count"; }
accepted_total() { curl -sf "${urls[0]}/api/v1/quota" -H "$auth" | python3 -c 'import json,sys; print(json.load(sys.stdin)["eventsUsed"])'; }

load 3s # warm-up
for _ in $(seq 1 600); do [ "$(delivered)" -ge "$(accepted_total)" ] && break; sleep 0.1; done

# The reference: nginx answering a static body on this machine, under the same load (one wrk with
# all the connections), while the relays idle. Runs as the current user: everything it writes is
# in $work (as root its workers run as nobody, which needs none of it for this small body).
nginx_port=18170
cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx-body;
  proxy_temp_path $work/nginx-proxy;
  fastcgi_temp_path $work/nginx-fastcgi;
  uwsgi_temp_path $work/nginx-uwsgi;
  scgi_temp_path $work/nginx-scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    default_type application/json;
    location / { return 200 '{"message":"ok"}'; }
  }
}
NGINX
"$nginx" -p "$work" -c "$work/nginx.conf" -e "$work/nginx-error.log" & nginx_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$nginx_port/" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$nginx_port/" >/dev/null ||
  { echo "nginx did not start:" >&2; cat "$work/nginx-error.log" >&2; exit 1; }
wrk -t2 -c"$connections" -d"$duration" --latency -s "$work/post.lua" \
  "http://127.0.0.1:$nginx_port/api/v1/event" > "$work/wrk-nginx.txt"
kill "$nginx_pid"
wait "$nginx_pid" 2>/dev/null || true
nginx_pid=

before_accepted=$(accepted_total)
start=$(date +%s.%N)
if [ -n "$profile" ]; then
  # Samples the first relay's stacks while it is under load (perf from Debian's linux-perf).
  perf record -q -F 499 --call-graph dwarf,16384 -o "$profile" -p "${relay_pids[0]}" -- sleep "${duration%s}" &
  profiler=$!
fi
delivered_before=$(delivered)
load "$duration"
delivered_during=$(($(delivered) - delivered_before))
load_end=$(date +%s.%N)
[ -n "$profile" ] && wait "$profiler"
after_accepted=$(accepted_total)
for _ in $(seq 1 1200); do [ "$(delivered)" -ge "$after_accepted" ] && break; sleep 0.05; done
end=$(date +%s.%N)

summary=$(python3 - "$work" "$processes" "$before_accepted" "$after_accepted" "$start" "$end" "$load_end" "$delivered_during" <<'PY'
import re, sys
work, processes, before, after, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
load_end, delivered_during = float(sys.argv[7]), int(sys.argv[8])
def millis(text):
    match = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not match:
        sys.exit(f"cannot read wrk's latency {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
rps = non2xx = 0
p50 = p99 = 0.0
for i in range(1, processes + 1):
    out = open(f"{work}/wrk-{i}.txt").read()
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    non2xx += int(m.group(1)) if m else 0
    # Anchored: a "+/- Stdev" column can also end in "50%".
    p50 = max(p50, millis(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)))
    p99 = max(p99, millis(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)))
accepted = after - before
print(f"accepted events/s: {rps:.0f}")
print(f"latency p50: {p50:.2f} ms, p99: {p99:.2f} ms (worst relay)")
print(f"non-2xx answers: {non2xx}")
print(f"events accepted in the run: {accepted}")
print(f"end-to-end events/s: {accepted / (end - start):.0f} (first request until the stand-in had them all)")
print(f"delivered during the load: {delivered_during / (load_end - start):.0f}/s (the rest after it)")
nginx = open(f"{work}/wrk-nginx.txt").read()
nginx_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", nginx).group(1))
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", nginx)
print(f"nginx static answers/s: {nginx_rps:.0f}" + (f" ({m.group(1)} non-2xx)" if m else ""))
print(f"relay / nginx: {rps / nginx_rps:.2f}")
PY
)
rss=0
for pid in "${relay_pids[@]}"; do
  kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  [ "${kb:-0}" -gt "$rss" ] && rss=$kb
done

mkdir -p bench/results
result="bench/results/$backend-${processes}p.txt"
{
  echo "PingPilot intake benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "backend: $backend, relay processes: $processes, wrk: $connections connections, $duration, log: $log ($log_format)"
  echo "$summary"
  echo "peak RSS per relay: $((rss / 1024)) MB"
} | tee "$result"
