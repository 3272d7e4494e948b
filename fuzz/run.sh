#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) on its corpus, then prints a table of
# executions, corpus size and crashes. Exits non-zero when a target crashed; the input that
# did it is under fuzz/artifacts/<target>/. Needs a nightly toolchain; installs cargo-fuzz.
#
#   fuzz/run.sh [SECONDS]
#
# New inputs go into fuzz/corpus/<target>/, which is then minimized with `cargo fuzz cmin`.
# With PENNY_FUZZ_SAVE=0 they go to a scratch directory instead and the corpora stay as they are.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
export CARGO_TERM_COLOR=never

command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked
cargo +nightly fuzz build

mkdir -p target/logs
failed=0
rows=()
for target in $(cargo +nightly fuzz list); do
  mkdir -p "corpus/$target" "artifacts/$target"
  dirs=("corpus/$target")
  if [ "${PENNY_FUZZ_SAVE:-1}" = 0 ]; then
    rm -rf "target/scratch/$target" && mkdir -p "target/scratch/$target"
    dirs=("target/scratch/$target" "corpus/$target")
  fi
  [ -d "regressions/$target" ] && dirs+=("regressions/$target")
  before=$(find "artifacts/$target" -type f | wc -l)
  log="target/logs/$target.log"
  echo "==> $target for ${seconds}s"
  status=ok
  # libFuzzer adds new inputs to the first directory and only reads the others.
  cargo +nightly fuzz run "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=CRASH
  after=$(find "artifacts/$target" -type f | wc -l)
  crashes=$((after - before))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ "$status" = CRASH ]; then
    failed=1
    tail -n 30 "$log"
  elif [ "${PENNY_FUZZ_SAVE:-1}" = 1 ]; then
    cargo +nightly fuzz cmin "$target" "corpus/$target" >"target/logs/$target.cmin.log" 2>&1
  fi
  files=$(find "corpus/$target" -type f | wc -l)
  bytes=$(find "corpus/$target" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  kb=$(((bytes + 1023) / 1024))
  rows+=("$(printf '%-15s %12s %8s %8sK %8s  %s' \
    "$target" "${execs:-?}" "$files" "$kb" "$crashes" "$status")")
done

printf '\n%-15s %12s %8s %9s %8s  %s\n' target executions inputs corpus crashes status
printf '%s\n' "${rows[@]}"
echo "(${seconds}s per target; logs in fuzz/target/logs/)"
exit "$failed"
