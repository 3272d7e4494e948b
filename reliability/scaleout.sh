#!/usr/bin/env bash
# Scale-out rehearsal: what a platform such as Heroku does to a growing app every day, on this
# machine with real parts, in one command:
#
#     bash reliability/scaleout.sh           # the full run: about 3 minutes on 2 cores
#     bash reliability/scaleout.sh --quick   # a smoke run: about 1 minute
#
# The set-up: DYNOS Penny processes (release build; the dynos) on fixed ports behind HAProxy,
# all of them reaching a throwaway PostgreSQL (max_connections = 20, a small plan's limit)
# through one PgBouncer in transaction mode (DATABASE_URL with ?pgbouncer=true). Everything
# listens on 127.0.0.1 only. wrk sends CONNS connections through HAProxy, alternating
# /searchresults?author=Ker and /api/books?author=Ker (reliability/scaleout.lua), while a
# superuser connection made straight to PostgreSQL counts its client connections every 0.5 s.
#
#   a) steady: STEADY_SECS of load. Passes with 0 failed requests (a wrk socket error or any
#      non-2xx answer is a failure) and PostgreSQL's connections never above its limit.
#   b) rolling restart: under ROLL_SECS of the same load, each dyno in turn gets SIGTERM (it
#      stops accepting, finishes what is in flight and exits 0), a replacement starts on the
#      same port, and the next dyno goes once the replacement answers /healthz and HAProxy has
#      it up again; repeated while the load lasts (at least one full round). Passes with 0
#      failed requests, every old dyno exiting 0 after a clean drain, connections within limit.
#   c) PgBouncer restarted: under PGB_SECS of load, PgBouncer is stopped (SIGTERM), started
#      again PGB_GAP_SECS later. Failures are expected while it is away; the run reports how
#      many and the error window (first to last failed request, from HAProxy's log), and
#      passes if every dyno, not restarted, answers /healthz and a search with 200 within
#      RECOVERY_SECS of PgBouncer being back, and no request fails after that.
#
# The capacity rule: without a pooler, every dyno's pool is its own server connections, so
# DYNOS × PENNY_POOL_SIZE (+ one more dyno's pool during a rolling restart, + one-off
# processes) must fit the plan's max_connections less the superuser reserve: 4 × 10 = 40 would
# not fit 20. With PgBouncer, the dynos' pools are client connections to PgBouncer (cheap; the
# bound is its max_client_conn) and the server connections are PgBouncer's alone, at most
# max_db_connections, however many dynos there are; requests beyond that wait in PgBouncer's
# queue instead of failing.
#
# Prints one markdown summary on stdout (progress on stderr), saved under target/reliability/.
# Exits non-zero if a) or b) lose a request, connections exceed the limit, or c) does not
# recover within RECOVERY_SECS. Everything it starts is stopped when it exits.
#
# Settings (environment; --quick changes the defaults shown second):
#   STEADY_SECS      a): seconds of load                               60 | 10
#   ROLL_SECS        b): seconds of load, rolling restarts meanwhile   60 | 25
#   PGB_SECS         c): seconds of load                               30 | 15
#   PGB_GAP_SECS     c): seconds PgBouncer stays away                  1
#   RECOVERY_SECS    c): bound on every dyno's recovery                10
#   SCALEOUT_CONNS   wrk's connections                                 256
#   DYNOS            Penny processes                                   4
#   PENNY_POOL_SIZE  each Penny's pool (of PgBouncer client conns)     10 (Penny's default)
#   PG_MAX_CONNECTIONS PostgreSQL's max_connections                    20
#   PGB_SERVER_CONNS PgBouncer's default_pool_size and max_db_connections   15
#   SCALEOUT_KEEP_LOGS=1 keeps every log under target/reliability/ (a failed run's always are)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRIPT=reliability/scaleout.sh
# HAProxy and PgBouncer live in /usr/sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
parse_options "$@"
if [ "$QUICK" = 1 ]; then
  d_steady=10 d_roll=25 d_pgb=15 MODE="quick (--quick)"
else
  d_steady=60 d_roll=60 d_pgb=30 MODE="full"
fi
STEADY_SECS=${STEADY_SECS:-$d_steady}
ROLL_SECS=${ROLL_SECS:-$d_roll}
PGB_SECS=${PGB_SECS:-$d_pgb}
PGB_GAP_SECS=${PGB_GAP_SECS:-1}
RECOVERY_SECS=${RECOVERY_SECS:-10}
CONNS=${SCALEOUT_CONNS:-256}
DYNOS=${DYNOS:-4}
POOL_SIZE=${PENNY_POOL_SIZE:-10}
PG_MAX_CONNECTIONS=${PG_MAX_CONNECTIONS:-20}
PGB_SERVER_CONNS=${PGB_SERVER_CONNS:-15}
for number in STEADY_SECS ROLL_SECS PGB_SECS PGB_GAP_SECS RECOVERY_SECS CONNS DYNOS POOL_SIZE \
  PG_MAX_CONNECTIONS PGB_SERVER_CONNS; do
  [[ ${!number} =~ ^[1-9][0-9]*$ ]] || { echo "$SCRIPT: $number must be a whole number ≥ 1 (it is '${!number}')" >&2; exit 2; }
done
[ "$ROLL_SECS" -ge 20 ] || { echo "$SCRIPT: ROLL_SECS must be at least 20, for a full round" >&2; exit 2; }
[ "$PGB_SECS" -ge $((PGB_GAP_SECS + 10)) ] || { echo "$SCRIPT: PGB_SECS must be at least PGB_GAP_SECS + 10" >&2; exit 2; }
# PostgreSQL keeps superuser_reserved_connections (3 by default) for superusers: the rest is
# what an ordinary role, PgBouncer's, may ever have.
PG_RESERVED=3
PG_ORDINARY=$((PG_MAX_CONNECTIONS - PG_RESERVED))
[ "$PGB_SERVER_CONNS" -le "$PG_ORDINARY" ] ||
  { echo "$SCRIPT: PGB_SERVER_CONNS ($PGB_SERVER_CONNS) must fit max_connections less the reserve ($PG_ORDINARY)" >&2; exit 2; }

# Penny is configured here only.
unset DATABASE_URL PORT RUST_LOG PGSSLMODE PGSSLROOTCERT PENNY_PGBOUNCER PENNY_POOL_SIZE


start_run scaleout

FAILURES=()
fail() { FAILURES+=("$*"); printf '  FAILED: %s\n' "$*" >&2; }
thousands() { printf '%.0f' "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }
secs() { awk -v s="$1" 'BEGIN { printf "%.1f", s }'; }

# ---------------------------------------------------------------------------------------------
say "tools"
install_missing wrk:wrk haproxy:haproxy pgbouncer:pgbouncer taskset:util-linux curl:curl \
  runuser:util-linux psql:postgresql-client
find_postgres postgres
pin_cores
wanted_files=$((CONNS * 4 + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$wanted_files" ]; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$wanted_files" ] ||
    die "ulimit -n is $(ulimit -n); $CONNS connections need about $wanted_files"
fi
HAPROXY_VERSION=$(haproxy -v | awk 'NR == 1 { print $3 }')
PGBOUNCER_VERSION=$(pgbouncer --version | awk 'NR == 1 { print $2 }')
echo "ok ($PGBIN, HAProxy $HAPROXY_VERSION, PgBouncer $PGBOUNCER_VERSION, $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2))" >&2

say "build (release)"
cargo build --release --quiet
PENNY=$ROOT/target/release/penny
[ -x "$PENNY" ] || die "cargo build --release made no $PENNY"
describe_machine

# ---------------------------------------------------------------------------------------------
say "PostgreSQL (max_connections = $PG_MAX_CONNECTIONS), PgBouncer, $DYNOS dynos, HAProxy"
start_postgres
psql_on postgres -c "ALTER SYSTEM SET max_connections = $PG_MAX_CONNECTIONS" \
  -c "ALTER SYSTEM SET superuser_reserved_connections = $PG_RESERVED" >/dev/null
as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -w -t 30 -l "$PGDIR/server.log" restart >/dev/null ||
  die "PostgreSQL did not restart with max_connections = $PG_MAX_CONNECTIONS"
[ "$(psql_on postgres -At -c 'SHOW max_connections')" = "$PG_MAX_CONNECTIONS" ] ||
  die "max_connections did not take"
# Penny's own role: not a superuser, so PostgreSQL's superuser reserve stays free for the
# sampler below, as it stays free on a hosted plan for the provider's own tools.
APP_PASSWORD="app-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
psql_on postgres -c "CREATE ROLE penny LOGIN PASSWORD '$APP_PASSWORD'" \
  -c "CREATE DATABASE penny OWNER penny" >/dev/null
# The schema goes in straight to PostgreSQL: changing it needs a session of its own, which
# PgBouncer's transaction mode does not give (Penny refuses to, through it).
DATABASE_URL="postgres://penny:$APP_PASSWORD@127.0.0.1:$PG_PORT/penny?sslmode=disable" \
  "$PENNY" init-db >&2

# PgBouncer runs as the postgres OS user (it refuses root); its files live in a directory
# that user owns.
PGB_DIR=$WORK/pgbouncer
mkdir -p "$PGB_DIR"
PGB_PORT=$(free_port)
printf '"penny" "%s"\n' "$APP_PASSWORD" > "$PGB_DIR/userlist.txt"
cat > "$PGB_DIR/pgbouncer.ini" <<EOF
; Written by $SCRIPT.
[databases]
penny = host=127.0.0.1 port=$PG_PORT dbname=penny

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $PGB_DIR/userlist.txt
logfile = $PGB_DIR/pgbouncer.log
; SHOW POOLS on the admin console, for the figures.
stats_users = penny
pidfile = $PGB_DIR/pgbouncer.pid
; A server connection serves one transaction at a time, then goes back to the pool: each
; query Penny sends is its own transaction, so a few server connections serve many clients.
pool_mode = transaction
; The server side: at most $PGB_SERVER_CONNS connections to PostgreSQL, whatever the number of
; dynos. max_connections $PG_MAX_CONNECTIONS less the superuser reserve ($PG_RESERVED) leaves $PG_ORDINARY for ordinary
; roles; the rest of them stays free for a one-off process (penny init-db on a deploy).
default_pool_size = $PGB_SERVER_CONNS
max_db_connections = $PGB_SERVER_CONNS
max_user_connections = $PGB_SERVER_CONNS
reserve_pool_size = 0
; The client side: every dyno's pool, plus one more dyno's during a rolling restart.
max_client_conn = $(( (DYNOS + 2) * POOL_SIZE + 50 ))
EOF
if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$PGB_DIR"; fi
chmod 700 "$PGB_DIR"

PGB_PID=
# Starts PgBouncer and waits (at most 10 s) until it answers a query. runuser is started here
# itself, not through as_postgres: a function in the background is a subshell, and SIGTERM to
# that (on exit, from stop_started) would leave PgBouncer running; runuser passes it on.
start_pgbouncer() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- pgbouncer "$PGB_DIR/pgbouncer.ini" >> "$PGB_DIR/stdout.log" 2>&1 &
  else
    pgbouncer "$PGB_DIR/pgbouncer.ini" >> "$PGB_DIR/stdout.log" 2>&1 &
  fi
  PGB_PID=$!
  PIDS+=("$PGB_PID")
  local _
  for _ in $(seq 1 100); do
    if PGPASSWORD=$APP_PASSWORD "$PGBIN/psql" -X -q -At \
         "host=127.0.0.1 port=$PGB_PORT user=penny dbname=penny sslmode=disable connect_timeout=1" \
         -c 'SELECT 1' >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$PGB_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$PGB_DIR/pgbouncer.log" "$PGB_DIR/stdout.log" >&2 || true
  die "PgBouncer did not start"
}
# Stops PgBouncer with SIGTERM (an immediate shutdown in PgBouncer 1.18: clients and server
# connections are closed at once, as when its host goes away) and waits for it (at most 10 s).
# Sets PGB_STOPPED, the time of the signal.
stop_pgbouncer() {
  local pid _
  pid=$(cat "$PGB_DIR/pgbouncer.pid" 2>/dev/null || true)
  [ -n "$pid" ] || pid=$(pgrep -P "$PGB_PID" | head -n 1)
  [ -n "$pid" ] || die "no PgBouncer process to stop"
  kill -TERM "$pid"
  # Bash's own clock: no process to start between the signal and the reading.
  PGB_STOPPED=${EPOCHREALTIME:-$(now)}
  PGB_STOPPED=${PGB_STOPPED/,/.}
  for _ in $(seq 1 100); do
    kill -0 "$PGB_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$PGB_PID" 2>/dev/null && die "PgBouncer did not stop within 10 s of SIGTERM"
  wait "$PGB_PID" 2>/dev/null || true
  forget_pid "$PGB_PID"
}
# PgBouncer's pool for Penny: client connections (active, waiting), server connections in all,
# the longest wait in milliseconds.
pgbouncer_pools() {
  PGPASSWORD=$APP_PASSWORD "$PGBIN/psql" -X -q -A -F ' ' -P footer=off \
    "host=127.0.0.1 port=$PGB_PORT user=penny dbname=pgbouncer sslmode=disable connect_timeout=2" \
    -c 'SHOW POOLS' 2>/dev/null |
    awk 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
         $col["database"] == "penny" {
           printf "%d %d %d %.1f\n", $col["cl_active"], $col["cl_waiting"],
             $col["sv_active"] + $col["sv_idle"] + $col["sv_used"] + $col["sv_tested"] + $col["sv_login"],
             ($col["maxwait"] + $col["maxwait_us"] / 1e6) * 1000 }'
}
start_pgbouncer
echo "PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT, PgBouncer $PGBOUNCER_VERSION on 127.0.0.1:$PGB_PORT" >&2

APP_URL="postgres://penny:$APP_PASSWORD@127.0.0.1:$PGB_PORT/penny?sslmode=disable&pgbouncer=true"

# The dynos: fixed ports, so that a replacement takes its predecessor's place behind HAProxy.
DYNO_PORT=() DYNO_PID=() DYNO_LOG=() DYNO_STARTS=()
for ((i = 1; i <= DYNOS; i++)); do
  port=$(free_port)
  while [[ " ${DYNO_PORT[*]} $PGB_PORT $PG_PORT " == *" $port "* ]]; do port=$(free_port); done
  DYNO_PORT[i]=$port
  DYNO_STARTS[i]=0
done

# Waits (at most $2 s) until GET $1 answers 200; returns 1 otherwise.
await_200() {
  local url=$1 deadline
  deadline=$(awk -v n="$(now)" -v s="$2" 'BEGIN { printf "%.3f", n + s }')
  while awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n < d) }'; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

start_dyno() {
  local i=$1
  PENNY_BIND=127.0.0.1:${DYNO_PORT[i]} start_penny "$APP_URL" PENNY_POOL_SIZE="$POOL_SIZE"
  DYNO_PID[i]=$PENNY_PID
  DYNO_LOG[i]=$PENNY_LOG
  DYNO_STARTS[i]=$((DYNO_STARTS[i] + 1))
  await_200 "http://127.0.0.1:${DYNO_PORT[i]}/healthz" 30 ||
    { tail -n 20 "$PENNY_LOG" >&2; die "dyno $i did not answer /healthz with 200 within 30 s"; }
}
for ((i = 1; i <= DYNOS; i++)); do start_dyno "$i"; done
echo "$DYNOS dynos on ports ${DYNO_PORT[*]}, PENNY_POOL_SIZE=$POOL_SIZE each, through PgBouncer" >&2

LB_PORT=$(free_port)
STATS_PORT=$(free_port)
HAPROXY_CFG=$WORK/haproxy.cfg
HAPROXY_LOG=$WORK/haproxy.log
{
  cat <<EOF
# Written by $SCRIPT: $DYNOS dynos behind one load balancer, and a rolling restart of them
# that must lose no request.
global
    # Log lines go to stdout (a file), each with its time to the microsecond.
    log stdout format iso local0 info
    maxconn 4096
    # One thread is plenty at this rate, and leaves the second core to the rest.
    nbthread 1

defaults
    mode http
    log global
    option httplog
    # Only what went wrong is logged: a request that failed (an error, a 5xx, one cut short)
    # and each server's changes of state. A failed request's line starts with its accept time
    # (epoch seconds and milliseconds); the rehearsal reads its error windows from there.
    option dontlog-normal
    option log-health-checks
    log-format "%Ts.%ms %ci:%cp %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %ac/%fc/%bc/%sc/%rc %{+Q}r"
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout queue 5s
    timeout check 2s
    # A request that fails on the way to a dyno is sent again, up to 3 times...
    retries 3
    # ...each time to another dyno (redispatch on every retry), not to the one that failed.
    # Without retries and redispatch, 9 restarts in 25 s lost 993 requests.
    option redispatch 1
    # ...on two failures, which a draining dyno causes: conn-failure, the connection refused
    # (a dyno that has stopped listening, until the health checks take it out), and
    # empty-response, a connection closed with not one byte of an answer. The second happens
    # even with a new connection per request (below): connections still in a draining dyno's
    # listen queue are reset when it closes its listener (HAProxy's "response errors", a few
    # dozen a run). With conn-failure alone, 18 restarts in 40 s lost 99 requests as
    # socket errors, and HAProxy logged none of them. Sending these again is safe: Penny's
    # pages are GETs that only read, and HAProxy retries only a request it still holds whole.
    # A 503 is not retried: it is an answer, and during a database outage every dyno gives it.
    retry-on conn-failure empty-response
    # Keep-alive towards the client (wrk), but a new connection to the dyno for each request,
    # closed after its response: no idle connection to a dyno is ever kept, so there is none
    # for a draining dyno to close just as HAProxy picks it for the next request. Keep-alive to
    # the dynos (http-reuse always) lost 49 requests in 9 restarts to that race with
    # conn-failure retries alone, and none with empty-response retries too: it depends on the retry, this does not.
    # The cost is a TCP handshake on loopback per request.
    option http-server-close
    http-reuse never

frontend web
    bind 127.0.0.1:$LB_PORT
    default_backend dynos

backend dynos
    balance roundrobin
    # A dyno is sent traffic only while GET /healthz answers 200: Penny's health check pings
    # the database through its pool, so a dyno that cannot reach it is taken out too.
    option httpchk GET /healthz
    http-check expect status 200
    # Checked every 0.5 s: down after 2 failed checks (a draining dyno refuses connections,
    # so within about 1 s; requests sent to it meanwhile are retried elsewhere, above), up
    # again after 2 good ones (its replacement, about 1 s after it answers).
    default-server inter 500ms downinter 500ms fall 2 rise 2
EOF
  for ((i = 1; i <= DYNOS; i++)); do
    echo "    server dyno$i 127.0.0.1:${DYNO_PORT[i]} check"
  done
  cat <<EOF

# HAProxy's counters and each server's state, as CSV on GET /;csv (127.0.0.1 only).
listen stats
    bind 127.0.0.1:$STATS_PORT
    stats enable
    stats uri /
EOF
} > "$HAPROXY_CFG"
haproxy -c -q -f "$HAPROXY_CFG" || die "HAProxy refused its configuration ($HAPROXY_CFG)"
haproxy -db -f "$HAPROXY_CFG" > "$HAPROXY_LOG" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")

# The CSV line of server $1 (dyno1…, or BACKEND), fields by name: lb_stat NAME FIELD.
STATS=
read_stats() { STATS=$(curl -s --max-time 2 "http://127.0.0.1:$STATS_PORT/;csv" || true); }
lb_stat() {
  printf '%s\n' "$STATS" | awk -F, -v sv="$1" -v f="$2" '
    NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == "dynos" && $2 == sv { v = $col[f]; print (v == "" ? 0 : v); exit }'
}
# Waits (at most $2 s) until HAProxy has server $1 UP.
await_up() {
  local _
  for _ in $(seq 1 $(($2 * 10))); do
    read_stats
    [ "$(lb_stat "$1" status)" = UP ] && return 0
    sleep 0.1
  done
  return 1
}
for ((i = 1; i <= DYNOS; i++)); do
  await_up "dyno$i" 30 || { cat "$HAPROXY_LOG" >&2; die "HAProxy did not have dyno$i up within 30 s"; }
done
await_200 "http://127.0.0.1:$LB_PORT/searchresults?author=Ker" 5 || die "no 200 through HAProxy"
echo "HAProxy $HAPROXY_VERSION on 127.0.0.1:$LB_PORT, all $DYNOS dynos up" >&2

# ---------------------------------------------------------------------------------------------
# Measuring.

# Counts PostgreSQL's client connections every 0.5 s, over one superuser connection made
# straight to PostgreSQL (so in the reserve, and counted itself): TIME, all client backends,
# those of Penny's role. At most $1 s of samples; stop_sampler ends it sooner.
SAMPLER=
start_sampler() {
  SAMPLES=$WORK/connections-$2
  local rounds=$(($1 * 2 + 20))
  rm -f "$WORK/stop-sampler"
  (for ((n = 0; n < rounds; n++)); do
     [ -e "$WORK/stop-sampler" ] && break
     echo "SELECT extract(epoch FROM clock_timestamp())::numeric(16,3), count(*), count(*) FILTER (WHERE usename = 'penny') FROM pg_stat_activity WHERE backend_type = 'client backend';"
     sleep 0.5
   done) | psql_on postgres -At -F ' ' > "$SAMPLES" 2>&1 &
  SAMPLER=$!
  PIDS+=("$SAMPLER")
}
# The loop ends at its next turn, and psql (SAMPLER) when its input does.
stop_sampler() {
  touch "$WORK/stop-sampler"
  wait "$SAMPLER" 2>/dev/null || true
  forget_pid "$SAMPLER"
  MAX_ALL=$(awk 'NF == 3 && $2 > m { m = $2 } END { print m + 0 }' "$SAMPLES")
  MAX_APP=$(awk 'NF == 3 && $3 > m { m = $3 } END { print m + 0 }' "$SAMPLES")
  N_SAMPLES=$(awk 'NF == 3 { n++ } END { print n + 0 }' "$SAMPLES")
}

LOAD_PID=
start_load() {
  LOAD_OUT=$WORK/wrk-$2.out
  "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNS" -d"$1"s --timeout 5s --latency \
    -s "$ROOT/reliability/scaleout.lua" "http://127.0.0.1:$LB_PORT" > "$LOAD_OUT" 2>&1 &
  LOAD_PID=$!
  PIDS+=("$LOAD_PID")
  LOAD_STARTED=$(now)
}
finish_load() {
  local status=0 line
  wait "$LOAD_PID" || status=$?
  forget_pid "$LOAD_PID"
  [ "$status" = 0 ] || { cat "$LOAD_OUT" >&2; die "wrk failed"; }
  line=$(grep '^SCALEOUT' "$LOAD_OUT") || { cat "$LOAD_OUT" >&2; die "wrk printed no summary"; }
  IFS=$'\t' read -r _ REQUESTS RATE P50 P99 MAX E_CONNECT E_READ E_WRITE E_TIMEOUT S2XX SOTHER <<< "$line"
  SOCKET_ERRORS=$((E_CONNECT + E_READ + E_WRITE + E_TIMEOUT))
  FAILED=$((SOCKET_ERRORS + SOTHER))
  echo "  wrk: $REQUESTS requests ($(thousands "$RATE")/s, p50 $P50 ms, p99 $P99 ms, max $MAX ms); socket errors $E_CONNECT/$E_READ/$E_WRITE/$E_TIMEOUT (connect/read/write/timeout), non-2xx $SOTHER" >&2
}

# HAProxy's backend counters before a scenario, to report the scenario's own.
mark_stats() {
  read_stats
  MARK_RETRIES=$(lb_stat BACKEND wretr) MARK_REDISPATCHES=$(lb_stat BACKEND wredis)
  MARK_5XX=$(lb_stat BACKEND hrsp_5xx) MARK_ECON=$(lb_stat BACKEND econ) MARK_ERESP=$(lb_stat BACKEND eresp)
  MARK_LOG_LINES=$(wc -l < "$HAPROXY_LOG")
  MARK_SERVED=()
  for ((i = 1; i <= DYNOS; i++)); do MARK_SERVED[i]=$(lb_stat "dyno$i" stot); done
}
since_mark() {
  read_stats
  RETRIES=$(( $(lb_stat BACKEND wretr) - MARK_RETRIES ))
  REDISPATCHES=$(( $(lb_stat BACKEND wredis) - MARK_REDISPATCHES ))
  LB_5XX=$(( $(lb_stat BACKEND hrsp_5xx) - MARK_5XX ))
  LB_ECON=$(( $(lb_stat BACKEND econ) - MARK_ECON ))
  LB_ERESP=$(( $(lb_stat BACKEND eresp) - MARK_ERESP ))
  SERVED=""
  for ((i = 1; i <= DYNOS; i++)); do
    SERVED+="${SERVED:+ / }$(thousands $(( $(lb_stat "dyno$i" stot) - MARK_SERVED[i] )))"
  done
  # HAProxy's log lines for requests (they start with an epoch time) since the mark. Fields:
  # 1 ISO time, 2 accept time, 3 client, 4 backend/server, 5 timers, 6 status, 7 bytes,
  # 8 termination state, 9 connection counts and retries ("+" when redispatched), 10… request.
  # A failed request is one answered with no 2xx or 3xx status, except the empty connection
  # that wrk opens and closes unused when it stops (<BADREQ>, closed by the client: CR or cR).
  tail -n +"$((MARK_LOG_LINES + 1))" "$HAPROXY_LOG" | grep -E '^[^ ]+ [0-9]{10}\.[0-9]{3} ' > "$WORK/logged-$1.log" || true
  awk '$6 !~ /^[23]/ && !($10 == "\"<BADREQ>\"" && $8 ~ /^[Cc]R/)' "$WORK/logged-$1.log" > "$WORK/failed-$1.log"
  LB_FAILED=$(wc -l < "$WORK/failed-$1.log")
  # Requests that a retry saved: answered 2xx after going to a second dyno.
  LB_RESCUED=$(awk '$6 ~ /^2/ && $9 ~ /\/\+?[1-9][0-9]*$/' "$WORK/logged-$1.log" | wc -l)
  echo "  HAProxy: retries $RETRIES, redispatches $REDISPATCHES, connection errors $LB_ECON, response errors $LB_ERESP, 5xx $LB_5XX; failed requests logged $LB_FAILED, saved by a retry $LB_RESCUED; served by dyno 1…$DYNOS: $SERVED" >&2
}

# Errors Penny logged since line $2 of log $1.
penny_errors() { tail -n +"$(($2 + 1))" "$1" | grep -c ' ERROR \|panicked' || true; }
penny_warnings() { tail -n +"$(($2 + 1))" "$1" | grep -c ' WARN ' || true; }
log_marks() {
  LOG_MARK=()
  for ((i = 1; i <= DYNOS; i++)); do LOG_MARK[i]=$(wc -l < "${DYNO_LOG[i]}"); done
}

# PostgreSQL refusing a connection for want of a slot leaves a FATAL in its log.
refusals() { grep -c 'too many clients\|remaining connection slots are reserved' "$PGDIR/server.log" || true; }

check_connections() {
  local label=$1
  echo "  PostgreSQL client connections, $N_SAMPLES samples: at most $MAX_ALL in all (limit $PG_MAX_CONNECTIONS), $MAX_APP of them Penny's through PgBouncer (limit $PGB_SERVER_CONNS)" >&2
  [ "$N_SAMPLES" -ge 2 ] || fail "$label: the connection sampler took only $N_SAMPLES samples"
  [ "$MAX_ALL" -le "$PG_MAX_CONNECTIONS" ] || fail "$label: $MAX_ALL PostgreSQL connections, over max_connections ($PG_MAX_CONNECTIONS)"
  [ "$MAX_APP" -le "$PGB_SERVER_CONNS" ] || fail "$label: $MAX_APP server connections from PgBouncer, over its $PGB_SERVER_CONNS"
  local refused
  refused=$(refusals)
  [ "$refused" -eq 0 ] || fail "$label: PostgreSQL refused $refused connections for want of a slot"
}

ROWS=()
row() { ROWS+=("$*"); }
NOTES=()

# ---------------------------------------------------------------------------------------------
say "a) steady: ${STEADY_SECS} s, wrk -c$CONNS through HAProxy"
mark_stats
log_marks
start_sampler "$STEADY_SECS" steady
start_load "$STEADY_SECS" steady
# Halfway through, PgBouncer's view: every dyno's pool on its client side, its own few
# connections on the server side.
sleep "$(awk -v s="$STEADY_SECS" 'BEGIN { print s / 2 }')"
read -r CL_ACTIVE CL_WAITING SV_ALL MAXWAIT <<< "$(pgbouncer_pools || true)"
echo "  PgBouncer halfway: $((CL_ACTIVE + CL_WAITING)) client connections ($CL_ACTIVE active, $CL_WAITING waiting for a server), $SV_ALL server connections, longest wait $MAXWAIT ms" >&2
finish_load
stop_sampler
since_mark steady
verdict=ok
[ "$FAILED" -eq 0 ] || { verdict=FAILED; fail "a) steady: $FAILED failed requests ($SOCKET_ERRORS socket errors, $SOTHER non-2xx)"; }
[ $((S2XX + SOTHER)) -eq "$REQUESTS" ] || { verdict=FAILED; fail "a) steady: wrk counted $REQUESTS requests but $((S2XX + SOTHER)) statuses"; }
[ "$LB_FAILED" -eq 0 ] || { verdict=FAILED; fail "a) steady: HAProxy logged $LB_FAILED failed requests"; head -n 5 "$WORK/failed-steady.log" >&2; }
check_connections "a) steady"
[[ " ${FAILURES[*]} " == *"a) steady"* ]] && verdict=FAILED
for ((i = 1; i <= DYNOS; i++)); do
  errors=$(penny_errors "${DYNO_LOG[i]}" "${LOG_MARK[i]}")
  [ "$errors" -eq 0 ] || { verdict=FAILED; fail "a) steady: dyno $i logged $errors errors"; grep -m 3 ' ERROR \|panicked' "${DYNO_LOG[i]}" >&2; }
done
row "| a) steady, ${STEADY_SECS} s | $(thousands "$REQUESTS") | $(thousands "$RATE") | $P50 / $P99 ms | $SOCKET_ERRORS / $SOTHER | $MAX_ALL ($MAX_APP via PgBouncer) | $RETRIES / $REDISPATCHES | none | $verdict |"
NOTES+=("a) Requests served by dyno 1…$DYNOS: $SERVED. Halfway through, PgBouncer had $((CL_ACTIVE + CL_WAITING)) client connections from the dynos' pools ($CL_WAITING of them waiting for a server connection, the longest for $MAXWAIT ms) on $SV_ALL server connections.")

# ---------------------------------------------------------------------------------------------
say "b) rolling restart: ${ROLL_SECS} s, wrk -c$CONNS through HAProxy, each dyno in turn replaced"
mark_stats
start_sampler "$ROLL_SECS" roll
start_load "$ROLL_SECS" roll
sleep 3
RESTARTS=0 ROLL_FAILED=0 DRAIN_TIMES=() OUT_TIMES=()
# A restart takes a few seconds: another starts only while at least 8 s of load remain, so
# that each one is measured under load to its end.
i=1
while :; do
  elapsed=$(since "$LOAD_STARTED")
  if [ "$RESTARTS" -ge "$DYNOS" ] && awk -v e="$elapsed" -v t="$ROLL_SECS" 'BEGIN { exit !(e > t - 8) }'; then
    break
  fi
  awk -v e="$elapsed" -v t="$ROLL_SECS" 'BEGIN { exit !(e > t - 4) }' && {
    fail "b) rolling restart: the load ended before a full round of restarts (ROLL_SECS too short)"; break; }
  old_pid=${DYNO_PID[i]} old_log=${DYNO_LOG[i]}
  t0=$(now)
  kill -TERM "$old_pid"
  # Penny drains within 9 s; 15 s is the bound here.
  for _ in $(seq 1 150); do kill -0 "$old_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$old_pid" 2>/dev/null; then
    fail "b) dyno $i (pid $old_pid) had not exited 15 s after SIGTERM"
    kill -KILL "$old_pid" 2>/dev/null || true
  fi
  status=0
  wait "$old_pid" 2>/dev/null || status=$?
  forget_pid "$old_pid"
  drained=$(since "$t0")
  [ "$status" = 0 ] || { ROLL_FAILED=1; fail "b) dyno $i (pid $old_pid) exited $status on SIGTERM"; }
  grep -q 'all connections closed' "$old_log" ||
    { ROLL_FAILED=1; fail "b) dyno $i (pid $old_pid) did not log a clean drain"; tail -n 5 "$old_log" >&2; }
  errors=$(penny_errors "$old_log" 0)
  [ "$errors" -eq 0 ] || { ROLL_FAILED=1; fail "b) dyno $i (pid $old_pid) logged $errors errors"; grep -m 3 ' ERROR \|panicked' "$old_log" >&2; }
  start_dyno "$i"
  await_up "dyno$i" 30 || { ROLL_FAILED=1; fail "b) HAProxy did not have the new dyno $i up within 30 s"; }
  RESTARTS=$((RESTARTS + 1))
  DRAIN_TIMES+=("$drained")
  OUT_TIMES+=("$(since "$t0")")
  printf '  dyno %d: pid %s drained and exited %s in %.2f s; pid %s up in HAProxy %.2f s after the SIGTERM\n' \
    "$i" "$old_pid" "$status" "$drained" "${DYNO_PID[i]}" "$(since "$t0")" >&2
  i=$((i % DYNOS + 1))
  sleep 1
done
finish_load
stop_sampler
since_mark roll
verdict=ok
[ "$ROLL_FAILED" = 0 ] || verdict=FAILED
[ "$FAILED" -eq 0 ] || { verdict=FAILED; fail "b) rolling restart: $FAILED failed requests ($SOCKET_ERRORS socket errors, $SOTHER non-2xx)"; }
[ $((S2XX + SOTHER)) -eq "$REQUESTS" ] || { verdict=FAILED; fail "b) rolling restart: wrk counted $REQUESTS requests but $((S2XX + SOTHER)) statuses"; }
[ "$LB_FAILED" -eq 0 ] || { verdict=FAILED; fail "b) rolling restart: HAProxy logged $LB_FAILED failed requests"; head -n 5 "$WORK/failed-roll.log" >&2; }
before=${#FAILURES[@]}
check_connections "b) rolling restart"
[ ${#FAILURES[@]} -eq "$before" ] || verdict=FAILED
for ((i = 1; i <= DYNOS; i++)); do
  errors=$(penny_errors "${DYNO_LOG[i]}" 0)
  [ "$errors" -eq 0 ] || { verdict=FAILED; fail "b) rolling restart: the new dyno $i logged $errors errors"; }
done
max_drain=$(printf '%s\n' "${DRAIN_TIMES[@]}" | sort -n | tail -n 1)
max_out=$(printf '%s\n' "${OUT_TIMES[@]}" | sort -n | tail -n 1)
row "| b) rolling restart, ${ROLL_SECS} s, $RESTARTS restarts | $(thousands "$REQUESTS") | $(thousands "$RATE") | $P50 / $P99 ms | $SOCKET_ERRORS / $SOTHER | $MAX_ALL ($MAX_APP via PgBouncer) | $RETRIES / $REDISPATCHES | none | $verdict |"
NOTES+=("b) $RESTARTS restarts ($((RESTARTS / DYNOS)) full rounds and $((RESTARTS % DYNOS)) more): every old dyno drained and exited 0 within $(secs "$max_drain") s of SIGTERM; each replacement was back in HAProxy within $(secs "$max_out") s of its predecessor's SIGTERM. $LB_RESCUED requests sent to a dyno that had stopped listening were sent again by HAProxy to another, and answered 200 (HAProxy's counters: $RETRIES retries, $REDISPATCHES redispatches); HAProxy logged $LB_FAILED failed requests. Requests served by dyno 1…$DYNOS: $SERVED.")

# ---------------------------------------------------------------------------------------------
say "c) PgBouncer restarted: ${PGB_SECS} s, wrk -c$CONNS through HAProxy, PgBouncer away ${PGB_GAP_SECS} s"
mark_stats
log_marks
PIDS_BEFORE="${DYNO_PID[*]}"
start_sampler "$PGB_SECS" pgbouncer
start_load "$PGB_SECS" pgbouncer
sleep 5
stop_pgbouncer
t_stop=$PGB_STOPPED
sleep "$PGB_GAP_SECS"
start_pgbouncer
t_back=$(now)
echo "  PgBouncer stopped at +$(awk -v a="$LOAD_STARTED" -v b="$t_stop" 'BEGIN { printf "%.2f", b - a }') s, answering again $(awk -v a="$t_stop" -v b="$t_back" 'BEGIN { printf "%.2f", b - a }') s later" >&2
# Every dyno is asked straight (not through HAProxy), in turn every 0.1 s, until each has
# answered both /healthz and a search with 200, for at most RECOVERY_SECS.
RECOVERED=() PGB_FAILED=0
for ((i = 1; i <= DYNOS; i++)); do RECOVERED[i]=never; done
ok_200() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" || true)" = 200 ]; }
while awk -v b="$t_back" -v n="$(now)" -v r="$RECOVERY_SECS" 'BEGIN { exit !(n - b < r) }'; do
  pending=0
  for ((i = 1; i <= DYNOS; i++)); do
    [ "${RECOVERED[i]}" = never ] || continue
    if ok_200 "http://127.0.0.1:${DYNO_PORT[i]}/healthz" &&
       ok_200 "http://127.0.0.1:${DYNO_PORT[i]}/searchresults?author=Ker"; then
      RECOVERED[i]=$(since "$t_back")
    else
      pending=$((pending + 1))
    fi
  done
  [ "$pending" -eq 0 ] && break
  sleep 0.1
done
for ((i = 1; i <= DYNOS; i++)); do
  if [ "${RECOVERED[i]}" = never ]; then
    PGB_FAILED=1
    fail "c) dyno $i did not answer 200 within ${RECOVERY_SECS} s of PgBouncer being back"
  fi
done
finish_load
stop_sampler
since_mark pgbouncer
[ "${DYNO_PID[*]}" = "$PIDS_BEFORE" ] || { PGB_FAILED=1; fail "c) a dyno was restarted"; }
for ((i = 1; i <= DYNOS; i++)); do
  kill -0 "${DYNO_PID[i]}" 2>/dev/null || { PGB_FAILED=1; fail "c) dyno $i (pid ${DYNO_PID[i]}) is gone"; }
  await_200 "http://127.0.0.1:${DYNO_PORT[i]}/api/books?author=Ker" 2 ||
    { PGB_FAILED=1; fail "c) dyno $i does not answer 200 after the run"; }
done
# The error window, from HAProxy's log of failed requests: their accept times.
window=$(awk -v stop="$t_stop" -v back="$t_back" '
  { t = $2 + 0; if (!n++ || t < first) first = t; if (t > last) last = t }
  END {
    if (!n) { print "none"; exit }
    printf "%d\t%+.2f\t%+.2f\t%.2f\n", n, first - stop, last - stop, last - back
  }' "$WORK/failed-pgbouncer.log")
if [ "$window" = none ]; then
  WINDOW="no failed request"
  late=0
else
  IFS=$'\t' read -r n_logged first_rel last_rel after_back <<< "$window"
  WINDOW="$(secs "$(awk -v a="$first_rel" -v b="$last_rel" 'BEGIN { print b - a }')") s: $(thousands "$n_logged") failed, from $first_rel s to $last_rel s after the stop, the last $(secs "$after_back") s after PgBouncer was back"
  late=$(awk -v x="$after_back" -v r="$RECOVERY_SECS" 'BEGIN { print (x > r) ? 1 : 0 }')
  [ "$late" = 0 ] || { PGB_FAILED=1; fail "c) requests still failed $after_back s after PgBouncer was back (bound ${RECOVERY_SECS} s)"; }
fi
[ $((S2XX + SOTHER)) -eq "$REQUESTS" ] || { PGB_FAILED=1; fail "c) wrk counted $REQUESTS requests but $((S2XX + SOTHER)) statuses"; }
before=${#FAILURES[@]}
check_connections "c) PgBouncer restart"
[ ${#FAILURES[@]} -eq "$before" ] || PGB_FAILED=1
recovery=""
for ((i = 1; i <= DYNOS; i++)); do
  recovery+="${recovery:+, }dyno $i $( [ "${RECOVERED[i]}" = never ] && echo never || echo "$(secs "${RECOVERED[i]}") s")"
done
warned=0 errored=0
for ((i = 1; i <= DYNOS; i++)); do
  warned=$((warned + $(penny_warnings "${DYNO_LOG[i]}" "${LOG_MARK[i]}")))
  errored=$((errored + $(penny_errors "${DYNO_LOG[i]}" "${LOG_MARK[i]}")))
done
if [ "$LB_FAILED" -ne "$FAILED" ]; then
  # HAProxy logs nothing when it closes a client's keep-alive connection without an answer
  # (what a socket error at wrk usually is): the window is then that of the failures it logged.
  WINDOW="$WINDOW (from HAProxy's log, which has $LB_FAILED of wrk's $FAILED failures)"
fi
echo "  error window: $WINDOW; $LB_FAILED failed requests in HAProxy's log; recovered after PgBouncer was back: $recovery; Penny logged $warned warnings, $errored errors" >&2
verdict=$([ "$PGB_FAILED" = 0 ] && echo ok || echo FAILED)
row "| c) PgBouncer restarted, ${PGB_SECS} s | $(thousands "$REQUESTS") | $(thousands "$RATE") | $P50 / $P99 ms | $SOCKET_ERRORS / $SOTHER | $MAX_ALL ($MAX_APP via PgBouncer) | $RETRIES / $REDISPATCHES | $WINDOW | $verdict |"
NOTES+=("c) PgBouncer was stopped (SIGTERM) $(awk -v a="$LOAD_STARTED" -v b="$t_stop" 'BEGIN { printf "%.1f", b - a }') s into the load and answered again $(secs "$(awk -v a="$t_stop" -v b="$t_back" 'BEGIN { print b - a }')") s later. Failed requests: $FAILED at wrk ($SOCKET_ERRORS socket errors, $SOTHER non-2xx), $LB_FAILED in HAProxy's log: $(grep -vc '<NOSRV>' "$WORK/failed-pgbouncer.log" || true) answered 503 by a dyno, $(grep -c '<NOSRV>' "$WORK/failed-pgbouncer.log" || true) by HAProxy itself while its health checks had every dyno down. Each dyno, never restarted (same pids), answered /healthz and a search with 200 this long after PgBouncer was back: $recovery (bound ${RECOVERY_SECS} s). Penny logged $warned warnings and $errored errors meanwhile.")

# ---------------------------------------------------------------------------------------------
say "report"
REPORT_LINES=()
report() { REPORT_LINES+=("$*"); }
report "## Scale-out rehearsal"
report ""
report "**Machine:** $CORES cores (nproc), $CPU_MODEL, $MEM_TOTAL RAM; $(uname -sr); load average $LOAD_AT_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
report "**Run:** $(date -u '+%Y-%m-%d %H:%M UTC'), penny $COMMIT, $MODE, \`bash $SCRIPT$([ "$QUICK" = 1 ] && echo " --quick")\`; wall time $(since "$RUN_STARTED" | awk '{ printf "%.0f", $1 }') s."
report "**Set-up:** $DYNOS Penny processes (PENNY_POOL_SIZE=$POOL_SIZE each) behind HAProxy $HAPROXY_VERSION, through one PgBouncer $PGBOUNCER_VERSION (transaction mode, $PGB_SERVER_CONNS server connections at most) to PostgreSQL $PG_VERSION with max_connections = $PG_MAX_CONNECTIONS ($PG_RESERVED reserved for superusers); wrk -t1 -c$CONNS --timeout 5s; $PINNING."
report ""
report "| Scenario | Requests | Rate (/s) | p50 / p99 | Failed: socket errors / non-2xx | Max PostgreSQL connections (limit $PG_MAX_CONNECTIONS) | HAProxy retries / redispatches | Error window | Result |"
report "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- |"
for r in "${ROWS[@]}"; do report "$r"; done
report ""
for note in "${NOTES[@]}"; do report "- $note"; done
report "- Capacity: $DYNOS dynos × a pool of $POOL_SIZE = $((DYNOS * POOL_SIZE)) connections to PgBouncer (its max_client_conn is $(( (DYNOS + 2) * POOL_SIZE + 50 ))), and at most $PGB_SERVER_CONNS from PgBouncer to PostgreSQL, within max_connections $PG_MAX_CONNECTIONS less $PG_RESERVED reserved; without PgBouncer the same dynos would need $((DYNOS * POOL_SIZE)), and $(((DYNOS + 1) * POOL_SIZE)) during a rolling restart."
report ""
if [ ${#FAILURES[@]} -eq 0 ]; then
  report "**Result: every check passed.**"
else
  report "**Result: FAILED.**"
  for failure in "${FAILURES[@]}"; do report "- $failure"; done
fi
mkdir -p "$ROOT/target/reliability"
REPORT=$ROOT/target/reliability/scaleout-$(date -u +%Y%m%d-%H%M%S).md
printf '%s\n' "${REPORT_LINES[@]}" > "$REPORT"
# Keep the logs of a failed run (or of any, with SCALEOUT_KEEP_LOGS=1) beside the report: the
# evidence.
if [ ${#FAILURES[@]} -ne 0 ] || [ "${SCALEOUT_KEEP_LOGS:-0}" = 1 ]; then
  evidence=${REPORT%.md}-logs
  mkdir -p "$evidence"
  cp "$WORK"/*.log "$WORK"/wrk-*.out "$WORK"/connections-* "$PGB_DIR"/*.log "$PGDIR/server.log" "$evidence"/ 2>/dev/null || true
  echo "(logs kept in $evidence)" >&2
fi
echo "(saved as $REPORT)" >&2
echo >&2
cat "$REPORT"
[ ${#FAILURES[@]} -eq 0 ]
