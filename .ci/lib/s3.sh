# Sourced by .ci/run: an S3-compatible server on loopback for the S3 object-store tests
# (tests/api/prescriptions.rs). It is moto's server from PyPI (pure Python, in-memory,
# answers the S3 REST API with SigV4-signed requests and multipart uploads), installed into
# a venv under the build cache (reused while its version is the one wanted) and started on
# a free port. `start_s3` exports MEDIFY_TEST_S3=http://test:test@127.0.0.1:<port> (the
# credentials the tests sign with); `stop_s3` stops it. Each test makes its own bucket and
# deletes it afterwards.
#
# MOTO_VERSION pins the server (default below). A failed install or a server that does not
# answer fails the run: the S3 tests must not be skipped in CI.

s3_pid=""

start_s3() {
  local target="${CARGO_TARGET_DIR:-target}"
  local version="${MOTO_VERSION:-5.2.1}"
  local venv="$target/s3/venv"
  local server="$venv/bin/moto_server"
  if [[ ! -x "$server" ]] || [[ "$("$venv/bin/python" -m pip show moto 2>/dev/null | sed -n 's/^Version: //p')" != "$version" ]]; then
    echo "installing moto[server]==$version from PyPI into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$version"
  fi
  local port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  mkdir -p "$target/s3"
  "$server" -H 127.0.0.1 -p "$port" >"$target/s3/server.log" 2>&1 &
  s3_pid=$!
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null; then
      export MEDIFY_TEST_S3="http://test:test@127.0.0.1:$port"
      echo "S3 (moto $version) on 127.0.0.1:$port, pid $s3_pid"
      return 0
    fi
    if ! kill -0 "$s3_pid" 2>/dev/null; then
      break
    fi
    sleep 0.2
  done
  echo "the S3 server did not start; its log:" >&2
  tail -n 30 "$target/s3/server.log" >&2 || true
  return 1
}

stop_s3() {
  if [[ -n "$s3_pid" ]] && kill -0 "$s3_pid" 2>/dev/null; then
    kill -TERM "$s3_pid" 2>/dev/null || true
    wait "$s3_pid" 2>/dev/null || true
  fi
  s3_pid=""
}
