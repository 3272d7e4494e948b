#!/usr/bin/env bash
# Penny against an earlier Penny, side by side, in one command:
#
#     bash bench/ab.sh              # the working tree against the last commit (HEAD)
#     bash bench/ab.sh v1 main      # any two revisions (the second: a commit, or the working tree)
#     bash bench/ab.sh --quick REV  # a smoke run, ~2 minutes after the builds
#
# Run to run, throughput on this 2-core machine varies by ±20 %, so two runs of bench/run.sh an
# hour apart cannot tell a 10 % change. Here the two builds take turns instead: in each round,
# each build is started on its own copy of the same data, warmed up, measured with wrk and
# stopped, the order swapped every round, so that whatever the machine does meanwhile falls on
# both alike. Printed: for every page, the median (and min–max) of each build's rate, p50 and
# p99 over the rounds, and the ratio of the medians.
#
# Measured, with wrk on core 0 and Penny on core 1 (PostgreSQL unpinned): the search page and the
# API for "Ker" (2 of the demo books) at 16 connections, on a SQLite file and on PostgreSQL;
# then, with a million synthetic books loaded into each build's databases, the first page of
# "Tur" (16,698 books) at one connection, and its search page (which counts them) at 16. Each
# build makes its own databases with its own `penny init-db` and `penny load-synthetic`, so
# revisions with different schemas compare fairly.
#
# The earlier revision is built in a worktree under target/ab/ (a full release build the first
# time, about 7 minutes; cached after). Everything started is stopped at exit, also on Ctrl-C.
#
# Settings (environment; --quick changes the defaults shown second):
#   AB_ROUNDS   rounds (each build measured once per round and page)   5       | 2
#   AB_SECS     seconds per wrk run                                    5       | 2
#   AB_BOOKS    synthetic books for the scale pages (0: skip them)     1000000 | 100000
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRIPT=bench/ab.sh

QUICK=0
REVS=()
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "$SCRIPT: unknown option $arg" >&2; exit 2 ;;
    *) REVS+=("$arg") ;;
  esac
done
[ ${#REVS[@]} -le 2 ] || { echo "$SCRIPT: at most two revisions" >&2; exit 2; }
if [ "$QUICK" = 1 ]; then d_rounds=2 d_secs=2 d_books=100000; else d_rounds=5 d_secs=5 d_books=1000000; fi
ROUNDS=${AB_ROUNDS:-$d_rounds}
SECS=${AB_SECS:-$d_secs}
BOOKS=${AB_BOOKS:-$d_books}
for number in ROUNDS SECS; do
  [[ ${!number} =~ ^[1-9][0-9]*$ ]] || { echo "$SCRIPT: AB_$number must be a whole number ≥ 1" >&2; exit 2; }
done
[[ $BOOKS =~ ^[0-9]+$ ]] || { echo "$SCRIPT: AB_BOOKS must be a whole number" >&2; exit 2; }
unset DATABASE_URL PORT RUST_LOG PGSSLMODE PGSSLROOTCERT PENNY_PGBOUNCER

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
start_run ab

# build_rev REV NAME: a release build of REV (empty: the working tree), copied to $WORK/NAME.
# Sets LABEL_<NAME>.
build_rev() {
  local rev=$1 name=$2 dir
  if [ -z "$rev" ]; then
    cargo build --release --quiet
    cp target/release/penny "$WORK/$name"
    describe_machine
    printf -v "LABEL_$name" '%s' "$COMMIT (working tree)"
    return
  fi
  local commit
  commit=$(git rev-parse --verify --quiet "$rev^{commit}") || die "no revision $rev"
  dir=$ROOT/target/ab/src
  if [ -d "$dir" ]; then
    git -C "$dir" checkout --quiet --detach "$commit"
  else
    mkdir -p "$ROOT/target/ab"
    git worktree add --quiet --detach "$dir" "$commit"
  fi
  (cd "$dir" && CARGO_TARGET_DIR=$ROOT/target/ab/target cargo build --release --quiet)
  cp "$ROOT/target/ab/target/release/penny" "$WORK/$name"
  printf -v "LABEL_$name" '%s' "$(git rev-parse --short "$commit") ($rev)"
}

say "tools"
install_missing wrk:wrk taskset:util-linux curl:curl runuser:util-linux
find_postgres
pin_cores

say "build: ${REVS[0]:-HEAD} and ${REVS[1]:-the working tree}"
build_rev "${REVS[0]:-HEAD}" a
build_rev "${REVS[1]:-}" b

say "a throwaway PostgreSQL, and a database and a SQLite file for each build"
start_postgres
for side in a b; do
  psql_on postgres -c "CREATE DATABASE ab_$side" >/dev/null
  DATABASE_URL=$(pg_url "ab_$side") "$WORK/$side" init-db >/dev/null
  DATABASE_URL="sqlite://$WORK/$side.sqlite" "$WORK/$side" init-db >/dev/null
done

RESULTS=$WORK/results.tsv
: > "$RESULTS"

# measure PAGE_ID CONNECTIONS PATH: every round, each build on each backend.
measure() {
  local id=$1 conns=$2 path=$3 round side backend url
  for round in $(seq 1 "$ROUNDS"); do
    local order=(a b)
    [ $((round % 2)) = 0 ] && order=(b a)
    for backend in sqlite pg; do
      for side in "${order[@]}"; do
        if [ "$backend" = pg ]; then url=$(pg_url "ab_$side"); else url="sqlite://$WORK/$side.sqlite"; fi
        PENNY=$WORK/$side
        start_penny "$url"
        expect_200 "http://127.0.0.1:$PENNY_PORT$path"
        wrk_summary "$conns" 1 "http://127.0.0.1:$PENNY_PORT$path"
        wrk_summary "$conns" "$SECS" "http://127.0.0.1:$PENNY_PORT$path"
        stop_penny
        [ "$ERRORS" = 0 ] || die "$ERRORS errors on $path ($backend, build $side)"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$backend" "$id" "$side" "$RPS" "$P50" "$P99" >> "$RESULTS"
        printf '  round %s  %-6s %-36s %s  %9.0f req/s  p50 %6.3f ms  p99 %6.3f ms\n' \
          "$round" "$backend" "$id" "$side" "$RPS" "$P50" "$P99" >&2
      done
    done
  done
}

say "the demo books: $ROUNDS round(s) of wrk -c16 -d${SECS}s per page, build and backend"
measure "GET /searchresults?author=Ker, c16" 16 "/searchresults?author=Ker"
measure "GET /api/books?author=Ker, c16" 16 "/api/books?author=Ker"

if [ "$BOOKS" -gt 0 ]; then
  say "$BOOKS synthetic books into each build's databases"
  for side in a b; do
    DATABASE_URL=$(pg_url "ab_$side") "$WORK/$side" load-synthetic "$BOOKS" >&2
    DATABASE_URL="sqlite://$WORK/$side.sqlite" "$WORK/$side" load-synthetic "$BOOKS" >&2
    psql_on "ab_$side" -c "VACUUM (ANALYZE) books" -c "CHECKPOINT" >/dev/null
  done
  sync
  say "the first page among $BOOKS books: $ROUNDS round(s) of wrk -c1 -d${SECS}s"
  measure "GET /api/books?author=Tur ($BOOKS books), c1" 1 "/api/books?author=Tur"
  say "a search page with a counted result among $BOOKS books: $ROUNDS round(s) of wrk -c16 -d${SECS}s"
  measure "GET /searchresults?author=Tur ($BOOKS books), c16" 16 "/searchresults?author=Tur"
fi

say "report"
describe_machine
echo "**A/B:** a = $LABEL_a, b = $LABEL_b; $(date -u '+%Y-%m-%d %H:%M UTC'), $ROUNDS round(s) of ${SECS} s, $PINNING; $CORES cores, $CPU_MODEL; load average at start $LOAD_AT_START"
echo
echo "| Backend | Page | a req/s | b req/s | b / a | a p50 | b p50 | a p99 | b p99 |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
awk -F'\t' '
  function median(list,   n, i, j, t, v) {
    n = split(list, v, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  function spread(list,   n, i, v, lo, hi) {
    n = split(list, v, " "); lo = v[1]; hi = v[1]
    for (i = 2; i <= n; i++) { if (v[i] + 0 < lo + 0) lo = v[i]; if (v[i] + 0 > hi + 0) hi = v[i] }
    return sprintf("%.0f–%.0f", lo, hi)
  }
  {
    key = $1 SUBSEP $2
    if (!(key in seen)) { seen[key] = 1; keys[++k] = key }
    rate[key, $3] = rate[key, $3] " " $4; p50[key, $3] = p50[key, $3] " " $5; p99[key, $3] = p99[key, $3] " " $6
  }
  END {
    for (i = 1; i <= k; i++) {
      split(keys[i], part, SUBSEP)
      ra = median(rate[keys[i], "a"]); rb = median(rate[keys[i], "b"])
      printf "| %s | %s | %.0f (%s) | %.0f (%s) | %.2f× | %.3f ms | %.3f ms | %.3f ms | %.3f ms |\n",
        part[1] == "pg" ? "PostgreSQL" : "SQLite file", part[2],
        ra, spread(rate[keys[i], "a"]), rb, spread(rate[keys[i], "b"]), rb / ra,
        median(p50[keys[i], "a"]), median(p50[keys[i], "b"]),
        median(p99[keys[i], "a"]), median(p99[keys[i], "b"])
    }
  }' "$RESULTS"
