#!/usr/bin/env bash
# The instructions a request costs a server, counted by callgrind: steadier than requests a
# second on a shared machine (1 % from run to run, where throughput moves by 20 %), so it can
# tell a change of a few percent in the work a request takes.
#
#     bash bench/instructions.sh BINARY PATH            # e.g. target/release/penny /searchresults?author=Ker
#     DATABASE_URL=postgres://… bash bench/instructions.sh target/release/penny '/searchresults?author=Tur'
#
# BINARY is started under valgrind with `--bind 127.0.0.1:PORT` (Penny, or either peer app),
# on DATABASE_URL as set (unset: Penny's bundled demo); then PATH is fetched 100 times, one
# request after another on one connection, and in a second run 600 times. The difference
# between the two runs' totals, over 500, is the cost of a request without the start-up's.
# What the kernel does (the network, the wake-ups) is not counted: this measures the process's
# own work. Needs valgrind (apt-get install valgrind) and curl.
set -euo pipefail

if [ $# -ne 2 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
BINARY=$1
PATH_AND_QUERY=$2
command -v valgrind >/dev/null || { echo "bench/instructions.sh: needs valgrind" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# instructions N: the total instructions of a run that serves N requests.
instructions() {
  local requests=$1 port pid
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/out" \
    "$BINARY" --bind "127.0.0.1:$port" > "$WORK/log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$port$PATH_AND_QUERY" && break
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/log" >&2; exit 1; }
    sleep 0.1
  done
  # One curl, one connection, the requests one after another (the first already warmed up).
  : > "$WORK/urls"
  for _ in $(seq "$requests"); do
    printf 'url = "http://127.0.0.1:%s%s"\noutput = /dev/null\n' "$port" "$PATH_AND_QUERY" >> "$WORK/urls"
  done
  curl -s -K "$WORK/urls"
  kill -INT "$pid"
  wait "$pid" || true
  awk '/^(summary|totals):/ { print $2; exit }' "$WORK/out"
}

few=$(instructions 100)
many=$(instructions 600)
echo "$(( (many - few) / 500 )) instructions a request: $BINARY $PATH_AND_QUERY"
