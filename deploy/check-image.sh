#!/usr/bin/env bash
# Builds the container image and checks it end to end: the relay starts as uid 10001 with its
# database in the /data volume, the image's health check passes, an account, a category and an
# event go through, SIGTERM stops it with exit code 0, and a new container on the same volume
# still has the event.
#
#   deploy/check-image.sh                  # podman when installed, else docker
#   ENGINE=docker deploy/check-image.sh
#   SKIP_BUILD=1 IMAGE=localhost/pingpilot:latest deploy/check-image.sh
#
# Needs curl. Uses host port $PORT (18080) on 127.0.0.1 and removes its container and volume.
set -euo pipefail
cd "$(dirname "$0")/.."

engine=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
image=${IMAGE:-localhost/pingpilot:check}
port=${PORT:-18080}
name=pingpilot-check-$$
volume=$name-data
base=http://127.0.0.1:$port
started=$SECONDS

step() { echo "== check-image: $* ($((SECONDS - started))s)"; }
fail() {
  echo "check-image: FAIL: $*" >&2
  "$engine" logs --tail 30 "$name" >&2 2>&1 || true
  exit 1
}
cleanup() {
  "$engine" rm -f "$name" >/dev/null 2>&1 || true
  "$engine" volume rm -f "$volume" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if [ -z "${SKIP_BUILD:-}" ]; then
  step "build $image with $engine"
  format=()
  # podman's default OCI format drops HEALTHCHECK; docker's keeps it.
  [ "$engine" = podman ] && format=(--format docker)
  timeout "${BUILD_TIMEOUT:-3600}" "$engine" build "${format[@]}" -t "$image" .
fi
size=$("$engine" image inspect --format '{{.Size}}' "$image")
step "image size $((size / 1000000)) MB"

run() {
  # A short health interval so docker marks it healthy quickly; the test is the image's own.
  "$engine" run -d --name "$name" -p "127.0.0.1:$port:8080" -v "$volume:/data" \
    --health-interval 2s "$image" >/dev/null
}

wait_ready() {
  local deadline=$((SECONDS + 60))
  until curl -fsS -m 2 "$base/readyz" >/dev/null 2>&1; do
    [ "$("$engine" inspect --format '{{.State.Running}}' "$name")" = true ] || fail "the relay exited"
    [ $SECONDS -lt $deadline ] || fail "/readyz not 200 within 60 s"
    sleep 1
  done
}

json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

step "start"
run
wait_ready
[ "$("$engine" exec "$name" id -u)" = 10001 ] || fail "the relay does not run as uid 10001"
"$engine" exec "$name" test -s /data/pingpilot.db || fail "no /data/pingpilot.db"

step "health check"
if [ "$engine" = podman ]; then
  # Runs the image's HEALTHCHECK command now (podman schedules it with systemd timers, if any).
  podman healthcheck run "$name" || fail "podman healthcheck run: unhealthy"
else
  deadline=$((SECONDS + 60))
  until [ "$(docker inspect --format '{{.State.Health.Status}}' "$name")" = healthy ]; do
    [ $SECONDS -lt $deadline ] || fail "not healthy within 60 s"
    sleep 1
  done
fi

step "account, category, event"
account=$("$engine" exec "$name" pingpilot account create --name demo \
  --discord-id 123456789012345678 --telegram-username demo_user)
key=$(json_field apiKey <<<"$account")
[ -n "$key" ] || fail "account create printed no apiKey: $account"
auth=(-H "Authorization: Bearer $key" -H 'Content-Type: application/json')
curl -fsS -m 5 "${auth[@]}" "$base/api/v1/categories" \
  -d '{"name":"check","color":"#FFB02E"}' >/dev/null || fail "POST /api/v1/categories"
answer=$(curl -fsS -m 5 "${auth[@]}" "$base/api/v1/event" \
  -d '{"category":"check","description":"check-image","fields":{"n":1}}') || fail "POST /api/v1/event"
event=$(json_field eventId <<<"$answer")
[ -n "$event" ] || fail "no eventId in $answer"

step "stop with SIGTERM"
"$engine" stop -t 30 "$name" >/dev/null
code=$("$engine" inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || fail "exit code $code after SIGTERM"
"$engine" logs "$name" 2>&1 | grep -qE ' stopped$|"message":"stopped"' || fail "the log does not say it stopped"

step "a new container on the same volume"
"$engine" rm "$name" >/dev/null
run
wait_ready
curl -fsS -m 5 "${auth[@]}" "$base/api/v1/events/$event" | grep -q "\"id\":\"$event\"" \
  || fail "event $event is gone after the restart"
"$engine" stop -t 30 "$name" >/dev/null

step "OK"
