#!/usr/bin/env bash
# Crash soak: runs the crash test (tests/integration/crash.rs) for many
# kill/restart cycles against a release build of `weft serve`, and prints
# its one-line summary.
#
#   tests/soak.sh [CYCLES]          # default 1000
#
# WEFT_CRASH_SEED picks the kill delays and batch sizes; WEFT_CRASH_MAX_SECS
# bounds the run (default here: no limit). Exits non-zero when any
# acknowledged record is lost or stored twice.
set -euo pipefail

cycles="${1:-1000}"
cd "$(dirname "$0")/.."

# `cargo test -p weft-tests` does not build the `weft` binary the test drives
# (weft-tests does not depend on it), so build it first, in the same profile.
cargo build --release -p weft
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
WEFT_CRASH_CYCLES="$cycles" WEFT_CRASH_MAX_SECS="${WEFT_CRASH_MAX_SECS:-0}" \
    cargo test --release -p weft-tests --test integration crash -- --nocapture 2>&1 \
    | tee "$log" || status=$?
echo
grep '^crash:' "$log" || echo "crash: no summary (the test failed before its check; see above)"
exit "$status"
