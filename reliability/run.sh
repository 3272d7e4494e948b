#!/usr/bin/env bash
# Penny's reliability figures, from a clean checkout, in one command:
#
#     bash reliability/run.sh           # the full run: about 11 minutes on 2 cores
#     bash reliability/run.sh --quick   # a smoke run: 5 s soaks, about 3 minutes
#
# plus the release builds of Penny and of its test suite: several minutes from a clean
# checkout, seconds after that.
#
#   1. Soak. For each backend (the bundled demo, a SQLite file, a throwaway PostgreSQL), Penny
#      in release mode on core 1 and wrk on core 0, SOAK_CONNS connections for SOAK_SECS on a
#      mix of pages (reliability/soak.lua): once with keep-alive, then once with a new
#      connection for every request ("churn": each request says `Connection: close`). A warm-up
#      of both kinds comes first; Penny's RSS is sampled every second from then on. A run fails
#      on any wrk socket error (connect, read, write, or no answer within 2 s), any response
#      outside 2xx/3xx, any 5xx, or an RSS at its end more than RSS_GROWTH_PCT % (and at least
#      2 MiB) above the RSS after the warm-up. A backend fails if Penny logs an error or does
#      not exit 0 on SIGTERM afterwards.
#   2. Faults. `cargo test --release --test reliability -- --nocapture --test-threads=1`: the
#      tests in tests/reliability/, which print their figures (CI=true, so that a test needing
#      PostgreSQL fails rather than skips). The tests assert the deadlines Penny sets; the
#      latency figures they print are checked here: the p99 of the normal clients during
#      slowloris must stay under SLOWLORIS_P99_MS.
#   3. Scale-out. `bash reliability/scaleout.sh` (with --quick when given): 4 Pennys behind
#      HAProxy through one PgBouncer to a PostgreSQL with max_connections = 20, under steady
#      load, a rolling restart and a PgBouncer restart (see that script), with SOAK_CONNS
#      connections.
#
# One markdown summary goes to stdout (progress to stderr) and is saved under
# target/reliability/. Exits non-zero if anything failed. Everything it starts is stopped, and
# its temp directory removed, when it exits, also on failure or Ctrl-C.
#
# Settings (environment; --quick changes the defaults shown second):
#   SOAK_SECS          seconds of each measured run             60 | 5
#   SOAK_WARMUP_SECS   seconds of each warm-up run              10 | 2
#   SOAK_CONNS         wrk's connections                        256
#   SOAK_BACKENDS      which backends                           bundled sqlite postgres
#   RSS_GROWTH_PCT     allowed RSS growth, in %                 10
#   RELIABILITY_PARTS  which parts                              soak faults scaleout
#   SLOWLORIS_P99_MS   bound on p99 during slowloris, in ms     500
#   PENNY_POOL_SIZE and Penny's other PENNY_* settings reach it from the environment; unset,
#   Penny runs with its defaults (a pool of 10), as in production.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRIPT=reliability/run.sh

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
parse_options "$@"

if [ "$QUICK" = 1 ]; then
  d_secs=5 d_warmup=2
  MODE="quick (--quick)"
else
  d_secs=60 d_warmup=10
  MODE="full"
fi
SOAK_SECS=${SOAK_SECS:-$d_secs}
SOAK_WARMUP_SECS=${SOAK_WARMUP_SECS:-$d_warmup}
SOAK_CONNS=${SOAK_CONNS:-256}
SOAK_BACKENDS=${SOAK_BACKENDS:-bundled sqlite postgres}
RSS_GROWTH_PCT=${RSS_GROWTH_PCT:-10}
PARTS=${RELIABILITY_PARTS:-soak faults scaleout}
SLOWLORIS_P99_MS=${SLOWLORIS_P99_MS:-500}
for number in SOAK_SECS SOAK_WARMUP_SECS SOAK_CONNS RSS_GROWTH_PCT; do
  [[ ${!number} =~ ^[1-9][0-9]*$ ]] || { echo "$SCRIPT: $number must be a whole number ≥ 1 (it is '${!number}')" >&2; exit 2; }
done
for part in $PARTS; do
  case "$part" in soak|faults|scaleout) ;; *) echo "$SCRIPT: RELIABILITY_PARTS names soak, faults and scaleout (not '$part')" >&2; exit 2 ;; esac
done
for backend in $SOAK_BACKENDS; do
  case "$backend" in bundled|sqlite|postgres) ;; *) echo "$SCRIPT: SOAK_BACKENDS names bundled, sqlite and postgres (not '$backend')" >&2; exit 2 ;; esac
done
wanted() { [[ " $PARTS " == *" $1 "* ]]; }
# Penny is configured here only: nothing from the caller's shell leaks in but PENNY_* settings.
# RUST_LOG stays at Penny's default (info: one log line per request), as in production.
unset DATABASE_URL PORT RUST_LOG PGSSLMODE PGSSLROOTCERT PENNY_PGBOUNCER


start_run reliability

FAILURES=()
fail() { FAILURES+=("$*"); printf '  FAILED: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
say "tools"
install_missing wrk:wrk taskset:util-linux curl:curl runuser:util-linux openssl:openssl \
  psql:postgresql-client
find_postgres postgres
pin_cores
# wrk holds a socket per connection and Penny one more each; churn leaves many more behind.
wanted_files=$((SOAK_CONNS * 4 + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$wanted_files" ]; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$wanted_files" ] ||
    die "ulimit -n is $(ulimit -n); $SOAK_CONNS connections need about $wanted_files"
fi
echo "ok ($PGBIN, $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2), ulimit -n $(ulimit -n))" >&2

# ---------------------------------------------------------------------------------------------
say "build (release)"
started=$(now)
cargo build --release --quiet
PENNY=$ROOT/target/release/penny
[ -x "$PENNY" ] || die "cargo build --release made no $PENNY"
if wanted faults; then cargo test --release --test reliability --no-run --quiet; fi
echo "built in $(since "$started" | awk '{ printf "%.0f", $1 }') s" >&2

describe_machine
REPORT_LINES=()
report() { REPORT_LINES+=("$*"); }

# ---------------------------------------------------------------------------------------------
# Soak.

# The machine's count of TCP connections accepted so far (/proc/net/snmp, PassiveOpens).
tcp_accepted() {
  awk '/^Tcp:/ { if (!column) { for (i = 1; i <= NF; i++) if ($i == "PassiveOpens") column = i }
                 else print $column }' /proc/net/snmp
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$PENNY_PID/status"; }
peak_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$PENNY_PID/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
thousands() { printf '%.0f' "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }
milliseconds() { awk -v ms="$1" 'BEGIN { printf "%.1f ms", ms }'; }

# Writes Penny's VmRSS (KiB) to $1 every second until stopped. Sets SAMPLER.
start_sampler() {
  local pid=$PENNY_PID file=$1
  (while kill -0 "$pid" 2>/dev/null; do
     awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true
     sleep 1
   done) >> "$file" &
  SAMPLER=$!
  PIDS+=("$SAMPLER")
}
stop_sampler() { kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; forget_pid "$SAMPLER"; }

# run_wrk MODE SECONDS: wrk pinned, on Penny, MODE keepalive or churn. Sets the SOAK_* figures.
# wrk runs in the background and is waited for, so that Ctrl-C reaches this script.
run_wrk() {
  local mode=$1 secs=$2 out=$WORK/wrk.out pid status=0 churn=()
  [ "$mode" = churn ] && churn=(-- churn)
  "${PIN_CLIENT[@]}" wrk -t1 -c"$SOAK_CONNS" -d"$secs"s --timeout 2s --latency \
    -s "$ROOT/reliability/soak.lua" "http://127.0.0.1:$PENNY_PORT/" "${churn[@]}" > "$out" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait "$pid" || status=$?
  forget_pid "$pid"
  [ "$status" = 0 ] || { cat "$out" >&2; die "wrk failed"; }
  local line
  line=$(grep '^SOAK' "$out") || { cat "$out" >&2; die "wrk printed no summary"; }
  IFS=$'\t' read -r _ REQUESTS RATE P50 P99 MAX E_CONNECT E_READ E_WRITE E_TIMEOUT \
    S2XX S3XX S4XX S5XX <<< "$line"
}

SOAK_ROWS=()
soak_backend() {
  local key=$1 label=$2 url=$3 path launch_kib baseline_kib mode
  say "soak: $label, wrk -c$SOAK_CONNS, ${SOAK_WARMUP_SECS} s warm-up then ${SOAK_SECS} s keep-alive and ${SOAK_SECS} s churn"
  start_penny "$url"
  for path in "/searchresults?author=ker" "/api/books?author=ker" "/" "/static/penny.css"; do
    expect_200 "http://127.0.0.1:$PENNY_PORT$path"
  done
  launch_kib=$(rss_kib)
  run_wrk keepalive "$SOAK_WARMUP_SECS"
  run_wrk churn "$SOAK_WARMUP_SECS"
  baseline_kib=$(rss_kib)
  local limit_kib
  limit_kib=$(awk -v b="$baseline_kib" -v p="$RSS_GROWTH_PCT" \
    'BEGIN { g = b * p / 100; if (g < 2048) g = 2048; printf "%d", b + g }')
  echo "  RSS at launch $(mib "$launch_kib") MiB, after the warm-up $(mib "$baseline_kib") MiB (limit $(mib "$limit_kib") MiB)" >&2

  for mode in keepalive churn; do
    local samples=$WORK/rss-$key-$mode start_kib end_kib top_kib accepted_before accepted verdict
    : > "$samples"
    echo 5 > "/proc/$PENNY_PID/clear_refs" 2>/dev/null || true
    start_kib=$(rss_kib)
    accepted_before=$(tcp_accepted)
    start_sampler "$samples"
    run_wrk "$mode" "$SOAK_SECS"
    stop_sampler
    end_kib=$(rss_kib)
    accepted=$(( $(tcp_accepted) - accepted_before ))
    top_kib=$( (cat "$samples"; peak_kib; echo "$end_kib") | sort -n | tail -n 1)
    verdict=ok
    local errors=$((E_CONNECT + E_READ + E_WRITE + E_TIMEOUT)) bad=$((S4XX + S5XX))
    local answered=$((S2XX + S3XX + S4XX + S5XX))
    [ "$errors" -eq 0 ] || { verdict=FAILED; fail "$label, $mode: $errors socket errors"; }
    [ "$bad" -eq 0 ] || { verdict=FAILED; fail "$label, $mode: $bad responses outside 2xx/3xx"; }
    [ "$S5XX" -eq 0 ] || { verdict=FAILED; fail "$label, $mode: $S5XX 5xx responses"; }
    [ "$answered" -eq "$REQUESTS" ] || { verdict=FAILED; fail "$label, $mode: wrk counted $REQUESTS requests but $answered statuses"; }
    [ "$end_kib" -le "$limit_kib" ] || { verdict=FAILED; fail "$label, $mode: RSS grew to $(mib "$end_kib") MiB (limit $(mib "$limit_kib") MiB)"; }
    if [ "$mode" = churn ] && [ "$accepted" -lt "$REQUESTS" ]; then
      verdict=FAILED
      fail "$label, churn: only $accepted connections accepted for $REQUESTS requests"
    fi
    local mode_label="keep-alive"
    [ "$mode" = churn ] && mode_label="new connection per request"
    SOAK_ROWS+=("| $label | $mode_label | $(thousands "$REQUESTS") | $(thousands "$RATE") | $(milliseconds "$P50") | $(milliseconds "$P99") | $(milliseconds "$MAX") | $E_CONNECT / $E_READ / $E_WRITE / $E_TIMEOUT | $bad | $S5XX | $(thousands "$accepted") | $(mib "$start_kib") → $(mib "$top_kib") → $(mib "$end_kib") | $verdict |")
    printf '  %-26s %9d requests %8.0f/s  p99 %7s ms  errors %d  non-2xx/3xx %d  5xx %d  RSS %s → %s → %s MiB  %s\n' \
      "$mode_label" "$REQUESTS" "$RATE" "$P99" "$errors" "$bad" "$S5XX" \
      "$(mib "$start_kib")" "$(mib "$top_kib")" "$(mib "$end_kib")" "$verdict" >&2
  done

  local logged_errors warnings
  logged_errors=$(grep -c ' ERROR \|panicked' "$PENNY_LOG" || true)
  warnings=$(grep -c ' WARN ' "$PENNY_LOG" || true)
  if [ "$logged_errors" -ne 0 ]; then
    grep -m 5 ' ERROR \|panicked' "$PENNY_LOG" >&2
    fail "$label: Penny logged $logged_errors errors"
  fi
  stop_penny
  [ "$PENNY_EXIT" = 0 ] || fail "$label: Penny exited $PENNY_EXIT on SIGTERM"
  SOAK_NOTES+=("$label: RSS $(mib "$launch_kib") MiB at launch, $(mib "$baseline_kib") MiB after the warm-up; $logged_errors errors and $warnings warnings logged; exit $PENNY_EXIT on SIGTERM.")
}

SOAK_NOTES=()
if wanted soak; then
  started=$(now)
  for backend in $SOAK_BACKENDS; do
    case "$backend" in
      bundled) soak_backend bundled "bundled demo" "" ;;
      sqlite)
        SQLITE_URL="sqlite://$WORK/penny.sqlite"
        DATABASE_URL=$SQLITE_URL "$PENNY" init-db >&2
        soak_backend sqlite "SQLite file" "$SQLITE_URL"
        ;;
      postgres)
        if [ "$PG_RUNNING" != 1 ]; then
          start_postgres
          psql_on postgres -c "CREATE DATABASE penny" >/dev/null
          DATABASE_URL=$(pg_url penny) "$PENNY" init-db >&2
          echo "PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT (scram-sha-256 over TCP, sslmode=disable)" >&2
        fi
        soak_backend postgres "PostgreSQL" "$(pg_url penny)"
        ;;
    esac
  done
  SOAK_TIME=$(since "$started")
fi

# ---------------------------------------------------------------------------------------------
# Faults.
FAULTS_STATUS=
if wanted faults; then
  say "faults: cargo test --release --test reliability -- --nocapture --test-threads=1"
  started=$(now)
  FAULTS_STATUS=0
  CI=true cargo test --release --test reliability -- --nocapture --test-threads=1 \
    > "$WORK/faults.out" 2> "$WORK/faults.err" || FAULTS_STATUS=$?
  FAULTS_TIME=$(since "$started")
  grep -v '^$' "$WORK/faults.out" >&2 || true
  if [ "$FAULTS_STATUS" != 0 ]; then
    tail -n 40 "$WORK/faults.err" >&2
    fail "faults: cargo test --release --test reliability exited $FAULTS_STATUS"
  fi
  # "  normal clients during: N requests {...}, p50 X ms, p99 Y ms, max Z ms"
  p99=$(awk '/normal clients during:/ {
               for (i = 1; i < NF; i++) if ($i == "p99") print $(i + 1) }' "$WORK/faults.out")
  if [ -z "$p99" ]; then
    fail "faults: no p99 of the normal clients during slowloris in the tests' output"
  elif awk -v p99="$p99" -v max="$SLOWLORIS_P99_MS" 'BEGIN { exit !(p99 >= max) }'; then
    fail "faults: the normal clients' p99 during slowloris was $p99 ms (must be under $SLOWLORIS_P99_MS ms)"
  fi
fi

# ---------------------------------------------------------------------------------------------
# Scale-out rehearsal: a script of its own, which starts (and stops) everything it needs.
SCALEOUT_STATUS=
if wanted scaleout; then
  say "scale-out rehearsal: bash reliability/scaleout.sh$([ "$QUICK" = 1 ] && echo " --quick")"
  started=$(now)
  SCALEOUT_STATUS=0
  scaleout_args=()
  [ "$QUICK" = 1 ] && scaleout_args=(--quick)
  SCALEOUT_CONNS=$SOAK_CONNS bash "$ROOT/reliability/scaleout.sh" "${scaleout_args[@]}" \
    > "$WORK/scaleout.md" || SCALEOUT_STATUS=$?
  SCALEOUT_TIME=$(since "$started")
  [ "$SCALEOUT_STATUS" = 0 ] || fail "scale-out: reliability/scaleout.sh exited $SCALEOUT_STATUS"
fi

# ---------------------------------------------------------------------------------------------
say "report"
LOAD_AT_END=$(cut -d' ' -f1-3 /proc/loadavg)
report "## Penny reliability run"
report ""
report "**Machine:** $CORES cores (nproc), $CPU_MODEL, $MEM_TOTAL RAM; $(uname -sr); load average $LOAD_AT_START at the start, $LOAD_AT_END at the end."
report "**Run:** $(date -u '+%Y-%m-%d %H:%M UTC'), penny $COMMIT, $MODE, \`bash reliability/run.sh$([ "$QUICK" = 1 ] && echo " --quick")\`; $PINNING; wall time $(since "$RUN_STARTED" | awk '{ printf "%.0f", $1 }') s."
if wanted soak; then
  report ""
  report "### Soak: wrk -t1 -c$SOAK_CONNS, ${SOAK_SECS} s per run (after ${SOAK_WARMUP_SECS} s warm-ups), --timeout 2s, the mix in reliability/soak.lua"
  report ""
  report "| Backend | Connections | Requests | Rate (/s) | p50 | p99 | Max | Socket errors (connect / read / write / timeout) | Non-2xx/3xx | 5xx | TCP connections accepted | RSS start → peak → end (MiB) | Result |"
  report "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |"
  for row in "${SOAK_ROWS[@]}"; do report "$row"; done
  report ""
  for note in "${SOAK_NOTES[@]}"; do report "- $note"; done
  report "- A run fails on any socket error, non-2xx/3xx or 5xx, or if RSS at its end is more than ${RSS_GROWTH_PCT} % (at least 2 MiB) above the RSS after the warm-up. TCP connections accepted are the machine's (/proc/net/snmp PassiveOpens) during the run: for churn they must be at least the requests. Soak time ${SOAK_TIME%.*} s."
fi
if wanted faults; then
  report ""
  report "### Faults: \`cargo test --release --test reliability -- --nocapture --test-threads=1\` ($([ "$FAULTS_STATUS" = 0 ] && echo passed || echo "FAILED, exit $FAULTS_STATUS"), ${FAULTS_TIME%.*} s)"
  report ""
  report '```'
  while IFS= read -r line; do report "$line"; done < <(grep -v '^$' "$WORK/faults.out")
  report '```'
fi
if wanted scaleout; then
  report ""
  if [ -s "$WORK/scaleout.md" ]; then
    # Its summary, one heading level down, without the machine it shares with this one.
    while IFS= read -r line; do
      case "$line" in
        "## "*) report "#$line (${SCALEOUT_TIME%.*} s)" ;;
        "**Machine:**"*) ;;
        "**Result:"*) report "**Scale-out result:${line#"**Result:"}" ;;
        *) report "$line" ;;
      esac
    done < "$WORK/scaleout.md"
  else
    report "### Scale-out rehearsal: FAILED, exit $SCALEOUT_STATUS, no summary (its progress above says why)"
  fi
fi
report ""
if [ ${#FAILURES[@]} -eq 0 ]; then
  report "**Result: every check passed.**"
else
  report "**Result: FAILED.**"
  for failure in "${FAILURES[@]}"; do report "- $failure"; done
fi

mkdir -p "$ROOT/target/reliability"
REPORT=$ROOT/target/reliability/report-$(date -u +%Y%m%d-%H%M%S).md
printf '%s\n' "${REPORT_LINES[@]}" > "$REPORT"
echo "(saved as $REPORT)" >&2
echo >&2
cat "$REPORT"
[ ${#FAILURES[@]} -eq 0 ]
