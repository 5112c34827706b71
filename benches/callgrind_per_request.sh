#!/usr/bin/env bash
# Instructions lbsim spends per proxied request, counted by callgrind.
#
#   benches/callgrind_per_request.sh LBSIM_BIN [extra lbsim flags...]
#   benches/callgrind_per_request.sh target/release/lbsim                 # --cloud aws (default)
#   benches/callgrind_per_request.sh target/release/lbsim --cloud gcp
#   RUNS=3 KEEP=/tmp/cg benches/callgrind_per_request.sh target/release/lbsim
#
# What it does, per run:
#   - `LBSIM_BIN upstream` (the embedded mock app, not under valgrind) on 127.0.0.1:0,
#     keep-alive 3600 s and 64 requests at once, so it never closes or queues on lbsim;
#   - lbsim under `valgrind --tool=callgrind` on 127.0.0.1:0 in front of it
#     (`--no-health-checks`, RUST_LOG=lbsim=info as in the other benches, plus the extra
#     flags), its port read from the line it prints when it listens;
#   - LOOPS (16) `curl` processes at once, each sending its share of the requests as
#     keep-alive `GET /` on one connection; every answer must be a 200;
#   - SIGINT to lbsim, which shuts down; callgrind writes its totals (all threads summed).
#   This is done with LARGE (12,800) and SMALL (3,200) requests, and
#       instructions per proxied request = (Ir of LARGE run − Ir of SMALL run) / (LARGE − SMALL)
#   so start-up, shutdown and the connection set-up cancel out.
#
# Output: one line per run ("run N: large Ir, small Ir, per request") and, with RUNS > 1,
# the mean. Needs valgrind and curl; all traffic stays on 127.0.0.1. Takes about 20 s per
# run on a shared 2-core machine. The lbsim binary should be a plain release build
# (`cargo build --release --bin lbsim`; the release profile keeps line tables, debug = 1,
# so KEEP'd outputs can be read with `callgrind_annotate`).
#
# Knobs (environment): RUNS (1), LARGE (12800), SMALL (3200), LOOPS (16),
# KEEP=DIR to keep the callgrind.out files and logs there (default: a temp dir, removed).
set -euo pipefail

if [ $# -lt 1 ]; then
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 2
fi
bin=$(realpath "$1")
shift
extra=("$@")

RUNS=${RUNS:-1}
LARGE=${LARGE:-12800}
SMALL=${SMALL:-3200}
LOOPS=${LOOPS:-16}
if [ $((LARGE % LOOPS)) -ne 0 ] || [ $((SMALL % LOOPS)) -ne 0 ]; then
    echo "LARGE and SMALL must be multiples of LOOPS" >&2
    exit 2
fi

if [ -n "${KEEP:-}" ]; then
    dir=$KEEP
    mkdir -p "$dir"
else
    dir=$(mktemp -d)
fi

pids=() # the upstream, and lbsim while it runs
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ -z "${KEEP:-}" ]; then
        rm -rf "$dir"
    fi
}
trap cleanup EXIT

# Waits until FILE has a line matching the 'http://127.0.0.1:PORT' pattern after WORD;
# prints the address.
wait_addr() {
    local file=$1 word=$2 i
    for i in $(seq 1 600); do
        if grep -q "$word.*http://127\.0\.0\.1:[0-9]*" "$file" 2>/dev/null; then
            grep -o "$word.*http://127\.0\.0\.1:[0-9]*" "$file" | head -1 | grep -o '127\.0\.0\.1:[0-9]*$'
            return 0
        fi
        sleep 0.1
    done
    echo "no address in $file after 60 s:" >&2
    cat "$file" >&2
    return 1
}

"$bin" upstream --listen 127.0.0.1:0 --keep-alive 3600s --max-ongoing-requests 64 \
    >"$dir/upstream.log" 2>&1 &
pids+=($!)
upstream=$(wait_addr "$dir/upstream.log" "mock app on")

# Runs lbsim under callgrind for N requests; sets `ir` to its total instruction count.
measure() {
    local n=$1 label=$2 out log lb addr per i args codes ok curls
    out="$dir/callgrind.out.$label"
    log="$dir/lbsim.$label.log"
    RUST_LOG=lbsim=info NO_COLOR=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bin" --listen 127.0.0.1:0 --upstream "$upstream" --no-health-checks "${extra[@]}" \
        >"$log" 2>&1 &
    lb=$!
    pids+=("$lb")
    addr=$(wait_addr "$log" "listening on")
    per=$((n / LOOPS))
    args=()
    for ((i = 0; i < per; i++)); do
        args+=(-o /dev/null "http://$addr/")
    done
    codes="$dir/codes.$label"
    curls=()
    for ((i = 0; i < LOOPS; i++)); do
        curl -s -w '%{http_code}\n' "${args[@]}" >"$codes.$i" &
        curls+=($!)
    done
    for i in "${curls[@]}"; do
        wait "$i" || true
    done
    cat "$codes".* >"$codes"
    rm -f "$codes".*
    ok=$(grep -c '^200$' "$codes" || true)
    kill -INT "$lb"
    wait "$lb" || true
    unset 'pids[-1]'
    if [ "$ok" -ne "$n" ]; then
        echo "$label: $ok of $n answers were 200 (see $log)" >&2
        sort "$codes" | uniq -c >&2
        exit 1
    fi
    # 'totals:' (or 'summary:') is the Ir event summed over the whole run and all threads.
    ir=$(grep -E '^(totals|summary):' "$out" | head -1 | awk '{print $2}')
}

echo "lbsim: $bin ${extra[*]}"
echo "requests: $LARGE minus $SMALL, $LOOPS keep-alive curl loops; upstream $upstream"
sum=0
for ((r = 1; r <= RUNS; r++)); do
    measure "$LARGE" "large.$r"
    large=$ir
    measure "$SMALL" "small.$r"
    small=$ir
    per=$(((large - small) / (LARGE - SMALL)))
    sum=$((sum + per))
    echo "run $r: $large Ir at $LARGE requests, $small Ir at $SMALL, $per per request"
done
if [ "$RUNS" -gt 1 ]; then
    echo "mean: $((sum / RUNS)) instructions per proxied request ($RUNS runs)"
fi
