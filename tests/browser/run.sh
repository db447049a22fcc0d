#!/usr/bin/env bash
# Browser tests of the dashboard: builds the debug relay, then runs the node:test files here.
# Each test file starts its own Discord/Telegram stand-in, relay (free port, SQLite in a temp
# dir) and headless Chromium (/usr/bin/chromium), and stops them when done.
# Screenshots: target/browser/screenshots/<page>-<desktop|phone>.png.
# Needs: `npm ci` in this directory, and Debian's chromium.
# UPDATE_README_SCREENSHOTS=1 also copies the overview, category and activity shots to docs/screenshots/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

[ -x /usr/bin/chromium ] || { echo "browser tests: /usr/bin/chromium is missing (apt-get install chromium)" >&2; exit 1; }
[ -d "$here/node_modules/playwright-core" ] || { echo "browser tests: run 'npm ci' in tests/browser first" >&2; exit 1; }

cargo build --quiet --bin pingpilot

screenshots="$root/target/browser/screenshots"
rm -rf "$screenshots"
mkdir -p "$screenshots"

# `timeout` leads a process group of its own, so a timeout or Ctrl-C also stops the relays it
# started (Playwright stops its browsers itself).
set +e
timeout --kill-after=10s "${BROWSER_TEST_TIMEOUT:-240s}" \
  node --test --test-reporter=spec --test-concurrency=1 --test-timeout=120000 "$here"/*.test.js &
runner=$!
trap 'kill -TERM -- "-$runner" 2>/dev/null; wait "$runner"' INT TERM
wait "$runner"
status=$?
set -e
trap - INT TERM
# Anything of the test run still alive (it should all be gone) goes now.
pkill -KILL -g "$runner" 2>/dev/null || true

if [ "$status" -ne 0 ]; then
  echo "browser tests failed (exit $status); screenshots so far in $screenshots" >&2
  exit "$status"
fi

if [ "${UPDATE_README_SCREENSHOTS:-0}" = 1 ]; then
  mkdir -p "$root/docs/screenshots"
  cp "$screenshots/overview-desktop.png" "$root/docs/screenshots/overview.png"
  cp "$screenshots/category-desktop.png" "$root/docs/screenshots/category.png"
  cp "$screenshots/activity-desktop.png" "$root/docs/screenshots/activity.png"
  echo "README screenshots updated in docs/screenshots/"
fi
echo "browser tests passed; screenshots in $screenshots"
