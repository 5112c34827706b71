#!/usr/bin/env bash
# CPU per proxied request of two lbsim binaries, measured in turns on the same machine.
#
#   benches/ab_cpu_per_request.sh OLD_BIN NEW_BIN          # 3 rounds, 32 connections
#   C=256 ROUNDS=5 benches/ab_cpu_per_request.sh OLD NEW
#
# A shared machine moves every absolute figure between runs (the peer run saw HAProxy at
# 13.8 and 17.0 µs per request an hour apart); running the two binaries in turns, each
# round against the same mock app, makes their ratio the figure to read.
#
# Per round and binary: `NEW_BIN upstream` (the mock app) on 127.0.0.1:18200 serves; the
# binary proxies on 127.0.0.1 (`--no-health-checks`, RUST_LOG=lbsim=info); `wrk -t1 -cC`
# warms up for 1 s, then runs 4 s; CPU µs per request = the proxy's utime+stime over those
# 4 s (from /proc/PID/stat) ÷ the requests wrk completed. Needs wrk; loopback only.
set -euo pipefail
if [ $# -ne 2 ]; then
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 2
fi
old=$(realpath "$1")
new=$(realpath "$2")
C=${C:-32}
ROUNDS=${ROUNDS:-3}
tck=$(getconf CLK_TCK)

"$new" upstream --listen 127.0.0.1:18200 >/dev/null 2>&1 &
app=$!
trap 'kill $app 2>/dev/null || true' EXIT
sleep 0.5

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one() {
    local bin=$1 port=$2
    RUST_LOG=lbsim=info "$bin" --listen "127.0.0.1:$port" --upstream 127.0.0.1:18200 \
        --no-health-checks >/dev/null 2>&1 &
    local pid=$!
    sleep 0.5
    wrk -t1 -c"$C" -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1
    local t0 out t1 reqs rps
    t0=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c"$C" -d4s "http://127.0.0.1:$port/" 2>&1)
    t1=$(cpu_ticks "$pid")
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    awk -v name="$3" -v c="$C" -v rps="$rps" -v d="$((t1 - t0))" -v tck="$tck" -v n="$reqs" \
        'BEGIN { printf "%-4s c=%s  %9.0f req/s  %6.2f CPU µs/req\n", name, c, rps, d * 1e6 / tck / n }'
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
}

for _ in $(seq "$ROUNDS"); do
    one "$old" 18201 old
    one "$new" 18202 new
done
