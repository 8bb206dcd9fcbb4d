#!/usr/bin/env bash
# Swarm benchmark.
#
# 1. Capped runs: one seeder and N leechers (N = 4 and 16), every peer's
#    upload capped at RATE by --upload-limit. Prints how long the last
#    leecher took, the lower bound max(F/u_s, N*F/(u_s + sum u_i)) for that
#    setup, and their ratio (goal: at most 1.25).
# 2. An uncapped run: BIG from one seeder to 4 leechers over loopback; prints
#    the wall time and each peer's peak memory (VmHWM).
#
#   scripts/bench-swarm.sh                 defaults: F=32M, RATE=4M, BIG=1024M
#   F_MIB=16 RATE_MIB=2 NS="4" BIG_MIB=0 scripts/bench-swarm.sh   (quicker; BIG_MIB=0 skips run 2)
set -uo pipefail
. "$(dirname "$0")/lib.sh"

F_MIB=${F_MIB:-32}
RATE_MIB=${RATE_MIB:-4}
NS=${NS:-4 16}
BIG_MIB=${BIG_MIB:-1024}
PIECE=${PIECE:-64K}
PERIODS=(--ping-interval 1 --report-interval 2)

demo_init bench-swarm
note "swarm benchmark in $RUN ($(nproc) cores; $(uptime | sed 's/.*load average/load average/'))"

now() { date +%s.%N; }

# run_swarm NAME FILE N [CAP]: tracker, seeder, N leechers; waits until
# every leecher completes; sets ELAPSED (first leecher start to last
# completion) and leaves PEER_PIDS / SEED_PID for the caller to inspect.
run_swarm() {
    local name=$1 file=$2 n=$3 cap=${4:-} limit=() i
    [ -n "$cap" ] && limit=(--upload-limit "$cap")
    local dir="$RUN/$name"
    mkdir -p "$dir"
    local save=$RUN
    RUN=$dir
    start tracker bt-tracker --listen 127.0.0.1:0 || return 1
    start seed bt-peer share "$file" --tracker "$ADDR_tracker" --listen 127.0.0.1:0 \
        "${limit[@]}" --piece-size "$PIECE" "${PERIODS[@]}" || return 1
    wait_line "$dir/seed.out" '^swarm ' 600 || return 1
    SEED_PID=$PID_seed
    RUN_PIDS=("$PID_tracker" "$PID_seed")
    PEER_PIDS=()
    local t0
    t0=$(now)
    for i in $(seq 1 "$n"); do
        mkdir -p "$dir/p$i"
        "$BIN/bt-peer" fetch "$(basename "$file")" --tracker "$ADDR_tracker" --out "$dir/p$i" \
            --listen 127.0.0.1:0 "${limit[@]}" "${PERIODS[@]}" ${FETCH_FLAGS:-} >"$dir/p$i.out" 2>"$dir/p$i.err" &
        PIDS+=($!)
        RUN_PIDS+=($!)
        PEER_PIDS+=($!)
    done
    local left=$n deadline=$(($(date +%s) + 1800))
    while [ "$left" -gt 0 ]; do
        left=0
        for i in $(seq 1 "$n"); do
            grep -q '^complete: ' "$dir/p$i.out" 2>/dev/null || left=$((left + 1))
        done
        if [ "$(date +%s)" -gt "$deadline" ]; then
            say "timed out with $left leechers unfinished" >&2
            return 1
        fi
        [ "$left" -gt 0 ] && sleep 0.05
    done
    ELAPSED=$(echo "$(now) - $t0" | bc -l)
    RUN=$save
    for i in $(seq 1 "$n"); do
        if ! cmp -s "$file" "$dir/p$i/$(basename "$file")"; then
            say "p$i's copy differs from the original" >&2
            return 1
        fi
    done
}

stop_swarm() {
    local pid
    for pid in "${RUN_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${RUN_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
}

need bc bc
mkdir -p "$RUN/src"
head -c "$((F_MIB << 20))" /dev/urandom >"$RUN/src/capped.bin"
F=$((F_MIB << 20))
U=$((RATE_MIB << 20))

note "capped: F = $F_MIB MiB, every peer's upload capped at $RATE_MIB MiB/s, pieces of $PIECE"
printf '%-4s %12s %10s %7s\n' N "last (s)" "bound (s)" ratio
for n in $NS; do
    if ! run_swarm "cap$n" "$RUN/src/capped.bin" "$n" "${RATE_MIB}M"; then
        stop_swarm
        say "N=$n: run failed; logs in $RUN/cap$n" >&2
        exit 2
    fi
    stop_swarm
    bound=$(echo "a = $F / $U; b = $n * $F / ($U + $n * $U); if (a > b) a else b" | bc -l)
    ratio=$(echo "$ELAPSED / $bound" | bc -l)
    printf '%-4s %12.2f %10.2f %7.3f\n' "$n" "$ELAPSED" "$bound" "$ratio"
    rm -f "$RUN"/cap"$n"/p*/capped.bin
done

if [ "$BIG_MIB" -gt 0 ]; then
    note "uncapped: $BIG_MIB MiB from one seeder to 4 leechers over loopback"
    head -c "$((BIG_MIB << 20))" /dev/urandom >"$RUN/src/big.bin"
    if ! run_swarm big "$RUN/src/big.bin" 4; then
        stop_swarm
        say "uncapped run failed; logs in $RUN/big" >&2
        exit 2
    fi
    printf 'wall time %.2f s (%.0f MiB/s per leecher)\n' "$ELAPSED" "$(echo "$BIG_MIB / $ELAPSED" | bc -l)"
    say "peak memory (VmHWM): seeder $(($(peak_rss_kib "$SEED_PID") / 1024)) MiB"
    i=1
    for pid in "${PEER_PIDS[@]}"; do
        say "                     leecher $i $(($(peak_rss_kib "$pid") / 1024)) MiB"
        i=$((i + 1))
    done
    stop_swarm
    rm -f "$RUN"/big/p*/big.bin "$RUN/src/big.bin"
fi
rm -f "$RUN/src/capped.bin"
say "logs: $RUN"
