#!/usr/bin/env bash
# Browser tests of the /track, /ops, /admin and /pharmacy pages against a real medify binary.
#
#   tests/browser/run.sh <path-to-medify-binary>
#
# Installs Debian's chromium (apt-get) if /usr/bin/chromium is missing and the node
# dependencies (npm ci) if node_modules is; starts the server on a free loopback port with
# a fresh SQLite file; waits for /readyz; runs the tests; always stops the server.
# Screenshots (and the server log) go to ${CARGO_TARGET_DIR:-target}/browser/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${1:?usage: tests/browser/run.sh <path-to-medify-binary>}"
[[ -x "$bin" ]] || { echo "not an executable: $bin" >&2; exit 2; }
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

chromium=/usr/bin/chromium
if [[ ! -x "$chromium" ]]; then
  echo "installing chromium (apt-get)..."
  sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

out="${CARGO_TARGET_DIR:-target}"
[[ "$out" == /* ]] || out="$repo/$out"
shots="$out/browser"
mkdir -p "$shots"
rm -f "$shots"/*.png

work="$(mktemp -d)"
log="$shots/server.log"
server=""
cleanup() {
  if [[ -n "$server" ]] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

admin_email="admin-$RANDOM@medify.test"
jwt_secret="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
admin_password="browser-tests-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

# Port 0: the kernel picks a free port; the server logs the address it bound.
MEDIFY_ENV=test \
MEDIFY_BIND=127.0.0.1:0 \
DATABASE_URL="sqlite://$work/medify.db?mode=rwc" \
JWT_SECRET="$jwt_secret" \
OBJECT_STORE="file:$work/objects" \
MEDIFY_ADMIN_EMAIL="$admin_email" \
MEDIFY_ADMIN_PASSWORD="$admin_password" \
OTP_DELIVERY=response \
RATE_LIMIT_AUTH_PER_IP=10000 \
RATE_LIMIT_AUTH_PER_ACCOUNT=10000 \
MAX_OPEN_ORDERS_PER_CUSTOMER=1000 \
RATE_LIMIT_ORDERS_PER_MINUTE=10000 \
MAP_TILE_URL='http://127.0.0.1:9/{z}/{x}/{y}.png' \
LOG_FORMAT=json \
RUST_LOG=info \
  "$bin" >"$log" 2>&1 &
server=$!

# Bounded wait: the bound address in the log, then /readyz answering 200.
url="$(node - "$log" "$server" <<'JS'
const { readFileSync } = require("node:fs");
const [log, pid] = process.argv.slice(2);
const deadline = Date.now() + 60_000;
const alive = () => { try { process.kill(Number(pid), 0); return true; } catch { return false; } };
(async () => {
  while (Date.now() < deadline) {
    if (!alive()) break;
    const m = readFileSync(log, "utf8").match(/"address":"(127\.0\.0\.1:\d+)"/);
    if (m) {
      try {
        const res = await fetch(`http://${m[1]}/readyz`);
        if (res.status === 200) { console.log(`http://${m[1]}`); return; }
      } catch {}
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  process.exit(1);
})();
JS
)" || { echo "the server did not become ready; its log:" >&2; tail -n 50 "$log" >&2; exit 1; }
echo "medify at $url (log: $log)"

status=0
(
  cd "$here"
  MEDIFY_URL="$url" MEDIFY_ADMIN_EMAIL="$admin_email" MEDIFY_ADMIN_PASSWORD="$admin_password" \
  SCREENSHOT_DIR="$shots" CHROMIUM="$chromium" JWT_SECRET="$jwt_secret" \
    node --experimental-websocket --test --test-concurrency=1 --test-reporter=spec \
      track.test.mjs ops.test.mjs admin.test.mjs pharmacy.test.mjs
) || status=$?

echo "screenshots: $shots"
ls "$shots"/*.png 2>/dev/null || true
if [[ $status -ne 0 ]]; then
  echo "browser tests failed (server log: $log)" >&2
fi
exit "$status"
