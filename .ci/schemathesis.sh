#!/usr/bin/env bash
# Schemathesis against a real medify binary: the OpenAPI document the server serves at
# /api/v1/openapi.json is the contract, and every answer the fuzzer gets must match it.
#
#   .ci/schemathesis.sh <path-to-medify-binary>
#
# Installs schemathesis from PyPI into a venv under the build cache when it is missing
# (SCHEMATHESIS_VERSION pins it; default below), starts the server on a free loopback port
# with a fresh SQLite file, waits for /readyz, logs in as the admin, and runs
# `schemathesis run` with the admin's bearer token. Exits non-zero when the server does not
# come up, when schemathesis cannot run, or on any failed check. The server is always
# stopped. Output (report, server log): ${CARGO_TARGET_DIR:-target}/schemathesis/.
#
# Two passes: every operation with the admin's token, then the order operations with a
# customer's, after seeding a stocked pharmacy whose ids .ci/schemathesis_hooks.py puts
# into generated orders (an admin may not place orders). The checks: no 5xx, every status
# documented, content type and body as documented, invalid data rejected.
#
# Knobs (environment): SCHEMATHESIS_MAX_EXAMPLES (default 30 per operation),
# SCHEMATHESIS_SEED (default: random; the run prints the one it used),
# SCHEMATHESIS_VERSION (default 4.32.5).
set -euo pipefail

usage() { echo "usage: $0 <path-to-medify-binary>" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
server_bin="$1"
[[ -x "$server_bin" && ! -d "$server_bin" ]] || { echo "schemathesis.sh: not an executable: $server_bin" >&2; exit 2; }
server_bin="$(cd "$(dirname "$server_bin")" && pwd)/$(basename "$server_bin")"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
out="$target/schemathesis"
mkdir -p "$out"

max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-30}"
st_version="${SCHEMATHESIS_VERSION:-4.32.5}"
started=$SECONDS

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }

# --- schemathesis ------------------------------------------------------------------------
# A venv keeps it out of the system Python (PEP 668); it is reused while its version is
# the one wanted.
venv="$out/venv"
st="$venv/bin/schemathesis"
if [[ ! -x "$st" ]] || [[ "$("$st" --version 2>/dev/null)" != *" $st_version" ]]; then
  log "installing schemathesis==$st_version from PyPI into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$st_version"
fi
"$st" --version >&2

# --- server ------------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/medify-schemathesis.XXXXXX")"
server_log="$out/server.log"
admin_email="schemathesis-admin@example.com"
admin_password="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
jwt_secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
server_env=(
  MAP_TILE_URL='http://127.0.0.1:9/{z}/{x}/{y}.png'
  RUST_LOG="${SCHEMATHESIS_SERVER_LOG:-warn}"
)
# shellcheck source=/dev/null
source "$repo/.ci/lib/server.sh"
serve

# --- accounts and seed data ---------------------------------------------------------------
# api METHOD PATH TOKEN BODY: the answer's body; fails on anything but 2xx.
api() {
  curl -fsS --max-time 10 -X "$1" -H 'Content-Type: application/json' \
    ${3:+-H "Authorization: Bearer $3"} -d "$4" "$base_url$2"
}
# field NAME: that field of the JSON document on stdin.
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
# credentials EMAIL PASSWORD: a login body.
credentials() {
  python3 -c 'import json, sys; print(json.dumps({"email": sys.argv[1], "password": sys.argv[2]}))' "$1" "$2"
}

admin_token="$(api POST /api/v1/auth/login "" "$(credentials "$admin_email" "$admin_password")" |
  field access_token)" || { log "admin login failed"; exit 1; }

# --- schemathesis run --------------------------------------------------------------------
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection
seed_args=()
[[ -n "${SCHEMATHESIS_SEED:-}" ]] && seed_args=(--seed "$SCHEMATHESIS_SEED")

# Seeded ids for orders, and one narrow exception (a page or per_page above its maximum,
# clamped by the server); see the file for why.
export SCHEMATHESIS_HOOKS="$repo/.ci/schemathesis_hooks.py"

# run_pass NAME TOKEN [schemathesis flags...]: one `schemathesis run`; returns its status.
run_pass() {
  local name="$1" bearer="$2"
  shift 2
  log "schemathesis run ($name): checks $checks, $max_examples examples per operation"
  mkdir -p "$out/$name"
  local pass_rc=0
  # schemathesis stops by itself (a bounded number of examples per operation); `timeout`
  # is a backstop. One worker: with two, hypothesis's lambda descriptions call ast.parse
  # from two threads at once, which CPython 3.11 answers with "SystemError: AST
  # constructor recursion depth mismatch" (its AST recursion counter is shared), failing
  # random operations. It runs in $out/NAME so its cache (`st replay` of a failure) lands
  # there, not in the clone.
  (cd "$out/$name" && timeout 600 "$st" --config-file "$repo/.ci/schemathesis.toml" \
    run "$base_url/api/v1/openapi.json" \
    --url "$base_url" \
    -H "Authorization: Bearer $bearer" \
    --checks "$checks" \
    --max-examples "$max_examples" \
    "${seed_args[@]}" \
    --workers 1 \
    --request-timeout 10 \
    --generation-database none \
    --no-color \
    --report junit \
    --report-dir "$out/$name" \
    --suppress-health-check too_slow \
    "$@") 2>&1 | tee "$out/$name/output.txt" || pass_rc=$?
  return "$pass_rc"
}

rc=0
# Every operation, as the admin (who may call all of them; POST /orders answers an admin
# 403, which the customer pass below covers).
run_pass admin "$admin_token" || rc=1

# Orders need a customer and something to order: one pharmacy, three medicines with stock
# (the ids the hooks put into generated orders), and a customer account.
pharmacy_id="$(api POST /api/v1/pharmacies "$admin_token" \
  '{"name": "Schemathesis pharmacy", "lat": 12.9716, "lng": 77.5946, "address": "1 Fuzz Road"}' |
  field id)" || { log "could not create the seed pharmacy"; exit 1; }
medicine_ids=()
stock_lines=()
for i in 1 2 3; do
  id="$(api POST /api/v1/medicines "$admin_token" \
    "{\"name\": \"Fuzz medicine $i\", \"sku\": \"ST-FUZZ-$i-$RANDOM\", \"price_cents\": $((i * 150))}" |
    field id)" || { log "could not create seed medicine $i"; exit 1; }
  medicine_ids+=("$id")
  stock_lines+=("{\"medicine_id\": \"$id\", \"quantity\": 1000000000}")
done
api PUT "/api/v1/pharmacies/$pharmacy_id/stock" "$admin_token" \
  "{\"items\": [$(IFS=,; echo "${stock_lines[*]}")]}" >/dev/null ||
  { log "could not stock the seed pharmacy"; exit 1; }
customer_email="schemathesis-customer@example.com"
customer_password="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
api POST /api/v1/auth/register "" "$(python3 -c 'import json, sys; print(json.dumps({"name": "Fuzz customer", "email": sys.argv[1], "password": sys.argv[2], "role": "customer"}))' "$customer_email" "$customer_password")" >/dev/null ||
  { log "could not register the customer"; exit 1; }
customer_token="$(api POST /api/v1/auth/login "" "$(credentials "$customer_email" "$customer_password")" |
  field access_token)" || { log "customer login failed"; exit 1; }

# The customer's own operations: placing (with the seeded ids), listing, reading,
# cancelling orders, their trail and notifications, the profile, prescription uploads.
MEDIFY_ST_PHARMACY="$pharmacy_id" MEDIFY_ST_MEDICINES="$(IFS=,; echo "${medicine_ids[*]}")" \
  run_pass customer "$customer_token" --include-path-regex '^/api/v1/(orders|notifications|me|prescriptions)(/|$)' ||
  rc=1

# The server must have survived the run.
if ! kill -0 "$server_pid" 2>/dev/null; then
  log "the server exited during the run; its log is $server_log"
  server_pid=""
  [[ $rc -ne 0 ]] || rc=1
fi
stop_server

elapsed=$((SECONDS - started))
# "N generated, N passed" (or "... found N unique failures") of each pass.
cases() { grep -m1 -E '^ +[0-9]+ generated' "$out/$1/output.txt" 2>/dev/null | sed 's/^ *//' || echo "no summary"; }
echo
echo "reports: $out/admin, $out/customer (JUnit, output.txt); server log: $server_log"
if [[ $rc -ne 0 ]]; then
  echo "schemathesis: FAILED in ${elapsed}s (admin: $(cases admin); customer: $(cases customer))"
else
  echo "schemathesis: every check passed in ${elapsed}s (admin: $(cases admin); customer: $(cases customer))"
fi
exit "$rc"
