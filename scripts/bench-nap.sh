#!/usr/bin/env bash
# Napster-like directory benchmark, in one run:
#
# 1. Operations per second and latency (p50, p99) against nap-server with 1,
#    10 and 100 concurrent clients (examples/nap-load.rs: each client its own
#    user, PUBLISH / LIST_CONTENT / DELETE in turn, one connection per
#    request), with the state in memory and with --storage (every change
#    written to a synced file and renamed). Ratios are against 1 client.
# 2. GET_FILE of one file (1 GiB by default) between two nap-peers over
#    loopback, side by side with nc moving the same file into a file; each
#    figure is the best of RUNS runs, alternating.
#
#   scripts/bench-nap.sh            (SECS=3 SIZE_MIB=1024 RUNS=3 by default)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need nc netcat-openbsd

SECS=${SECS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
demo_init bench-nap
if [ -z "${PEERKIT_SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release --example nap-load --quiet)
fi
LOAD=$BIN/examples/nap-load

now() { date +%s.%N; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

note "operations per second (${SECS}s per level)"
printf '%-10s %8s %10s %9s %9s %8s %7s\n' state clients ops/s p50_ms p99_ms "x 1 cl." errors
for mode in memory storage; do
    extra=()
    [ "$mode" = storage ] && extra=(--storage "$RUN/state")
    start "srv_$mode" nap-server --listen 127.0.0.1:0 -q "${extra[@]}"
    v="ADDR_srv_$mode"
    base=
    for clients in 1 10 100; do
        line=$("$LOAD" "${!v}" "$clients" "$SECS" "$mode$clients")
        rate=$(field ops_per_sec <<<"$line")
        [ -z "$base" ] && base=$rate
        printf '%-10s %8s %10s %9s %9s %8s %7s\n' "$mode" "$clients" "$rate" \
            "$(field p50_ms <<<"$line")" "$(field p99_ms <<<"$line")" \
            "$(awk -v a="$rate" -v b="$base" 'BEGIN { printf "%.2f", a / b }')" \
            "$(field errors <<<"$line")"
    done
    v="PID_srv_$mode"
    kill "${!v}"
done

note "GET_FILE of ${SIZE_MIB} MiB between two peers, and nc"
start server nap-server --listen 127.0.0.1:0 -q
mkdir -p "$RUN/ana" "$RUN/out"
FILE=$RUN/ana/big.bin
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$FILE"
BYTES=$(stat -c %s "$FILE")
SHA=$(sha256sum "$FILE" | cut -d' ' -f1)
cat "$FILE" >/dev/null

# ana: an interactive peer fed through a FIFO, publishing big.bin.
mkfifo "$RUN/ana.in"
nap-peer -s 127.0.0.1 -p "$PORT_server" --share "$RUN/ana" --listen-ip 127.0.0.1 \
    <"$RUN/ana.in" >"$RUN/ana.out" 2>"$RUN/ana.err" &
PIDS+=($!)
exec 7>"$RUN/ana.in"
printf 'REGISTER ana\nCONNECT ana\nPUBLISH big.bin bench\n' >&7
wait_line "$RUN/ana.out" '^PUBLISH OK$'

mibps() { awk -v b="$BYTES" -v s="$1" 'BEGIN { printf "%.0f", b / 1048576 / s }'; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
get_times=()
nc_times=()

run_get() {
    rm -f "$RUN/out/get.bin"
    sync
    local t0 t1 out
    t0=$(now)
    out=$(printf 'REGISTER bo\nCONNECT bo\nGET_FILE ana big.bin %s\nQUIT\n' "$RUN/out/get.bin" |
        nap-peer -s 127.0.0.1 -p "$PORT_server" --share "$RUN/out" --listen-ip 127.0.0.1 2>&1)
    t1=$(now)
    grep -q '^GET_FILE OK$' <<<"$out" || {
        say "GET_FILE failed: $out" >&2
        exit 1
    }
    get_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    [ "$(sha256sum "$RUN/out/get.bin" | cut -d' ' -f1)" = "$SHA" ] || {
        say "GET_FILE produced a different file" >&2
        exit 1
    }
    rm -f "$RUN/out/get.bin"
}

run_nc() {
    sync
    local t
    t=$(nc_seconds "$FILE" "$RUN/out/nc.bin") || exit 1
    nc_times+=("$t")
    rm -f "$RUN/out/nc.bin"
}

for i in $(seq "$RUNS"); do
    run_get
    run_nc
    say "run $i: GET_FILE $(mibps "${get_times[-1]}") MiB/s, nc $(mibps "${nc_times[-1]}") MiB/s"
done
get_best=$(best "${get_times[@]}")
nc_best=$(best "${nc_times[@]}")
printf '%-40s %8s MiB/s  (%.2f s)\n' "GET_FILE (whole nap-peer run, to a file)" "$(mibps "$get_best")" "$get_best"
printf '%-40s %8s MiB/s  (%.2f s)\n' "nc" "$(mibps "$nc_best")" "$nc_best"
awk -v a="$nc_best" -v b="$get_best" 'BEGIN { printf "%-40s %8.2f  (>= 1 means GET_FILE is at least as fast)\n", "ratio GET_FILE / nc, best", a / b }'
exec 7>&-
rm -f "$FILE"
rm -rf "$RUN"
