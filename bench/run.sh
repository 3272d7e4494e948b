#!/usr/bin/env bash
# Penny's benchmarks, from a clean checkout, in one command:
#
#     bash bench/run.sh              # the full run: 3 repeats, about 8 minutes on 2 cores
#     bash bench/run.sh --quick      # a smoke run: every duration and repeat shortened, ~1 min
#     bash bench/run.sh --repeats 5  # more repeats of every figure
#
# plus the release build: about 7 minutes from a clean checkout, seconds after that.
#
# It builds Penny and benches/pooling.rs in release mode, starts a throwaway PostgreSQL (a temp
# directory, a free port on 127.0.0.1, password authentication over TCP, run as the `postgres`
# OS user when root) and a SQLite file, then measures:
#
#   1. the lecture's pooling table (benches/pooling.rs): the search 10,000 times with a new
#      connection per call, one shared connection, Penny's bb8 pool, Penny's SQLite pool, 16
#      concurrent tasks on the pool, and pgbench running Penny's exact query as the yardstick;
#   2. HTTP with wrk (wrk on core 0, Penny on core 1): requests/s, p50, p99, errors and Penny's
#      peak RSS for three pages on each backend, and the time from spawn to the first 200;
#   3. scale: `penny load-synthetic 1000000` into a fresh PostgreSQL database and SQLite file,
#      then the first page's latency for a prefix that matches many books (`Tur`: Turing's
#      1/60 of the synthetic books), with the PostgreSQL table vacuumed first.
#
# Each figure is repeated (3 times by default) and printed as its median and spread (min–max),
# in one markdown table on stdout (progress goes to stderr); the table is also saved under
# target/bench/. Everything it starts is stopped, and the temp directory removed, when it exits,
# also on failure or Ctrl-C.
#
# Settings (environment; --quick changes the defaults shown second):
#   BENCH_REPEATS          repeats of every figure                  3     | 1
#   BENCH_ITERATIONS       searches per pooling line                10000 | 2000
#   BENCH_NEW_CONN_CALLS   calls for line (a), scaled to ITERATIONS 2000  | 200
#   BENCH_TASKS            concurrent tasks for line (e)            16
#   BENCH_WRK_SECS         seconds per wrk run (HTTP)               10    | 2
#   BENCH_STARTS           starts per start-up figure               10    | 5
#   BENCH_SCALE_BOOKS      synthetic books for the scale part       1000000 | 100000
#   BENCH_SCALE_SECS       seconds per wrk run (scale)              10    | 2
#   BENCH_SCALE_PREFIX     the prefix searched at scale             Tur
#   BENCH_LOAD_REPEATS     loads of the synthetic books per backend REPEATS
#   BENCH_PARTS            which parts to run                       pooling http startup scale
#   PENNY_POOL_SIZE        Penny's pool size, as in production     10
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRIPT=bench/run.sh

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

QUICK=0
REPEATS_ARG=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --repeats) [ $# -ge 2 ] || { echo "bench/run.sh: --repeats needs a number" >&2; exit 2; }
               REPEATS_ARG=$2; shift ;;
    --repeats=*) REPEATS_ARG=${1#*=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [ "$QUICK" = 1 ]; then
  d_repeats=1 d_iterations=2000 d_new_conn=200 d_wrk=2 d_starts=5 d_books=100000 d_scale=2
  MODE="quick (--quick)"
else
  d_repeats=3 d_iterations=10000 d_new_conn=2000 d_wrk=10 d_starts=10 d_books=1000000 d_scale=10
  MODE="full"
fi
REPEATS=${REPEATS_ARG:-${BENCH_REPEATS:-$d_repeats}}
ITERATIONS=${BENCH_ITERATIONS:-$d_iterations}
NEW_CONN_CALLS=${BENCH_NEW_CONN_CALLS:-$d_new_conn}
TASKS=${BENCH_TASKS:-16}
WRK_SECS=${BENCH_WRK_SECS:-$d_wrk}
STARTS=${BENCH_STARTS:-$d_starts}
SCALE_BOOKS=${BENCH_SCALE_BOOKS:-$d_books}
SCALE_SECS=${BENCH_SCALE_SECS:-$d_scale}
SCALE_PREFIX=${BENCH_SCALE_PREFIX:-Tur}
LOAD_REPEATS=${BENCH_LOAD_REPEATS:-$REPEATS}
PARTS=${BENCH_PARTS:-pooling http startup scale}
for part in $PARTS; do
  case "$part" in
    pooling|http|startup|scale) ;;
    *) echo "bench/run.sh: BENCH_PARTS names pooling, http, startup and scale (not '$part')" >&2; exit 2 ;;
  esac
done
wanted() { [[ " $PARTS " == *" $1 "* ]]; }
for number in REPEATS ITERATIONS NEW_CONN_CALLS TASKS WRK_SECS STARTS SCALE_BOOKS SCALE_SECS \
              LOAD_REPEATS; do
  [[ ${!number} =~ ^[1-9][0-9]*$ ]] || { echo "bench/run.sh: $number must be a whole number ≥ 1 (it is '${!number}')" >&2; exit 2; }
done
# The pooling bench reads its own settings from BENCH_*; they are passed as arguments instead.
unset BENCH_REPEATS BENCH_ITERATIONS BENCH_NEW_CONN_CALLS BENCH_TASKS
# Penny is configured here only: nothing from the caller's shell leaks in. RUST_LOG stays at
# Penny's default (info: one log line per request).
unset DATABASE_URL PORT RUST_LOG PGSSLMODE PGSSLROOTCERT PENNY_PGBOUNCER

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

start_run bench
RECORDS=$WORK/records.tsv
: > "$RECORDS"

record() { local IFS=$'\t'; printf '%s\n' "$*" >> "$RECORDS"; }

STEP_TIMES=()
step_done() { STEP_TIMES+=("$1 $(since "$2" | awk '{ printf "%.0f", $1 }') s"); }

# ---------------------------------------------------------------------------------------------
say "tools"
install_missing wrk:wrk taskset:util-linux curl:curl runuser:util-linux
find_postgres pgbench
pin_cores
echo "ok ($PGBIN, $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2))" >&2

# ---------------------------------------------------------------------------------------------
say "build (release)"
started=$(now)
cargo build --release --quiet
PENNY=$ROOT/target/release/penny
[ -x "$PENNY" ] || die "cargo build --release made no $PENNY"
cargo build --release --bench pooling --quiet
# Built already: this only asks cargo where the bench's executable is.
BENCH=$(cargo build --release --bench pooling --message-format=json --quiet |
  grep '"kind":\["bench"\]' | grep '"name":"pooling"' |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1 || true)
if [ -z "$BENCH" ] || [ ! -x "$BENCH" ]; then
  die "cargo build --release --bench pooling made no executable"
fi
step_done build "$started"

# ---------------------------------------------------------------------------------------------
say "a throwaway PostgreSQL"
start_postgres
psql_on postgres -c "CREATE DATABASE penny" >/dev/null
PG_URL=$(pg_url penny)
DATABASE_URL=$PG_URL "$PENNY" init-db >&2
SQLITE_FILE=$WORK/penny.sqlite
SQLITE_URL="sqlite://$SQLITE_FILE"
DATABASE_URL=$SQLITE_URL "$PENNY" init-db >&2
echo "PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT (scram-sha-256 over TCP, sslmode=disable)" >&2

describe_machine
record meta "**Machine:** $CORES cores (nproc), $CPU_MODEL, $MEM_TOTAL RAM; $(uname -sr); load average at start $LOAD_AT_START"
record meta "**Run:** $(date -u '+%Y-%m-%d %H:%M UTC'), penny $COMMIT, $MODE, $REPEATS repeat(s)${BENCH_PARTS:+, parts: $PARTS}; PostgreSQL $PG_VERSION on 127.0.0.1 (scram-sha-256, no TLS), $PINNING"

# ---------------------------------------------------------------------------------------------
if wanted pooling; then
say "pooling: the search $ITERATIONS times (benches/pooling.rs), and pgbench"
started=$(now)
"$BENCH" search --pg-url "$PG_URL" --sqlite-url "$SQLITE_URL" --pgbench "$PGBIN/pgbench" \
  --prefix ker --iterations "$ITERATIONS" --new-conn-calls "$NEW_CONN_CALLS" --tasks "$TASKS" \
  --repeats "$REPEATS" >> "$RECORDS"
step_done pooling "$started"
fi

# ---------------------------------------------------------------------------------------------
# The peak RSS (MiB) of Penny since the last reset_peak.
reset_peak() { echo 5 > "/proc/$PENNY_PID/clear_refs" 2>/dev/null || PEAK_NOTE=" (peak since start)"; }
peak_rss() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$PENNY_PID/status"; }
PEAK_NOTE=

# measure_wrk ID CONNECTIONS SECONDS URL: one repeat of a wrk figure.
measure_wrk() {
  reset_peak
  wrk_summary "$2" "$3" "$4"
  record val "$1" rate "$RPS"
  record val "$1" p50_ms "$P50"
  record val "$1" p99_ms "$P99"
  record val "$1" errors "$ERRORS"
  record val "$1" rss_mib "$(peak_rss)"
  printf '  %-36s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  errors %s\n' "$1" "$RPS" "$P50" "$P99" "$ERRORS" >&2
}

if wanted http; then
say "HTTP: wrk -t1 -c16 -d${WRK_SECS}s --latency, $REPEATS repeat(s)"
started=$(now)
PATHS=("/searchresults?author=Ker" "/" "/api/books?author=Ker")
http_backend() {
  local key=$1 backend=$2 url=$3 path id _
  start_penny "$url"
  for path in "${PATHS[@]}"; do
    id="http-$key-$path"
    record row "$id" "HTTP: wrk -c16, ${WRK_SECS} s" "GET $path" "$backend"
    expect_200 "http://127.0.0.1:$PENNY_PORT$path"
    wrk_summary 16 1 "http://127.0.0.1:$PENNY_PORT$path" # warm-up
  done
  for _ in $(seq 1 "$REPEATS"); do
    for path in "${PATHS[@]}"; do
      measure_wrk "http-$key-$path" 16 "$WRK_SECS" "http://127.0.0.1:$PENNY_PORT$path"
    done
  done
  stop_penny
}
http_backend bundled "SQLite (bundled demo)" ""
http_backend sqlite "SQLite file (the demo books)" "$SQLITE_URL"
http_backend pg "PostgreSQL (the demo books)" "$PG_URL"
step_done http "$started"
fi

if wanted startup; then
say "start-up: spawn to the first 200 on /, median of $STARTS starts, $REPEATS repeat(s)"
started=$(now)
record row start-bundled "Start-up: spawn → first 200 on /" "median of $STARTS starts" "SQLite (bundled demo)"
record row start-pg "Start-up: spawn → first 200 on /" "median of $STARTS starts" "PostgreSQL (the demo books)"
for _ in $(seq 1 "$REPEATS"); do
  "$BENCH" startup --penny "$PENNY" --runs "$STARTS" --row start-bundled >> "$RECORDS"
  DATABASE_URL=$PG_URL "$BENCH" startup --penny "$PENNY" --runs "$STARTS" --row start-pg >> "$RECORDS"
done
step_done startup "$started"
fi

# ---------------------------------------------------------------------------------------------
if wanted scale; then
say "scale: penny load-synthetic $SCALE_BOOKS, $LOAD_REPEATS load(s) per backend"
started=$(now)
SCALE_PG_URL=$(pg_url penny_scale)
SCALE_SQLITE_FILE=$WORK/scale.sqlite
SCALE_SQLITE_URL="sqlite://$SCALE_SQLITE_FILE"
BOOKS_LABEL=$(echo "$SCALE_BOOKS" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta')
record row load-pg "Scale: load" "penny load-synthetic $BOOKS_LABEL (fresh database, COPY)" "PostgreSQL"
record row load-sqlite "Scale: load" "penny load-synthetic $BOOKS_LABEL (fresh file, one transaction)" "SQLite file"
for _ in $(seq 1 "$LOAD_REPEATS"); do
  psql_on postgres -c "DROP DATABASE IF EXISTS penny_scale" -c "CREATE DATABASE penny_scale" >/dev/null
  DATABASE_URL=$SCALE_PG_URL "$PENNY" init-db >/dev/null
  t=$(now)
  DATABASE_URL=$SCALE_PG_URL "$PENNY" load-synthetic "$SCALE_BOOKS" >&2
  record val load-pg time_s "$(since "$t")"

  rm -f "$SCALE_SQLITE_FILE" "$SCALE_SQLITE_FILE-wal" "$SCALE_SQLITE_FILE-shm" "$SCALE_SQLITE_FILE-journal"
  DATABASE_URL=$SCALE_SQLITE_URL "$PENNY" init-db >/dev/null
  t=$(now)
  DATABASE_URL=$SCALE_SQLITE_URL "$PENNY" load-synthetic "$SCALE_BOOKS" >&2
  record val load-sqlite time_s "$(since "$t")"
done

# Autovacuum visits the freshly loaded table within a minute (autovacuum_naptime), often in the
# middle of the measurement, and afterwards the search reads no heap page it need not: measure
# the table as autovacuum leaves it, not while it works.
psql_on penny_scale -c "VACUUM (ANALYZE) books" -c "CHECKPOINT" >/dev/null

say "scale: the first page of /api/books?author=$SCALE_PREFIX, wrk -c1 -d${SCALE_SECS}s, $REPEATS repeat(s)"
scale_backend() {
  local key=$1 backend=$2 url=$3 id="scale-$1" _
  local target_url="/api/books?author=$SCALE_PREFIX"
  start_penny "$url"
  expect_200 "http://127.0.0.1:$PENNY_PORT$target_url"
  local found
  found=$(grep -o '"isbn"' "$WORK/body" | wc -l)
  [ "$found" -eq 50 ] || die "$target_url on $backend gave $found books, not a full page of 50"
  record row "$id" "Scale: first page, wrk -c1, ${SCALE_SECS} s" "GET $target_url ($BOOKS_LABEL books)" "$backend"
  record target "$id" p50_ms le 2
  wrk_summary 1 1 "http://127.0.0.1:$PENNY_PORT$target_url" # warm-up
  for _ in $(seq 1 "$REPEATS"); do
    measure_wrk "$id" 1 "$SCALE_SECS" "http://127.0.0.1:$PENNY_PORT$target_url"
  done
  stop_penny
}
scale_backend sqlite "SQLite file" "$SCALE_SQLITE_URL"
scale_backend pg "PostgreSQL (vacuumed)" "$SCALE_PG_URL"
step_done scale "$started"
fi

# ---------------------------------------------------------------------------------------------
step_done total "$RUN_STARTED"
WALL=$(IFS=','; echo "${STEP_TIMES[*]}")
record meta "**Wall time:** ${WALL//,/, }${PEAK_NOTE:+; peak RSS$PEAK_NOTE}"
say "report"
mkdir -p "$ROOT/target/bench"
REPORT=$ROOT/target/bench/report-$(date -u +%Y%m%d-%H%M%S).md
"$BENCH" table "$RECORDS" > "$REPORT"
cp "$RECORDS" "${REPORT%.md}.tsv"
echo "(saved as $REPORT)" >&2
echo >&2
cat "$REPORT"
