#!/usr/bin/env bash
# Runs lbsim's benchmark programs in order and prints their tables.
#
#   benches/run.sh                       # all: throughput idle_conns timer_accuracy startup streaming
#   benches/run.sh startup streaming     # some
#   TARGETS=direct,lbsim benches/run.sh throughput
#
# It installs nothing. The throughput and streaming benches also measure nginx and HAProxy
# when they are on the PATH, and throughput ends with issue #14's peer run (wrk -t1 through
# HAProxy, nginx and lbsim aws/gcp in front of an nginx origin) when wrk and nginx are;
# to have them:
#
#   apt-get update && apt-get install -y nginx haproxy wrk
#
# (PEERS=only benches/run.sh throughput: the peer run alone; PEERS=0: without it.)
#
# (their packaged services need not run: the benches start their own instances on free
# loopback ports with generated configs, and stop them at the end).
#
# Each bench takes a few seconds to about 40 s; all traffic stays on 127.0.0.1. Knobs are
# described at the top of each benches/*.rs file (BENCH_SECS, ROUNDS, LOADGEN, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

benches=("$@")
if [ ${#benches[@]} -eq 0 ]; then
    benches=(throughput idle_conns timer_accuracy startup streaming)
fi

# idle_conns keeps 10,000 client connections open: the bench and lbsim each need about
# 10,300 file descriptors. Raise the soft limit as far as the hard limit allows.
want=65536
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
    want=$hard
fi
ulimit -n "$want" 2>/dev/null || true
echo "ulimit -n: $(ulimit -n)"

# Benchmark the binary users get. `cargo bench` builds the package with its
# dev-dependency features (tokio's test-util) and re-links target/release/lbsim with
# them, so take a copy of the plain release build first and point the benches at it.
cargo build --release --bin lbsim
mkdir -p target/bench-bin
cp target/release/lbsim target/bench-bin/lbsim
export LBSIM_BIN="$PWD/target/bench-bin/lbsim"
cargo bench --no-run

for b in "${benches[@]}"; do
    echo
    cargo bench --bench "$b"
done
