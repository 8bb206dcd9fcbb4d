#!/usr/bin/env bash
# Swarm benchmark: peerkit (bt-tracker, bt-peer) on its own wire and on the
# BitTorrent wire (bt-peer torrent, share --torrent, fetch NAME.torrent,
# bt-tracker --announce), against the BitTorrent
# client a user would pick instead (aria2c as seeder and leechers,
# opentracker as tracker, mktorrent for the torrent), in the same run, with
# the same file, piece size, peer count and upload caps. aria2c runs with
# DHT, local peer discovery, peer exchange and encryption off; everything
# is on 127.0.0.1.
#
# Cases (the time is from the first leecher's start to the last leecher's
# completion; every copy is compared with the original):
# 1. Capped: one seeder and N leechers (N = 4 and 16), every peer's upload
#    capped at RATE. Lower bound: max(F/u_s, N*F/(u_s + sum u_i)).
# 2. Uncapped: BIG from one seeder to 4 leechers. Lower bound: the time
#    nc takes to copy the file once over loopback into a file (u_s = u_i =
#    one TCP stream's rate, so the formula above gives F/u).
# Each line prints every system's time and its ratio to the bound, then the
# BitTorrent wire's time over the own wire's (goal: at most 1.1).
#
#   scripts/bench-swarm.sh                 defaults: F=32M, RATE=4M, BIG=1024M, pieces 256K
#   F_MIB=16 RATE_MIB=2 NS="4" BIG_MIB=0 scripts/bench-swarm.sh   (quicker; BIG_MIB=0 skips case 2)
#   SYSTEMS=peerkit scripts/bench-swarm.sh                        (peerkit only)
#   SYSTEMS="peerkit btwire" scripts/bench-swarm.sh               (both wires, no aria2c)
#   FETCH_FLAGS=-v scripts/bench-swarm.sh                         (per-piece lines in the logs)
#   VIEW=1 REPEAT=3 scripts/bench-swarm.sh  (peerkit without and with its live views: every
#       daemon with --http, a viewer holding the tracker's and the seed's /events open and
#       asking their state.json every second, as an open page does; runs alternate, medians
#       of REPEAT, the ratio with/without; aria2c is left out)
set -uo pipefail
. "$(dirname "$0")/lib.sh"

F_MIB=${F_MIB:-32}
RATE_MIB=${RATE_MIB:-4}
NS=${NS:-4 16}
BIG_MIB=${BIG_MIB:-1024}
PIECE_KIB=${PIECE_KIB:-256}
VIEW=${VIEW:-}
REPEAT=${REPEAT:-3}
if [ -n "$VIEW" ]; then
    SYSTEMS=peerkit
fi
SYSTEMS=${SYSTEMS:-peerkit btwire aria2c}
PERIODS=(--ping-interval 1 --report-interval 2)

demo_init bench-swarm
note "swarm benchmark in $RUN ($(nproc) cores; $(uptime | sed 's/.*load average/load average/'))"

need bc bc
need nc netcat-openbsd
[ -n "$VIEW" ] && need curl curl
case " $SYSTEMS " in *" aria2c "*)
    need aria2c aria2
    need opentracker opentracker
    need mktorrent mktorrent
    need curl curl
    ;;
esac

now() { date +%s.%N; }

# free_port: a port no TCP or UDP socket uses now.
free_port() {
    local p
    while :; do
        # Below the kernel's ephemeral range, so no outgoing socket has it.
        p=$((10000 + RANDOM % 20000))
        if ! ss -antuH "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return
        fi
    done
}

# copies_match DIR N NAME ORIGINAL: every leecher's copy is the original.
copies_match() {
    local dir=$1 n=$2 name=$3 orig=$4 i
    for i in $(seq 1 "$n"); do
        if ! cmp -s "$orig" "$dir/p$i/$name"; then
            say "p$i's copy differs from the original" >&2
            return 1
        fi
    done
}

RUN_PIDS=()
stop_all() {
    local pid
    for pid in "${RUN_PIDS[@]}"; do ours "$pid" && kill "$pid" 2>/dev/null; done
    for pid in "${RUN_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    RUN_PIDS=()
}

# leecher_started PID: a leecher started in the background, to stop and
# measure with the others.
leecher_started() {
    PIDS+=("$1")
    RUN_PIDS+=("$1")
    PEER_PIDS+=("$1")
}

# completed DIR/pI: leecher I said it is complete (bt-peer's `complete: `
# line, stamped as it came by stamp_complete; aria2c's completion hook).
completed() { [ -s "$1.done" ]; }

# wait_leechers DIR N WHAT DONE: waits (up to 30 min) until `DONE DIR/pI`
# holds for every leecher I in 1..N; WHAT names them in the message.
wait_leechers() {
    local dir=$1 n=$2 what=$3 done=$4 i left=$2 deadline=$(($(date +%s) + 1800))
    while [ "$left" -gt 0 ]; do
        left=0
        for i in $(seq 1 "$n"); do
            "$done" "$dir/p$i" || left=$((left + 1))
        done
        if [ "$(date +%s)" -gt "$deadline" ]; then
            say "timed out with $left $what unfinished" >&2
            return 1
        fi
        [ "$left" -gt 0 ] && sleep 0.05
    done
    return 0
}

# bt_leechers DIR N FILE FETCH...: N leechers, the Ith running
# `FETCH... --out DIR/pI` in the background; waits until each is
# complete; sets ELAPSED (from the first start to the last completion line)
# and PEER_PIDS and
# compares every copy with FILE.
bt_leechers() {
    local dir=$1 n=$2 file=$3 i t0
    shift 3
    PEER_PIDS=()
    t0=$(now)
    for i in $(seq 1 "$n"); do
        mkdir -p "$dir/p$i"
        "$@" --out "$dir/p$i" 2>"$dir/p$i.err" > >(stamp_complete "$dir/p$i") &
        leecher_started $!
    done
    wait_leechers "$dir" "$n" leechers completed || return 1
    ELAPSED=$(last_done "$t0" "$dir/p" "$n")
    copies_match "$dir" "$n" "$(basename "$file")" "$file"
}

# watch VIEW_URL: what an open page does, in the background: the event
# stream held open, state.json asked every second.
# VIEW_WATCH="events state" (the default) picks what it does.
watch_view() {
    case " ${VIEW_WATCH:-events state} " in *" events "*)
        curl -sN "$1events" >/dev/null 2>&1 &
        RUN_PIDS+=($!)
        PIDS+=($!)
        ;;
    esac
    case " ${VIEW_WATCH:-events state} " in *" state "*)
        (while :; do curl -s "$1state.json" >/dev/null 2>&1; sleep 1; done) &
        RUN_PIDS+=($!)
        PIDS+=($!)
        ;;
    esac
}

# run_peerkit NAME FILE N [CAP]: bt-tracker, a seeder, N leechers; waits
# until every leecher completes; sets ELAPSED, SEED_PID, PEER_PIDS. With
# WITH_VIEW set, every daemon serves its view and the tracker's and the
# seed's are watched.
run_peerkit() {
    local name=$1 file=$2 n=$3 cap=${4:-} limit=() http=()
    [ -n "$cap" ] && limit=(--upload-limit "$cap")
    [ -n "${WITH_VIEW:-}" ] && http=(--http 127.0.0.1:0)
    local dir="$RUN/$name"
    mkdir -p "$dir"
    local save=$RUN
    RUN=$dir
    start tracker bt-tracker --listen 127.0.0.1:0 "${http[@]}" || return 1
    start seed bt-peer share "$file" --tracker "$ADDR_tracker" --listen 127.0.0.1:0 \
        "${limit[@]}" --piece-size "${PIECE_KIB}K" "${PERIODS[@]}" "${http[@]}" || return 1
    RUN=$save
    RUN_PIDS=("$PID_tracker" "$PID_seed")
    wait_line "$dir/seed.out" '^swarm ' 600 || return 1
    if [ -n "${WITH_VIEW:-}" ]; then
        watch_view "$(sed -n 's/^view on //p' "$dir/tracker.out")"
        watch_view "$(sed -n 's/^view on //p' "$dir/seed.out")"
    fi
    SEED_PID=$PID_seed
    # shellcheck disable=SC2086 # FETCH_FLAGS is a list of flags
    bt_leechers "$dir" "$n" "$file" "$BIN/bt-peer" fetch "$(basename "$file")" \
        --tracker "$ADDR_tracker" --listen 127.0.0.1:0 "${limit[@]}" "${PERIODS[@]}" \
        "${http[@]}" ${FETCH_FLAGS:-}
}

# run_btwire NAME FILE N [CAP]: as run_peerkit, on the BitTorrent wire:
# bt-tracker --announce, bt-peer torrent, a seeder sharing with --torrent,
# N leechers fetching the .torrent.
run_btwire() {
    local name=$1 file=$2 n=$3 cap=${4:-} limit=()
    [ -n "$cap" ] && limit=(--upload-limit "$cap")
    local dir="$RUN/$name" base url
    base=$(basename "$file")
    mkdir -p "$dir"
    local save=$RUN
    RUN=$dir
    start tracker bt-tracker --listen 127.0.0.1:0 --announce 127.0.0.1:0 || { RUN=$save; return 1; }
    RUN=$save
    RUN_PIDS=("$PID_tracker")
    wait_line "$dir/tracker.out" '^announce on ' 30 || return 1
    url=$(sed -n 's/^announce on //p' "$dir/tracker.out" | head -n1)
    "$BIN/bt-peer" torrent "$file" -o "$dir/$base.torrent" --tracker "$url" \
        --piece-size "${PIECE_KIB}K" >"$dir/torrent.out" 2>&1 || return 1
    RUN=$dir
    start seed bt-peer share "$file" --torrent "$dir/$base.torrent" --listen 127.0.0.1:0 \
        "${limit[@]}" || { RUN=$save; return 1; }
    RUN=$save
    RUN_PIDS+=("$PID_seed")
    wait_line "$dir/seed.out" '^seeding ' 600 || return 1
    SEED_PID=$PID_seed
    # shellcheck disable=SC2086 # FETCH_FLAGS is a list of flags
    bt_leechers "$dir" "$n" "$file" "$BIN/bt-peer" fetch "$dir/$base.torrent" \
        --listen 127.0.0.1:0 "${limit[@]}" ${FETCH_FLAGS:-}
}

# run_aria NAME FILE N [CAP]: opentracker, an aria2c seeder and N aria2c
# leechers (which keep seeding, as bt-peer fetch does); sets ELAPSED, the
# latest completion time (each leecher's completion hook writes it).
run_aria() {
    local name=$1 file=$2 n=$3 cap=${4:-} i
    local dir="$RUN/$name" base
    base=$(basename "$file")
    mkdir -p "$dir/seed"
    # The tracker: Debian's opentracker serves only torrents on its
    # whitelist. A port taken between the check and the bind: another one.
    local port announce attempt tries
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        announce="http://127.0.0.1:$port/announce"
        rm -f "$dir/$base.torrent"
        mktorrent -l "$(echo "l($PIECE_KIB * 1024) / l(2)" | bc -l | xargs printf '%.0f')" \
            -a "$announce" -o "$dir/$base.torrent" "$file" >"$dir/mktorrent.out" 2>&1 || return 1
        aria2c -S "$dir/$base.torrent" | sed -n 's/^Info Hash: //p' >"$dir/whitelist"
        printf 'access.whitelist %s\n' "$dir/whitelist" >"$dir/opentracker.conf"
        (cd "$dir" && exec opentracker -i 127.0.0.1 -p "$port" -P "$port" -A 127.0.0.1 \
            -f "$dir/opentracker.conf") >"$dir/tracker.out" 2>&1 &
        PIDS+=($!)
        RUN_PIDS=($!)
        tries=0
        until nc -z 127.0.0.1 "$port" 2>/dev/null; do
            tries=$((tries + 1))
            kill -0 "${RUN_PIDS[0]}" 2>/dev/null || break
            [ "$tries" -gt 200 ] && break
            sleep 0.05
        done
        nc -z 127.0.0.1 "$port" 2>/dev/null && break
        say "opentracker on port $port: $(cat "$dir/tracker.out")" >&2
        stop_all
        [ "$attempt" -eq 5 ] && return 1
    done
    local common=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false
        --enable-peer-exchange=false --bt-require-crypto=false --bt-min-crypto-level=plain
        --disable-ipv6=true --seed-ratio=0.0 --file-allocation=none
        --summary-interval=0 --console-log-level=warn --bt-max-peers=0
        --listen-port=40000-49999)
    [ -n "$cap" ] && common+=(--max-overall-upload-limit="$cap")
    ln -f "$file" "$dir/seed/$base" 2>/dev/null || cp "$file" "$dir/seed/$base"
    aria2c "${common[@]}" --dir="$dir/seed" --check-integrity=true --bt-seed-unverified=true \
        "$dir/$base.torrent" >"$dir/seed.out" 2>&1 &
    PIDS+=($!)
    RUN_PIDS+=($!)
    SEED_PID=$!
    # Ready once the tracker counts it as a seeder.
    tries=0
    until [ "$(curl -s "http://127.0.0.1:$port/stats?mode=peer" | sed -n 2p)" = 1 ]; do
        tries=$((tries + 1))
        [ "$tries" -gt 600 ] && { say "the aria2c seeder never announced" >&2; return 1; }
        sleep 0.05
    done
    PEER_PIDS=()
    local t0
    t0=$(now)
    for i in $(seq 1 "$n"); do
        mkdir -p "$dir/p$i"
        printf '#!/bin/sh\ndate +%%s.%%N >"%s"\n' "$dir/p$i.done" >"$dir/p$i.hook"
        chmod +x "$dir/p$i.hook"
        aria2c "${common[@]}" --dir="$dir/p$i" --on-bt-download-complete="$dir/p$i.hook" \
            "$dir/$base.torrent" >"$dir/p$i.out" 2>&1 &
        leecher_started $!
    done
    wait_leechers "$dir" "$n" "aria2c leechers" completed || return 1
    ELAPSED=$(last_done "$t0" "$dir/p" "$n")
    copies_match "$dir" "$n" "$base" "$file"
}

# nc_copy FILE: sets ELAPSED to the time nc takes to copy FILE over
# loopback into a file (lib.sh's nc_seconds), and checks the copy.
nc_copy() {
    local file=$1 out="$RUN/nc.bin"
    ELAPSED=$(nc_seconds "$file" "$out") || return 1
    cmp -s "$file" "$out" || return 1
    rm -f "$out"
}

# bench CASE FILE N CAP BOUND: runs each system; prints one row.
bench() {
    local label=$1 file=$2 n=$3 cap=$4 bound=$5 sys t row own= bt=
    row=$(printf '%-22s %8.2f' "$label" "$bound")
    for sys in peerkit btwire aria2c; do
        case " $SYSTEMS " in *" $sys "*) ;; *)
            row+=$(printf ' %10s %7s' - -)
            continue
            ;;
        esac
        local tag=${label// /-}
        tag=${tag//=/}
        if [ "$sys" = peerkit ]; then
            run_peerkit "peerkit-$tag" "$file" "$n" "$cap"
        elif [ "$sys" = btwire ]; then
            run_btwire "btwire-$tag" "$file" "$n" "$cap"
        else
            run_aria "aria2c-$tag" "$file" "$n" "$cap"
        fi
        local ok=$?
        if [ "$label" = "uncapped 4 leechers" ] && [ "$ok" -eq 0 ]; then
            local mem="seeder $(($(peak_rss_kib "$SEED_PID") / 1024))"
            local pid
            for pid in "${PEER_PIDS[@]}"; do mem+=" $(($(peak_rss_kib "$pid") / 1024))"; done
            MEM_NOTES+=("$sys peak memory (VmHWM, MiB): $mem")
        fi
        stop_all
        rm -f "$RUN/$sys-$tag"/p*/"$(basename "$file")" "$RUN/$sys-$tag/seed/$(basename "$file")"
        if [ "$ok" -ne 0 ]; then
            say "$label: $sys failed; logs in $RUN/$sys-$tag" >&2
            exit 2
        fi
        t=$ELAPSED
        [ "$sys" = peerkit ] && own=$t
        [ "$sys" = btwire ] && bt=$t
        row+=$(printf ' %10.2f %7.3f' "$t" "$(echo "$t / $bound" | bc -l)")
    done
    if [ -n "$own" ] && [ -n "$bt" ]; then
        row+=$(printf ' %8.3f' "$(echo "$bt / $own" | bc -l)")
    else
        row+=$(printf ' %8s' -)
    fi
    say "$row"
}

# bench_view CASE FILE N CAP BOUND: peerkit without and with its views,
# REPEAT runs each, alternating which goes first; prints the medians and
# the ratio with/without (1.03 is 3 % slower with the views).
bench_view() {
    local label=$1 file=$2 n=$3 cap=$4 bound=$5 r off=() on=() tag=${1// /-}
    tag=${tag//=/}
    for r in $(seq 1 "$REPEAT"); do
        local order="off on"
        [ $((r % 2)) -eq 0 ] && order="on off"
        for mode in $order; do
            if [ "$mode" = on ]; then
                WITH_VIEW=1 run_peerkit "view-$tag-$r" "$file" "$n" "$cap" || { stop_all; exit 2; }
                on+=("$ELAPSED")
            else
                WITH_VIEW='' run_peerkit "plain-$tag-$r" "$file" "$n" "$cap" || { stop_all; exit 2; }
                off+=("$ELAPSED")
            fi
            stop_all
            rm -f "$RUN"/*-"$tag-$r"/p*/"$(basename "$file")"
        done
    done
    local a b
    a=$(printf '%s\n' "${off[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    b=$(printf '%s\n' "${on[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    say "$(printf '%-22s %8.2f %10.2f %10.2f %7.3f   (runs: without %s; with %s)' "$label" "$bound" "$a" "$b" \
        "$(echo "$b / $a" | bc -l)" "${off[*]}" "${on[*]}")"
}

# each_case BENCH: `BENCH CASE FILE N CAP BOUND` for every case: capped
# with each N of NS, then (unless BIG_MIB=0) uncapped with 4 leechers.
each_case() {
    local bench=$1 n bound
    head -c "$F" /dev/urandom >"$RUN/src/capped.bin"
    for n in $NS; do
        bound=$(echo "a = $F / $U; b = $n * $F / ($U + $n * $U); if (a > b) a else b" | bc -l)
        "$bench" "capped N=$n" "$RUN/src/capped.bin" "$n" "${RATE_MIB}M" "$bound"
    done
    rm -f "$RUN/src/capped.bin"
    [ "$BIG_MIB" -gt 0 ] || return 0
    head -c "$((BIG_MIB << 20))" /dev/urandom >"$RUN/src/big.bin"
    nc_copy "$RUN/src/big.bin" || { say "nc copy failed" >&2; exit 2; }
    "$bench" "uncapped 4 leechers" "$RUN/src/big.bin" 4 "" "$ELAPSED"
    rm -f "$RUN/src/big.bin"
}

MEM_NOTES=()
mkdir -p "$RUN/src"
F=$((F_MIB << 20))
U=$((RATE_MIB << 20))
if [ -n "$VIEW" ]; then
    note "live views: peerkit without and with --http and a watching page; medians of $REPEAT runs"
    printf '%-22s %8s %10s %10s %7s\n' case bound without with ratio
    each_case bench_view
else
    note "pieces of $PIECE_KIB KiB; capped: F = $F_MIB MiB, every peer's upload capped at $RATE_MIB MiB/s"
    printf '%-22s %8s %10s %7s %10s %7s %10s %7s %8s\n' case "bound" "own wire" ratio "bt wire" ratio \
        "aria2c" ratio "bt/own"
    each_case bench
    if [ "$BIG_MIB" -gt 0 ]; then
        say "(uncapped: $BIG_MIB MiB; bound = one nc copy over loopback into a file)"
        for m in "${MEM_NOTES[@]}"; do say "$m"; done
    fi
fi
say "logs: $RUN"
