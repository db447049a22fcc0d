#!/usr/bin/env bash
# How fast the dashboard's pages answer with many events, on this machine, all on loopback.
#
#   bench/dashboard.sh [--events 10000] [--runs 20] [--fail-every K]
#                                                       (KEEP=1 keeps the database to look into)
#
# Builds the release binary, starts one relay on a fresh SQLite file (Discord pointed at a port
# nobody answers, so every delivery fails: the pages' worst case; with --fail-every K, at a
# stand-in Discord that delivers and refuses one message in K, as users' data has it), creates an
# account on the unlimited plan and a `sale` category, sends --events events through the API
# (with a few fields each, one in ten to a `bug` category), waits until their deliveries have
# failed (nobody answers where Discord should be) and for the activity record, signs
# in through a one-time link, then asks each page --runs times and prints the median and the
# slowest time of each, in milliseconds (curl's time to the last byte).
set -euo pipefail
cd "$(dirname "$0")/.."

events=10000 runs=20 fail_every=1
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --fail-every) fail_every=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cargo build --release -q --bin pingpilot
bin=target/release/pingpilot
work=$(mktemp -d)
relay_pid= discord_pid=
cleanup() {
  [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
  [ -n "$discord_pid" ] && kill "$discord_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "database kept in $work/bench.db" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

port=18290
base="http://127.0.0.1:$port"
discord_base=http://127.0.0.1:9
if [ "$fail_every" -gt 1 ]; then
  discord_port=18291
  discord_base="http://127.0.0.1:$discord_port"
  # Opens DM channels and takes messages, refusing one in K as Discord refuses a user who
  # shares no server with the bot (403, code 50007).
  python3 - "$discord_port" "$fail_every" <<'PY' &
import http.server, itertools, json, sys
port, every = int(sys.argv[1]), int(sys.argv[2])
messages = itertools.count(1)
class Discord(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body = 200, {"id": "900"}
        if self.path.endswith("/messages") and next(messages) % every == 0:
            status, body = 403, {"code": 50007, "message": "Cannot send messages to this user"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Discord).serve_forever()
PY
  discord_pid=$!
fi
cat > "$work/pingpilot.toml" <<TOML
[server]
bind = "127.0.0.1:$port"

[database]
url = "sqlite://$work/bench.db"

[delivery]
max_attempts = 1

[providers.discord]
bot_token = "bench-token"
api_base = "$discord_base"
requests_per_second = 100000
TOML

created=$("$bin" account create --name bench --plan unlimited --discord-id 100000000000000001 \
  --config "$work/pingpilot.toml")
key=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["apiKey"])')
account=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accountId"])')
PINGPILOT_LOG=warn "$bin" serve --config "$work/pingpilot.toml" 2>"$work/relay.log" &
relay_pid=$!
for _ in $(seq 1 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done

# Events through the API on one kept-alive connection.
python3 - "$base" "$key" "$events" <<'PY'
import http.client, json, sys, urllib.parse
base, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(url.hostname, url.port)
def call(method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status
assert call("PATCH", "/api/v1/account", {"channels": {"telegram": False}}) == 200
for name in ("sale", "bug"):
    assert call("POST", "/api/v1/categories", {"name": name, "color": "#FF0000"}) == 201
for n in range(count):
    category = "bug" if n % 10 == 0 else "sale"
    body = {"category": category, "description": f"Event {n}: a purchase from customer {n % 97}",
            "fields": {"amount": n % 500, "plan": ["free", "pro", "team"][n % 3],
                       "region": ["eu", "us", "ap"][n % 3], "order": f"ord_{n}"}}
    status = call("POST", "/api/v1/event", body)
    assert status == 200, status
PY
# Until every delivery is final, so that the pages are timed on a quiet relay.
for _ in $(seq 1 600); do
  pending=$(curl -sf "$base/api/v1/events?status=PENDING&limit=1" -H "Authorization: Bearer $key" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["events"]))')
  [ "$pending" = 0 ] && break
  sleep 1
done
sleep 2

link=$("$bin" account login-link --account "$account" --config "$work/pingpilot.toml")
link=${link/http:\/\/0.0.0.0:8080/$base}
link=${link/http:\/\/127.0.0.1:8080/$base}
# The link asks before it is used (a prefetch must not use it up): its page, then its form.
csrf=$(curl -s -c "$work/cookies" "$link" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p')
curl -s -o /dev/null -b "$work/cookies" -c "$work/cookies" --data-urlencode "csrf=$csrf" "$link"

event_id=$(curl -sf "$base/api/v1/events?limit=1" -H "Authorization: Bearer $key" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["events"][0]["id"])')
pages=(
  /dashboard
  /dashboard/categories/sale
  "/dashboard/categories/sale?range=month"
  "/dashboard/events/$event_id"
  /dashboard/events
  "/dashboard/events?q=customer%2042"
  "/dashboard/events?status=failed&channel=discord"
  /dashboard/activity
  /dashboard/usage
)
printf '%-50s %10s %10s\n' page 'median ms' 'max ms'
for page in "${pages[@]}"; do
  status=$(curl -s -o /dev/null -w '%{http_code}' -b "$work/cookies" "$base$page")
  [ "$status" = 200 ] || { echo "$page answered $status" >&2; exit 1; }
  times=()
  for _ in $(seq 1 "$runs"); do
    times+=("$(curl -s -o /dev/null -w '%{time_total}' -b "$work/cookies" "$base$page")")
  done
  printf '%s\n' "${times[@]}" | python3 -c '
import statistics, sys
page = sys.argv[1]
times = [float(line) * 1000 for line in sys.stdin]
print(f"{page:<50} {statistics.median(times):10.1f} {max(times):10.1f}")' "$page"
done
