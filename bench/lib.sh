# shellcheck shell=bash disable=SC2034 # the variables set here are read by the scripts sourcing it
# Shell functions shared by bench/run.sh and reliability/run.sh: progress messages, a throwaway
# PostgreSQL, Penny started on a free port, and stopping everything they started.
#
# Source it from a script that has set SCRIPT (its name, for messages), then call start_run.

PIDS=()          # every background process started here, stopped by stop_started
PG_RUNNING=0
PGDATA=
PGBIN=
WATCHDOG=

# parse_options "$@": the reliability scripts' one option, --quick (sets QUICK=1), and
# -h/--help, which prints the script's opening comment.
parse_options() {
  QUICK=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) QUICK=1 ;;
      -h|--help) usage; exit 0 ;;
      *) echo "$SCRIPT: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
  done
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\n%s: FAILED: %s\n' "$SCRIPT" "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# start_run NAME: sets RUN_STARTED and WORK (a new temp directory), and arranges for everything
# started here to be stopped, and WORK removed, when the script exits, also on failure, Ctrl-C
# or SIGTERM.
start_run() {
  RUN_STARTED=$(now)
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/penny-$1.XXXXXX")
  chmod 755 "$WORK"
  trap finish_run EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

finish_run() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  stop_started "$status"
  rm -rf "$WORK"
  exit "$status"
}

# install_missing COMMAND:PACKAGE ...: installs, from Debian, the package of each command that is
# not on PATH, plus PostgreSQL's server when its binaries are missing.
install_missing() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Stops every process in PIDS and the throwaway PostgreSQL. Given a non-zero status (the
# script's), shows the end of PostgreSQL's log, which usually says what went wrong.
stop_started() {
  local status=$1 pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  if [ "$PG_RUNNING" = 1 ]; then
    as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" stop -m immediate >/dev/null 2>&1 ||
      echo "$SCRIPT: could not stop the PostgreSQL in $PGDATA" >&2
    PG_RUNNING=0
  fi
  if [ -n "$WATCHDOG" ]; then kill "$WATCHDOG" 2>/dev/null; wait "$WATCHDOG" 2>/dev/null; fi
  if [ "$status" -ne 0 ] && [ -s "$WORK/pg/server.log" ]; then
    echo "--- last lines of PostgreSQL's log ---" >&2
    tail -n 15 "$WORK/pg/server.log" >&2
  fi
}

forget_pid() {
  local keep=() pid
  for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
  PIDS=("${keep[@]}")
}

# A port nobody listens on, below the kernel's range of ephemeral ports when it leaves room
# (20000 to 32767 by default): a port in that range can be taken at any moment as the local
# end of an outgoing connection, and then a server that is (re)started on it cannot bind.
free_port() {
  local port _ low=60000
  read -r low _ < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=60000
  [ "$low" -ge 21000 ] || low=60000
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % (low - 20000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  die "no free port on 127.0.0.1"
}

# Sets PGBIN to the newest PostgreSQL server binaries and checks they include TOOLS.
find_postgres() {
  PGBIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  local tool
  for tool in initdb pg_ctl psql "$@"; do
    [ -x "$PGBIN/$tool" ] || die "no $PGBIN/$tool (apt-get install postgresql)"
  done
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the postgres OS user (apt-get install postgresql)"
  fi
}

# Sets PIN_CLIENT and PIN_SERVER (taskset prefixes: the load generator on core 0, Penny on
# core 1) and PINNING, which says so.
pin_cores() {
  CORES=$(nproc)
  if [ "$CORES" -ge 2 ]; then
    PIN_CLIENT=(taskset -c 0)
    PIN_SERVER=(taskset -c 1)
    PINNING="wrk on core 0, Penny on core 1 (taskset); PostgreSQL unpinned"
  else
    PIN_CLIENT=()
    PIN_SERVER=()
    PINNING="one core: nothing pinned"
  fi
}

# Sets CPU_MODEL, MEM_TOTAL, LOAD_AT_START and COMMIT, for the report.
describe_machine() {
  CPU_MODEL=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  [ -n "$CPU_MODEL" ] || CPU_MODEL=$(uname -m)
  MEM_TOTAL=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
  COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
  git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT+changes"
}

# A throwaway PostgreSQL under $WORK/pg: a free port on 127.0.0.1, password authentication
# over TCP, run as the `postgres` OS user when root. Sets PG_PORT, PG_PASSWORD, PG_VERSION and
# exports PGPASSWORD. A watchdog stops it and removes $WORK even if the script is killed.
start_postgres() {
  PGDIR=$WORK/pg
  PGDATA=$PGDIR/data
  PG_PASSWORD="throwaway-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  mkdir -p "$PGDIR"
  printf '%s\n' "$PG_PASSWORD" > "$PGDIR/pwfile"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$PGDIR"; fi
  as_postgres "$PGBIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --pwfile="$PGDIR/pwfile" > "$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
  rm -f "$PGDIR/pwfile"
  bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$2/pg_ctl" -D "$3" stop -m immediate
    else "$2/pg_ctl" -D "$3" stop -m immediate; fi
    rm -rf "$4"' watchdog $$ "$PGBIN" "$PGDATA" "$WORK" </dev/null >/dev/null 2>&1 &
  WATCHDOG=$!
  local _
  for _ in 1 2 3; do
    PG_PORT=$(free_port)
    cat >> "$PGDATA/postgresql.conf" <<EOF
# $SCRIPT (a later port line wins)
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGDIR'
max_connections = 100
logging_collector = off
log_autovacuum_min_duration = 0
log_checkpoints = on
EOF
    if as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -w -t 30 -l "$PGDIR/server.log" start >/dev/null; then
      PG_RUNNING=1
      break
    fi
  done
  [ "$PG_RUNNING" = 1 ] || die "PostgreSQL did not start (see its log above)"
  PG_VERSION=$("$PGBIN/postgres" --version | awk '{print $3}')
  export PGPASSWORD=$PG_PASSWORD
}

# psql_on DBNAME ARGS…: psql as the superuser, over TCP with the password.
psql_on() {
  local dbname=$1
  shift
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
    "host=127.0.0.1 port=$PG_PORT user=postgres dbname=$dbname sslmode=disable" "$@"
}

pg_url() { echo "postgres://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT/$1?sslmode=disable"; }

# start_penny URL [NAME=VALUE…]: $PENNY serving URL (empty: the bundled demo), with the extra
# environment given, pinned by PIN_SERVER, on PENNY_BIND (default 127.0.0.1:0, a free port; a
# load balancer's backends need fixed ones). Sets PENNY_PID, PENNY_PORT and PENNY_LOG.
PENNY_RUNS=0
start_penny() {
  local url=$1
  shift
  PENNY_RUNS=$((PENNY_RUNS + 1))
  PENNY_LOG=$WORK/penny-$PENNY_RUNS.log
  # Made here, not by the background job's redirection, which may come after the first look.
  : > "$PENNY_LOG"
  env -u DATABASE_URL ${url:+"DATABASE_URL=$url"} "$@" "${PIN_SERVER[@]}" "$PENNY" --bind "${PENNY_BIND:-127.0.0.1:0}" \
    > "$PENNY_LOG" 2>&1 &
  PENNY_PID=$!
  PIDS+=("$PENNY_PID")
  PENNY_PORT=
  local _
  for _ in $(seq 1 200); do
    PENNY_PORT=$(sed -n 's|.* on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$PENNY_LOG" | head -n 1)
    [ -n "$PENNY_PORT" ] && break
    kill -0 "$PENNY_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$PENNY_PORT" ]; then
    cat "$PENNY_LOG" >&2
    die "penny did not start"
  fi
}

# Sends SIGTERM and waits; sets PENNY_EXIT to Penny's exit status. Removes its log.
stop_penny() {
  PENNY_EXIT=0
  kill -TERM "$PENNY_PID" 2>/dev/null || true
  wait "$PENNY_PID" 2>/dev/null || PENNY_EXIT=$?
  forget_pid "$PENNY_PID"
  rm -f "$PENNY_LOG"
}

# wrk, pinned: wrk_summary CONNECTIONS SECONDS URL. Sets RPS P50 P99 ERRORS. wrk runs in the
# background and is waited for: wrk catches Ctrl-C and exits normally, and bash would then
# ignore the Ctrl-C for a command in the foreground; a `wait` is cut short by it.
wrk_summary() {
  local out=$WORK/wrk.out line sockets statuses pid status=0
  "${PIN_CLIENT[@]}" wrk -t1 -c"$1" -d"$2"s --latency -s "$ROOT/bench/wrk-summary.lua" "$3" \
    > "$out" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait "$pid" || status=$?
  forget_pid "$pid"
  [ "$status" = 0 ] || { cat "$out" >&2; die "wrk failed on $3"; }
  line=$(grep '^SUMMARY' "$out") || { cat "$out" >&2; die "wrk printed no summary"; }
  IFS=$'\t' read -r _ RPS P50 P99 sockets statuses <<< "$line"
  ERRORS=$((sockets + statuses))
}

# Fails loudly unless GET $1 answers 200; the body is left in $WORK/body.
expect_200() {
  local code
  code=$(curl -s -o "$WORK/body" -w '%{http_code}' --max-time 5 "$1") || code="no answer"
  [ "$code" = 200 ] || { tail -n 5 "$PENNY_LOG" >&2; die "GET $1 gave $code, not 200"; }
}
