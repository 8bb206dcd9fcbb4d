#!/usr/bin/env bash
# Transfer benchmark: one file (1 GiB by default) fetched over loopback by
# p2p-get from a p2p-superd (SHA-256 verified, written to a file), side by
# side with nc moving the same file into a file. The page cache is warmed
# first and each figure is the best of 3 runs. Prints both throughputs,
# their ratio, and the peak memory of p2p-superd and p2p-get.
#
#   scripts/bench-transfer.sh            (SIZE_MIB=1024 RUNS=3 by default)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need nc netcat-openbsd

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
demo_init bench-transfer
mkdir -p "$RUN/repo" "$RUN/out"
FILE=$RUN/repo/big.bin
say "making a ${SIZE_MIB} MiB file"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$FILE"
BYTES=$(stat -c %s "$FILE")
SHA=$(sha256sum "$FILE" | cut -d' ' -f1)

start index p2p-index --listen 127.0.0.1:0
start superd p2p-superd "$RUN/repo" --index "$ADDR_index" --listen 127.0.0.1:0 --sync-interval 3600

now() { date +%s.%N; }
# mibps SECONDS: throughput of BYTES in that time.
mibps() { awk -v b="$BYTES" -v s="$1" 'BEGIN { printf "%.0f", b / 1048576 / s }'; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Warm up: the file in the page cache, its digest in the supernode's cache.
cat "$FILE" >/dev/null
p2p-get 127.0.0.1 "$PORT_superd" big.bin -o "$RUN/out/warm.bin"
rm -f "$RUN/out/warm.bin"

# One timed run of each tool. Before each, the previous output is removed
# and `sync` writes back every dirty page, so neither tool pays for the
# other's writeback; runs alternate so both see the same machine state.
get_times=()
nc_times=()
get_peak=0

run_get() {
    rm -f "$RUN/out/get.bin"
    sync
    local t0 t1 rss
    t0=$(now)
    /usr/bin/time -f '%M' -o "$RUN/get.rss" \
        p2p-get 127.0.0.1 "$PORT_superd" big.bin -o "$RUN/out/get.bin"
    t1=$(now)
    get_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    rss=$(tail -1 "$RUN/get.rss")
    [ "$rss" -gt "$get_peak" ] && get_peak=$rss
    [ "$(sha256sum "$RUN/out/get.bin" | cut -d' ' -f1)" = "$SHA" ] || {
        say "p2p-get produced a different file" >&2
        exit 1
    }
    rm -f "$RUN/out/get.bin"
}

# nc: the same file over loopback into a file (lib.sh's nc_seconds).
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
    say "run $i: p2p-get $(mibps "${get_times[-1]}") MiB/s, nc $(mibps "${nc_times[-1]}") MiB/s"
done
superd_peak=$(peak_rss_kib "$PID_superd")
get_best=$(best "${get_times[@]}")
nc_best=$(best "${nc_times[@]}")
get_rate=$(mibps "$get_best")
nc_rate=$(mibps "$nc_best")
note "results (${SIZE_MIB} MiB over loopback, best of $RUNS, to a file)"
printf '%-34s %8s MiB/s  (%.2f s)\n' "p2p-get (SHA-256 verified)" "$get_rate" "$get_best"
printf '%-34s %8s MiB/s  (%.2f s)\n' "nc" "$nc_rate" "$nc_best"
awk -v a="$nc_best" -v b="$get_best" 'BEGIN { printf "%-34s %8.2f  (>= 1 means p2p-get is at least as fast)\n", "ratio p2p-get / nc, best", a / b }'
get_med=$(median "${get_times[@]}")
nc_med=$(median "${nc_times[@]}")
printf '%-34s %8s MiB/s p2p-get, %s MiB/s nc, ratio %s\n' "medians" "$(mibps "$get_med")" "$(mibps "$nc_med")" \
    "$(awk -v a="$nc_med" -v b="$get_med" 'BEGIN { printf "%.2f", a / b }')"
printf '%-34s %8.1f MiB\n' "peak memory p2p-superd (VmHWM)" "$(awk -v k="$superd_peak" 'BEGIN { print k / 1024 }')"
printf '%-34s %8.1f MiB\n' "peak memory p2p-get (max RSS)" "$(awk -v k="$get_peak" 'BEGIN { print k / 1024 }')"
rm -f "$FILE"
