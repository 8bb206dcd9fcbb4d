#!/usr/bin/env bash
# Remote directory benchmark: a folder of N entries (100,000) listed in
# each design by rls (release build, 1024 entries per request, output to
# /dev/null) and locally by `ls -f`, in the same run, RUNS times each (5).
#
#   scripts/bench-rdir.sh [N] [RUNS]
#
# Prints the best and median wall time of each and the ratio of the best to
# ls -f's best. Goal: stateless and RPC within 3x of ls -f. Every listing is
# checked to have N + 2 lines (. and .. included).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-100000}
RUNS=${2:-5}
demo_init bench-rdir

mkdir -p "$RUN/root/big"
(cd "$RUN/root/big" && seq -f 'entry-%06g' 1 "$N" | xargs touch)
start stateful rdird -q --mode stateful --root "$RUN/root" --listen 127.0.0.1:0 || exit 2
start stateless rdird -q --mode stateless --root "$RUN/root" --listen 127.0.0.1:0 || exit 2
start rpc rdird -q --mode rpc --root "$RUN/root" --listen 127.0.0.1:0 --prog 0x3fff0001 || exit 2

now_ns() { date +%s%N; }

# measure NAME CMD...: runs CMD RUNS times (after one warm-up), keeps times.
declare -A BEST MEDIAN
measure() {
    local name=$1
    shift
    local times=() i t0 t1 lines
    lines=$("$@" | wc -l)
    if [ "$lines" -ne $((N + 2)) ]; then
        say "$name listed $lines lines, not $((N + 2))" >&2
        exit 1
    fi
    for i in $(seq 1 "$RUNS"); do
        t0=$(now_ns)
        "$@" >/dev/null
        t1=$(now_ns)
        times+=($(((t1 - t0) / 1000)))
    done
    mapfile -t sorted < <(printf '%s\n' "${times[@]}" | sort -n)
    BEST[$name]=${sorted[0]}
    MEDIAN[$name]=${sorted[$((RUNS / 2))]}
}

cd "$RUN/root" || exit 2
measure "ls -f" ls -f big
measure "stateful" rls --mode stateful --port "$PORT_stateful" big
measure "stateless" rls --mode stateless --port "$PORT_stateless" big
measure "rpc" rls --mode rpc --prog 0x3fff0001 --port "$PORT_rpc" big

note "listing $N entries, best and median of $RUNS runs"
printf '%-12s %12s %12s %10s\n' "" "best (ms)" "median (ms)" "vs ls -f"
ref=${BEST["ls -f"]}
for name in "ls -f" stateful stateless rpc; do
    awk -v n="$name" -v b="${BEST[$name]}" -v m="${MEDIAN[$name]}" -v r="$ref" \
        'BEGIN { printf "%-12s %12.1f %12.1f %9.2fx\n", n, b / 1000, m / 1000, b / r }'
done
say "requests per listing: $(((N + 2 + 1023) / 1024)) (1024 entries each)"
summary >/dev/null
