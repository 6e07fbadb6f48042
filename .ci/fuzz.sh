#!/usr/bin/env bash
# Fuzz smoke: each cargo-fuzz target in fuzz/ runs for FUZZ_SECONDS (default 30) from the
# committed corpus (new inputs go to a scratch copy, so the repository is not touched).
# cargo-fuzz is installed from crates.io when missing. It passes a few nightly-only
# compiler flags; the machine's one (stable) toolchain accepts them with RUSTC_BOOTSTRAP=1,
# so no other toolchain is needed.
# A crash fails the run and leaves the input under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd fuzz
for target in rider_frame json_body; do
    mkdir -p "$scratch/$target"
    cp corpus/"$target"/* "$scratch/$target/"
    echo "--- $target (${seconds}s)"
    # No sanitizer: the code is safe Rust; what is looked for is panics, overflows (debug
    # assertions are on) and runaway memory.
    status=0
    cargo fuzz run --sanitizer none --debug-assertions "$target" \
        "$scratch/$target" -- -max_total_time="$seconds" -max_len=20000 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$scratch/$target.log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        tail -n 80 "$scratch/$target.log"
        echo "fuzz target $target failed (exit $status)"
        exit "$status"
    fi
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$scratch/$target.log" || tail -n 3 "$scratch/$target.log"
done
echo "fuzz smoke passed"
