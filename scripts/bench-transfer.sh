#!/usr/bin/env bash
# Transfer benchmark: p2p-get (verified end to end, written to a file)
# against nc moving the same file into a file over loopback, in the same
# run, runs alternating. Three cases:
#
#   warm   a 512 MiB file on a three-supernode ring, already fetched once
#          (in the page cache, its digest in the supernode's cache);
#   new    the first download of a 512 MiB file just added to a supernode
#          of that ring whose synchronizer (every 0.2 s) copies it to the
#          supernode responsible for it meanwhile; a new name every run;
#   one    the first download of a 1 GiB file just added to a supernode
#          that is alone in its ring; a new name every run; measured after
#          the three-supernode ring has stopped.
#
# Every file's bytes are in the page cache for both tools (a new name is a
# hard link to bytes written before the runs). Before each run the previous
# output is removed, `sync` writes back dirty pages, and as many bytes as
# the run will write are written to a scratch file and removed (on a
# virtual machine, memory left free for a few seconds goes back to the host
# and is slow to fault in again: whichever tool ran second would otherwise
# reuse the first one's freed pages). The two tools take turns going first. Prints, per case,
# the best and median of RUNS runs, the ratio to nc (>= 1 means p2p-get is
# at least as fast), and the peak memory of every process.
#
#   scripts/bench-transfer.sh            (RUNS=7 SMALL_MIB=512 BIG_MIB=1024)
#   VIEW=1 scripts/bench-transfer.sh     every daemon with its live view (--http); each
#                                        run times p2p-get once more with the index's and
#                                        the serving supernodes' pages open (their /events
#                                        held, state.json asked every second), order
#                                        alternating, and prints open/closed per case
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need nc netcat-openbsd

RUNS=${RUNS:-7}
VIEW=${VIEW:-}
SMALL_MIB=${SMALL_MIB:-512}
BIG_MIB=${BIG_MIB:-1024}
demo_init bench-transfer
mkdir -p "$RUN/src" "$RUN/out" "$RUN/r1" "$RUN/r2" "$RUN/r3" "$RUN/solo"
say "making ${SMALL_MIB} MiB and ${BIG_MIB} MiB files"
head -c "$((SMALL_MIB << 20))" /dev/urandom >"$RUN/src/small.bin"
head -c "$((BIG_MIB << 20))" /dev/urandom >"$RUN/src/big.bin"
ln "$RUN/src/small.bin" "$RUN/r1/warm.bin"
sync

HTTP=()
if [ -n "$VIEW" ]; then
    need curl curl
    HTTP=(--http 127.0.0.1:0)
fi
# watch NAME: what an open page of NAME's view does, in the background:
# its event stream held open, its state.json asked every second. The
# watchers' PIDs go to WATCHERS (stopped by unwatch) and PIDS (cleanup).
WATCHERS=()
watch() {
    local view
    view=$(sed -n 's/^view on //p' "$RUN/$1.out")
    curl -sN "${view}events" >/dev/null 2>&1 &
    WATCHERS+=($!)
    PIDS+=($!)
    (while :; do curl -s "${view}state.json" >/dev/null 2>&1; sleep 1; done) &
    WATCHERS+=($!)
    PIDS+=($!)
}
unwatch() {
    local pid
    for pid in "${WATCHERS[@]}"; do
        ours "$pid" && kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || true
    done
    WATCHERS=()
}
start index p2p-index --listen 127.0.0.1:0 "${HTTP[@]}"
for i in 1 2 3; do
    start "s$i" p2p-superd "$RUN/r$i" --index "$ADDR_index" --listen 127.0.0.1:0 --sync-interval 0.2 \
        "${HTTP[@]}"
done
start index1 p2p-index --listen 127.0.0.1:0 "${HTTP[@]}"
start solo p2p-superd "$RUN/solo" --index "$ADDR_index1" --listen 127.0.0.1:0 --sync-interval 3600 \
    "${HTTP[@]}"
[ -n "$VIEW" ] && note "live views on; each run also times p2p-get with the pages of the index and the serving supernode open"

now() { date +%s.%N; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# mibps BYTES SECONDS
mibps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1048576 / s }'; }

# prime FILE: syncs, then writes as many bytes as FILE has to a scratch
# file and removes it (before any of it is written back): the next run
# writes into just-freed page cache.
prime() {
    sync
    head -c "$(stat -c %s "$1")" /dev/zero >"$RUN/out/scratch"
    rm -f "$RUN/out/scratch"
}

# timed_get ADDR NAME SOURCE [ADD]: one p2p-get into $RUN/out/get.bin,
# checked against SOURCE; prints the seconds it took. With ADD, SOURCE is
# first added to a repository as ADD (a hard link), just before the clock starts.
timed_get() {
    local addr=$1 name=$2 src=$3 add=${4:-} t0 t1
    rm -f "$RUN/out/get.bin"
    prime "$src"
    [ -n "$add" ] && ln "$src" "$add"
    t0=$(now)
    /usr/bin/time -f '%M' -o "$RUN/get.rss" \
        p2p-get -q "$addr" "$name" -o "$RUN/out/get.bin"
    t1=$(now)
    tail -1 "$RUN/get.rss" >>"$RUN/get.rss.all"
    cmp -s "$RUN/out/get.bin" "$src" || {
        say "p2p-get produced a different $name" >&2
        exit 1
    }
    rm -f "$RUN/out/get.bin"
    awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

timed_nc() {
    prime "$1"
    nc_seconds "$1" "$RUN/out/nc.bin" || exit 1
    rm -f "$RUN/out/nc.bin"
}

# fresh_name ADDR PREFIX: a name whose responsible supernode is not ADDR
# (ADDR redirects a request for it), so ADDR's synchronizer will move it.
fresh_name() {
    local addr=$1 prefix=$2 k name said
    for k in $(seq 200); do
        name="$prefix-$k.bin"
        said=$(p2p-get "$addr" "$name" -o /dev/null 2>&1 || true)
        if [[ $said == *redirecting* ]]; then
            say "$name"
            return 0
        fi
    done
    say "no name owned elsewhere found" >&2
    return 1
}

# viewed CASE VIEWS... -- timed_get ARGS: with VIEW, one more p2p-get with
# the pages of VIEWS open, into VIEWED[CASE].
viewed() {
    local case=$1
    shift
    local views=()
    while [ "$1" != -- ]; do
        views+=("$1")
        shift
    done
    shift
    local v
    for v in "${views[@]}"; do watch "$v"; done
    VIEWED[$case]+=" $(timed_get "$@")"
    unwatch
}

# new_run PREFIX [VIEWS...]: the first download of a name just added to s1
# and owned elsewhere, into GET[new] (or, with VIEWS, into VIEWED[new]
# with those pages open); then waits for the copy to its owner and removes
# the name everywhere.
new_run() {
    local prefix=$1 name
    shift
    name=$(fresh_name "$ADDR_s1" "$prefix")
    if [ $# -gt 0 ]; then
        viewed new "$@" -- "$ADDR_s1" "$name" "$RUN/src/small.bin" "$RUN/r1/$name"
    else
        GET[new]+=" $(timed_get "$ADDR_s1" "$name" "$RUN/src/small.bin" "$RUN/r1/$name")"
        # Did the synchronizer start copying it to its owner before the
        # download ended?
        if cat "$RUN"/s2.out "$RUN"/s3.out | grep -q "receiving $name from"; then
            overlapped=$((overlapped + 1))
        fi
    fi
    # Let the copy finish, so it does not slow the runs after this one.
    for _ in $(seq 1200); do
        [ -e "$RUN/r2/$name" ] || [ -e "$RUN/r3/$name" ] && break
        sleep 0.05
    done
    # Gone everywhere, so copies do not pile up in the page cache run
    # after run (nor get made again).
    rm -f "$RUN/r1/$name" "$RUN/r2/$name" "$RUN/r3/$name"
}

declare -A GET NC VIEWED
overlapped=0
# Warm up the warm case: its digest cached, its bytes read once.
p2p-get -q "$ADDR_s1" warm.bin -o "$RUN/out/warmup.bin"
rm -f "$RUN/out/warmup.bin"

for i in $(seq "$RUNS"); do
    # Odd runs: nc first; even runs: p2p-get first.
    [ $((i % 2)) = 1 ] && NC[warm]+=" $(timed_nc "$RUN/src/small.bin")"
    [ -n "$VIEW" ] && [ $((i % 2)) = 0 ] && viewed warm index s1 -- "$ADDR_s1" warm.bin "$RUN/src/small.bin"
    GET[warm]+=" $(timed_get "$ADDR_s1" warm.bin "$RUN/src/small.bin")"
    [ -n "$VIEW" ] && [ $((i % 2)) = 1 ] && viewed warm index s1 -- "$ADDR_s1" warm.bin "$RUN/src/small.bin"
    [ $((i % 2)) = 0 ] && NC[warm]+=" $(timed_nc "$RUN/src/small.bin")"

    [ $((i % 2)) = 1 ] && NC[new]+=" $(timed_nc "$RUN/src/small.bin")"
    [ -n "$VIEW" ] && [ $((i % 2)) = 0 ] && new_run "new$i-v" index s1
    new_run "new$i"
    [ -n "$VIEW" ] && [ $((i % 2)) = 1 ] && new_run "new$i-v" index s1
    [ $((i % 2)) = 0 ] && NC[new]+=" $(timed_nc "$RUN/src/small.bin")"
    say "run $i of $RUNS (seconds, p2p-get/nc):$(for c in warm new; do
        printf ' %s %s/%s' "$c" "${GET[$c]##* }" "${NC[$c]##* }"
    done)"
done
# Peak memory of the ring, then the ring stops: the lone supernode's case
# runs with nothing else going on.
ring_peaks=()
for p in s1 s2 s3; do
    pid=$(eval echo "\$PID_$p")
    ring_peaks+=("$(peak_rss_kib "$pid")")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
done
kill "$PID_index"
rm -rf "$RUN/r1" "$RUN/r2" "$RUN/r3"

for i in $(seq "$RUNS"); do
    [ $((i % 2)) = 1 ] && NC[one]+=" $(timed_nc "$RUN/src/big.bin")"
    [ -n "$VIEW" ] && [ $((i % 2)) = 0 ] &&
        viewed one index1 solo -- "$ADDR_solo" "one$i-v.bin" "$RUN/src/big.bin" "$RUN/solo/one$i-v.bin"
    GET[one]+=" $(timed_get "$ADDR_solo" "one$i.bin" "$RUN/src/big.bin" "$RUN/solo/one$i.bin")"
    [ -n "$VIEW" ] && [ $((i % 2)) = 1 ] &&
        viewed one index1 solo -- "$ADDR_solo" "one$i-v.bin" "$RUN/src/big.bin" "$RUN/solo/one$i-v.bin"
    [ $((i % 2)) = 0 ] && NC[one]+=" $(timed_nc "$RUN/src/big.bin")"
    rm -f "$RUN/solo/one$i.bin" "$RUN/solo/one$i-v.bin"
    say "run $i of $RUNS (seconds, p2p-get/nc): one ${GET[one]##* }/${NC[one]##* }"
done

note "results (loopback, to a file, $RUNS runs each; MiB/s, best and median)"
printf '%-6s %-44s %10s %10s %10s %10s %8s %8s\n' case what "p2p-get" "" nc "" "ratio" ""
printf '%-6s %-44s %10s %10s %10s %10s %8s %8s\n' "" "" best median best median best median
row() {
    local case=$1 what=$2 bytes=$3
    # shellcheck disable=SC2086
    local gb gm nb nm
    gb=$(best ${GET[$case]}) gm=$(median ${GET[$case]})
    nb=$(best ${NC[$case]}) nm=$(median ${NC[$case]})
    printf '%-6s %-44s %10s %10s %10s %10s %8.2f %8.2f\n' "$case" "$what" \
        "$(mibps "$bytes" "$gb")" "$(mibps "$bytes" "$gm")" \
        "$(mibps "$bytes" "$nb")" "$(mibps "$bytes" "$nm")" \
        "$(awk -v a="$nb" -v b="$gb" 'BEGIN { print a / b }')" \
        "$(awk -v a="$nm" -v b="$gm" 'BEGIN { print a / b }')"
}
row warm "${SMALL_MIB} MiB, cached, three-supernode ring" "$((SMALL_MIB << 20))"
row new "${SMALL_MIB} MiB, first download, sync running" "$((SMALL_MIB << 20))"
row one "${BIG_MIB} MiB, first download, one supernode" "$((BIG_MIB << 20))"
if [ -n "$VIEW" ]; then
    note "p2p-get with pages open against closed, same daemons, same run (MiB/s, median; ratio >= 0.97 meets the 3 % goal)"
    printf '%-6s %10s %10s %8s\n' case closed open "open/closed"
    for c in warm new one; do
        bytes=$((SMALL_MIB << 20))
        [ "$c" = one ] && bytes=$((BIG_MIB << 20))
        # shellcheck disable=SC2086
        gm=$(median ${GET[$c]}) vm=$(median ${VIEWED[$c]})
        printf '%-6s %10s %10s %8.3f\n' "$c" "$(mibps "$bytes" "$gm")" "$(mibps "$bytes" "$vm")" \
            "$(awk -v a="$gm" -v b="$vm" 'BEGIN { print a / b }')"
    done
fi
say "new: the copy to the file's owner had begun before the download ended in $overlapped of $RUNS runs (a synchronizer holds back up to 1 s while a download is served)"
for i in 0 1 2; do
    printf 'peak memory p2p-superd s%s    %6.1f MiB\n' $((i + 1)) "$(awk -v k="${ring_peaks[$i]}" 'BEGIN { print k / 1024 }')"
done
printf 'peak memory p2p-superd solo  %6.1f MiB\n' "$(awk -v k="$(peak_rss_kib "$PID_solo")" 'BEGIN { print k / 1024 }')"
printf 'peak memory p2p-get         %6.1f MiB\n' "$(sort -n "$RUN/get.rss.all" | tail -1 | awk '{ print $1 / 1024 }')"
rm -rf "$RUN/src" "$RUN/solo"
