#!/usr/bin/env bash
# The OpenAPI document as a product, checked end to end (CI runs this from .ci/run):
#
#   1. the committed openapi/openapi.json and .yaml are what `pingpilot openapi` prints and what
#      a running relay serves, and both pass openapi-spec-validator;
#   2. a Python client (openapi-python-client) and a TypeScript client (openapi-typescript +
#      openapi-fetch) are generated from the document, built, and each creates a category and
#      sends an event that a stand-in Discord receives, against a live relay; the Python one also
#      routes categories to the webhook (verified with standardwebhooks) and to e-mail (read
#      back from aiosmtpd);
#   3. schemathesis fuzzes the live relay through every operation with a valid key: no 5xx and
#      no answer that contradicts the document (all checks).
#
# Tools are pinned (openapi/requirements.txt, openapi/clients/typescript/package-lock.json) and
# installed under target/openapi-tools/ (or $PINGPILOT_OPENAPI_TOOLS), as is everything generated;
# nothing lands in the repository. Needs python3 (3.11+) with venv, node 20+ with npm, cargo.
#
#   openapi/check.sh                 everything
#   FUZZ_SEED=random openapi/check.sh   fuzz with a fresh seed (CI uses a fixed one)
#   FUZZ_EXAMPLES=200 openapi/check.sh  fuzz harder (CI: 25 per operation)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tools=${PINGPILOT_OPENAPI_TOOLS:-$root/target/openapi-tools}
fuzz_seed=${FUZZ_SEED:-20260131}
fuzz_examples=${FUZZ_EXAMPLES:-25}
started=$SECONDS

step() { echo "== openapi: $* ($((SECONDS - started))s)"; }

# --- tools -------------------------------------------------------------------------------------
step "tools"
mkdir -p "$tools"
venv=$tools/venv
stamp=$(sha256sum openapi/requirements.txt | cut -c1-16)
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r openapi/requirements.txt
  echo "$stamp" > "$venv/.stamp"
fi
node_dir=$tools/ts
stamp=$(cat openapi/clients/typescript/package.json openapi/clients/typescript/package-lock.json | sha256sum | cut -c1-16)
if [ "$(cat "$node_dir/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp openapi/clients/typescript/package.json openapi/clients/typescript/package-lock.json "$node_dir/"
  npm ci --prefix "$node_dir" --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "$stamp" > "$node_dir/.stamp"
fi
export PATH="$venv/bin:$node_dir/node_modules/.bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ next to openapi/fuzz_hooks.py

cargo build -q --bin pingpilot --example standin
bin=$root/target/debug/pingpilot
standin_bin=$root/target/debug/examples/standin

# --- the committed document --------------------------------------------------------------------
step "committed document"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
regenerate="regenerate it with: cargo run -q -- openapi > openapi/openapi.json && cargo run -q -- openapi --format yaml > openapi/openapi.yaml"
"$bin" openapi > "$work/openapi.json"
"$bin" openapi --format yaml > "$work/openapi.yaml"
cmp -s "$work/openapi.json" openapi/openapi.json || { echo "openapi/openapi.json is out of date; $regenerate" >&2; exit 1; }
cmp -s "$work/openapi.yaml" openapi/openapi.yaml || { echo "openapi/openapi.yaml is out of date; $regenerate" >&2; exit 1; }
openapi-spec-validator openapi/openapi.json openapi/openapi.yaml

# --- a live relay with a stand-in Discord ------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
standin_port=$(free_port)
relay_port=$(free_port)
smtp_port=$(free_port)
standin="http://127.0.0.1:$standin_port"
relay="http://127.0.0.1:$relay_port"
config=$work/pingpilot.toml
cat > "$config" <<TOML
[database]
url = "sqlite://$work/pingpilot.db"

[delivery]
backoff_initial = "50ms"
poll_interval = "100ms"

[providers.discord]
bot_token = "stand-in"
api_base = "$standin"

# The Python client's check receives a webhook delivery on 127.0.0.1.
[providers.webhook]
allow_private_targets = true

# ... and runs an SMTP server (aiosmtpd) on this port.
[providers.email]
smtp_url = "smtp://127.0.0.1:$smtp_port"
from = "PingPilot <alerts@example.test>"
TOML
# Prints "<accountId> <apiKey>".
account() {
  "$bin" account create --name "$1" --plan unlimited --discord-id 123456789012345678 --config "$config" |
    python3 -c 'import json, sys; a = json.load(sys.stdin); print(a["accountId"], a["apiKey"])'
}
read -r _ python_key <<< "$(account "Python client")"
read -r _ typescript_key <<< "$(account "TypeScript client")"
read -r fuzz_account fuzz_key <<< "$(account "schemathesis")"

"$standin_bin" "127.0.0.1:$standin_port" > "$work/standin.log" 2>&1 &
pids+=($!)
PINGPILOT_SERVER__BIND="127.0.0.1:$relay_port" PINGPILOT_LOG=warn \
  "$bin" serve --config "$config" > "$work/relay.log" 2>&1 &
pids+=($!)
relay_failed() { echo "relay log:" >&2; tail -n 50 "$work/relay.log" >&2; exit 1; }
for _ in $(seq 1 100); do
  curl -fs "$relay/readyz" > /dev/null && curl -fs "$standin/count" > /dev/null && break
  sleep 0.1
done
curl -fs "$relay/readyz" > /dev/null || relay_failed
curl -fs "$relay/api/v1/openapi.json" | cmp -s - openapi/openapi.json ||
  { echo "the relay serves another document than openapi/openapi.json" >&2; exit 1; }
curl -fs "$relay/docs" -o "$work/docs.html" && grep -q SwaggerUIBundle "$work/docs.html" ||
  { echo "/docs is not Swagger UI" >&2; exit 1; }

# --- generated clients -------------------------------------------------------------------------
step "python client"
build=$tools/build
rm -rf "$build"
mkdir -p "$build"
openapi-python-client generate --path openapi/openapi.json --config openapi/clients/python/config.yaml \
  --meta none --output-path "$build/python/pingpilot_client" --fail-on-warning
python3 -m compileall -q "$build/python/pingpilot_client"
PYTHONPATH="$build/python" PINGPILOT_URL=$relay PINGPILOT_KEY=$python_key STANDIN_URL=$standin SMTP_PORT=$smtp_port \
  "$venv/bin/python" openapi/clients/python/test_client.py || relay_failed

step "typescript client"
ts_build=$node_dir/build # inside $node_dir, so node finds openapi-fetch in its node_modules
rm -rf "$ts_build"
mkdir -p "$ts_build"
openapi-typescript openapi/openapi.json --output "$ts_build/pingpilot.ts"
cp openapi/clients/typescript/test_client.ts openapi/clients/typescript/tsconfig.json "$ts_build/"
tsc -p "$ts_build/tsconfig.json"
PINGPILOT_URL=$relay PINGPILOT_KEY=$typescript_key STANDIN_URL=$standin \
  node "$ts_build/dist/test_client.js" || relay_failed

# --- fuzzing -----------------------------------------------------------------------------------
step "schemathesis"
# The fuzzing account starts like a user's: Discord only, and the category of the documented
# example, so example events are accepted and their ids lead to the event operations.
curl -fs -X PATCH "$relay/api/v1/account" -H "Authorization: Bearer $fuzz_key" \
  -H 'Content-Type: application/json' -d '{"channels": {"telegram": false}}' > /dev/null
curl -fs "$relay/api/v1/categories" -H "Authorization: Bearer $fuzz_key" \
  -H 'Content-Type: application/json' -d '{"name": "sale", "color": "#FFB02E", "emoji": "💰"}' > /dev/null
seed_args=(--seed "$fuzz_seed")
[ "$fuzz_seed" = random ] && seed_args=()
# The key goes in through openapi/fuzz_hooks.py, which renews it when fuzzing revokes it (and
# teaches schemathesis the one rule OpenAPI 3.0 cannot state; see there).
# It runs in $tools/schemathesis, where it keeps its cache of failures to replay first.
# `--checks all` limits answers to 10 s; intake's documented `?wait=` holds one up to 30 s.
# One worker: with two threads, CPython 3.11.7's parser sometimes fails inside hypothesis
# ("AST constructor recursion depth mismatch"), and two workers drawing the same seed race on
# the same category names (one deletes what the other just created: ST302).
mkdir -p "$tools/schemathesis"
cd "$tools/schemathesis"
PYTHONPATH="$root/openapi" SCHEMATHESIS_HOOKS=fuzz_hooks \
  PINGPILOT_URL=$relay PINGPILOT_FUZZ_ACCOUNT=$fuzz_account PINGPILOT_FUZZ_KEY=$fuzz_key \
  PINGPILOT_BIN=$bin PINGPILOT_CONFIG=$config \
  timeout 900 st --no-color run "$relay/api/v1/openapi.json" \
  --checks all \
  --max-examples "$fuzz_examples" \
  "${seed_args[@]}" \
  --workers 1 \
  --request-timeout 40 \
  --max-response-time 35 \
  --generation-database none \
  --report junit --report-dir "$tools/schemathesis/reports" ||
  { echo "schemathesis found answers that contradict openapi/openapi.json (or 5xx)" >&2; relay_failed; }
cd "$root"
kill -0 "${pids[1]}" 2>/dev/null || { echo "the relay died during fuzzing" >&2; relay_failed; }
step "done"
