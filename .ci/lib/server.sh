# Sourced by the scripts that drive a real medify binary from outside (.ci/schemathesis.sh,
# simulations/k6/ci.sh): start it on a free loopback port with a fresh SQLite file in
# $work, wait for /readyz, retry on another port if the port was taken meanwhile, and stop
# it (SIGTERM, then SIGKILL after 10 s) whenever the script exits.
#
# The caller sets, before sourcing: server_bin, work, server_log, admin_email,
# admin_password, jwt_secret, a `log` function, and server_env (an array of extra
# VAR=value settings). After `serve`: server_pid, port, base_url.

server_pid=""

stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    # Bounded wait for a clean exit, then force it.
    if ! timeout 10 tail --pid="$server_pid" -f /dev/null; then
      log "server did not stop within 10 s of SIGTERM: killing it"
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() {
  local rc=$?
  stop_server
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Limits generous enough that a load or contract tool is not merely rate limited.
start_server() {
  port="$(free_port)"
  base_url="http://127.0.0.1:$port"
  rm -f "$work"/medify.db*
  env \
    MEDIFY_ENV=test \
    MEDIFY_BIND="127.0.0.1:$port" \
    DATABASE_URL="sqlite://$work/medify.db?mode=rwc" \
    MEDIFY_ADMIN_EMAIL="$admin_email" \
    MEDIFY_ADMIN_PASSWORD="$admin_password" \
    JWT_SECRET="$jwt_secret" \
    RATE_LIMIT_AUTH_PER_IP=1000000 \
    RATE_LIMIT_AUTH_PER_ACCOUNT=1000000 \
    MAX_OPEN_ORDERS_PER_CUSTOMER=1000000 \
    RATE_LIMIT_ORDERS_PER_MINUTE=1000000 \
    OTP_DELIVERY=response \
    OBJECT_STORE="file:$work/objects" \
    LOG_FORMAT=json \
    "${server_env[@]}" \
    "$server_bin" >"$server_log" 2>&1 &
  server_pid=$!
}

# Wait for /readyz (bounded: 60 s); false if the server died first.
wait_ready() {
  for _ in $(seq 1 300); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      wait "$server_pid" 2>/dev/null || true
      server_pid=""
      return 1
    fi
    if curl -fsS -o /dev/null --max-time 2 "$base_url/readyz" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  log "server not ready after 60 s; its log:"
  tail -n 50 "$server_log" >&2 || true
  exit 1
}

# The port was free a moment ago; if something took it in between, the server exits:
# try another port, a bounded number of times.
serve() {
  local ready="" attempt
  for attempt in 1 2 3; do
    start_server
    if wait_ready; then ready=1; break; fi
    log "server exited during start-up (attempt $attempt); its log:"
    tail -n 30 "$server_log" >&2 || true
  done
  [[ -n "$ready" ]] || { log "server never became ready"; exit 1; }
  log "server $server_bin ready at $base_url (pid $server_pid, database $work/medify.db)"
}
