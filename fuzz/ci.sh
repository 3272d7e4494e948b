#!/usr/bin/env bash
# A short fuzzing pass for CI: every target for 10 s when a nightly toolchain is present.
# Leaves the committed corpora as they are.
set -euo pipefail
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "skipped: no nightly toolchain"
  exit 0
fi
PENNY_FUZZ_SAVE=0 exec "$(dirname "$0")/run.sh" "${PENNY_FUZZ_SECONDS:-10}"
