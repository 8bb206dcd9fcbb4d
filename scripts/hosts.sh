#!/usr/bin/env bash
# The multi-host suite: every system run across hosts that are network
# namespaces (one IP each in 10.77.0.0/24, a veth into a bridge in a
# namespace of its own; nothing is added to the root namespace), with links
# cut and restored mid-transfer, loss and rate caps on links, and a daemon
# whose address was removed asked to stop. Needs root, ip and tc.
#
#   scripts/hosts.sh                 the default suite (a few minutes)
#   scripts/hosts.sh GROUP...        the named groups: dht swarm flood rdir nap loss sigterm
#   scripts/hosts.sh bench           the swarm benchmark over 200 Mbit/s links (not in the suite)
#   scripts/test.sh hosts            the default suite, through the demo runner
#
# Every check prints PASS or FAIL (with expected and obtained) as it runs,
# and the closing summary lists them all; the exit status is 0 only if none
# failed. Where namespaces cannot be made (not root, no ip, unshare
# denied) it says why and exits 0 with a SKIPPED line.
#
# Every namespace is named pkh-<pid>-NAME and recorded; on exit, failure
# or Ctrl-C every process started is stopped by its PID (SIGTERM, then
# SIGKILL after 3 s) and exactly the namespaces made are deleted.
# KEEP=1 keeps the run folder (logs of every process) after a passing run.
#
# Knobs: LOSS (percent, 3), HB (supernode heartbeat, 1 s), PING (peer ping
# interval, 1 s). The benchmark: RUNS (1), F_MIB (128), RATE_MBIT (200),
# NS ("6 16"), CUT (1: also the "one fetcher cut at 30%" case), WIRE
# ("btwire aria2c": the same swarm on the BitTorrent wire, by bt-peer and by
# aria2c with opentracker; "" leaves them out), BENCH_OUT (a folder for the
# fetchers' copies, e.g. /dev/shm; default the run folder).
#
# Checks are written as `check SYSTEM CASE EXPECTED CMD...`; many CMDs are
# `eval '...'` strings, single-quoted on purpose so they expand when the
# check runs (SC2016). lib.sh's start and spawn_on set PID_x, ADDR_x and
# PORT_x through eval (SC2154).
# shellcheck disable=SC2016,SC2154
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NET=10.77.0
PFX="pkh-$$"
SW="$PFX-sw"
NAMESPACES=()
HOSTS=0
LOSS=${LOSS:-3}
HB=${HB:-1}
PING=${PING:-1}
RESULTS=()
GOT=
LINK_EMULATION=

GROUPS_DEFAULT=(dht swarm flood rdir nap loss sigterm)

# ---------------------------------------------------------------- hosts

ns_of() { printf '%s-h%s' "$PFX" "$1"; }
ip_of() { printf '%s.%s' "$NET" "$1"; }

# on N CMD...: runs CMD on host N.
on() {
    local n=$1
    shift
    ip netns exec "$(ns_of "$n")" "$@"
}

# make_ns NAME: creates namespace NAME and records it for the teardown.
make_ns() {
    ip netns add "$1" || return 1
    NAMESPACES+=("$1")
    ip -n "$1" link set lo up
}

# make_hosts N: hosts 1..N (made once each), on the bridge.
make_hosts() {
    local want=$1 i ns
    if [ ${#NAMESPACES[@]} -eq 0 ]; then
        make_ns "$SW" || return 1
        ip -n "$SW" link add br0 type bridge || return 1
        ip -n "$SW" link set br0 up || return 1
    fi
    for ((i = HOSTS + 1; i <= want; i++)); do
        ns=$(ns_of "$i")
        make_ns "$ns" || return 1
        ip link add eth0 netns "$ns" type veth peer name "h$i" netns "$SW" || return 1
        ip -n "$SW" link set "h$i" master br0 up || return 1
        ip -n "$ns" addr add "$(ip_of "$i")/24" dev eth0 || return 1
        ip -n "$ns" link set eth0 up || return 1
        HOSTS=$i
    done
}

# cut_link N / restore_link N: the switch side of host N's link goes down / up (a
# pulled cable: neither end is told, packets vanish).
cut_link() { ip -n "$SW" link set "h$1" down; }
restore_link() { ip -n "$SW" link set "h$1" up; }

# detect_netem: netem if this kernel has it (loss and delay), else HTB with
# a zero-length fifo fed by a random BPF classifier. Sets LINK_EMULATION.
detect_netem() {
    [ -n "$LINK_EMULATION" ] && return
    command -v modprobe >/dev/null 2>&1 && modprobe sch_netem 2>/dev/null
    if tc -n "$SW" qdisc add dev lo root netem delay 1ms 2>/dev/null; then
        tc -n "$SW" qdisc del dev lo root 2>/dev/null
        LINK_EMULATION=netem
    else
        LINK_EMULATION=htb-bpf
    fi
}

# bpf_loss PERCENT: classic BPF returning "match" with probability PERCENT:
# A = random u32 (ld [SKF_AD_OFF + SKF_AD_RANDOM]); A > threshold -> match.
bpf_loss() {
    local th
    th=$(awk -v p="$1" 'BEGIN { printf "%.0f", 4294967295 * (1 - p / 100) }')
    printf '4,32 0 0 %u,37 0 1 %u,6 0 0 4294967295,6 0 0 0' 0xfffff038 "$th"
}

# shape NS DEV RATE_MBIT LOSS_PERCENT: HTB root capping DEV at RATE (0: no
# cap); with a loss, a share of the packets is dropped (netem's loss, or the
# BPF classifier steering them into a fifo that holds nothing).
shape() {
    local ns=$1 dev=$2 rate=$3 loss=$4 r
    r=${rate}mbit
    [ "$rate" = 0 ] && r=10gbit
    tc -n "$ns" qdisc del dev "$dev" root 2>/dev/null
    tc -n "$ns" qdisc add dev "$dev" root handle 1: htb default 10 r2q 1000 || return 1
    tc -n "$ns" class add dev "$dev" parent 1: classid 1:10 htb rate "$r" burst 64k cburst 64k quantum 30000 || return 1
    if [ "$loss" != 0 ]; then
        if [ "$LINK_EMULATION" = netem ]; then
            tc -n "$ns" qdisc add dev "$dev" parent 1:10 handle 10: netem loss "$loss%" delay 1ms || return 1
        else
            tc -n "$ns" class add dev "$dev" parent 1: classid 1:20 htb rate "$r" quantum 30000 || return 1
            tc -n "$ns" qdisc add dev "$dev" parent 1:20 handle 20: pfifo limit 0 || return 1
            tc -n "$ns" filter add dev "$dev" parent 1: protocol all prio 1 \
                bpf bytecode "$(bpf_loss "$loss")" classid 1:20 || return 1
        fi
    fi
}

# link_shape N RATE_MBIT LOSS: host N's link capped at RATE each way (the
# host's egress and the switch port towards it); the loss is applied at the
# switch port only, so the sender's stack is never told of a drop, and a
# packet crosses exactly one switch port: LOSS on every link is LOSS per packet.
link_shape() {
    shape "$(ns_of "$1")" eth0 "$2" 0 && shape "$SW" "h$1" "$2" "$3"
}

# unshape_all: every link back to plain, every cut link restored.
unshape_all() {
    local i
    for ((i = 1; i <= HOSTS; i++)); do
        tc -n "$(ns_of "$i")" qdisc del dev eth0 root 2>/dev/null
        tc -n "$SW" qdisc del dev "h$i" root 2>/dev/null
        restore_link "$i"
    done
}

# switch_drops: packets the switch ports dropped so far.
switch_drops() {
    local i total=0 d
    for ((i = 1; i <= HOSTS; i++)); do
        # Only the dropping leaf (the HTB root counts its children's drops too).
        d=$(tc -n "$SW" -s qdisc show dev "h$i" |
            awk '/^qdisc/ { leaf = ($2 == "pfifo" || $2 == "netem") } leaf && /dropped/ { gsub(",", "", $7); s += $7 } END { print s + 0 }')
        total=$((total + d))
    done
    echo "$total"
}

# ------------------------------------------------------------ processes

# start_on NAME N CMD...: a daemon on host N (lib.sh's start: waits for its
# "listening on" line, sets PID_NAME, ADDR_NAME, PORT_NAME).
start_on() {
    local name=$1 n=$2
    shift 2
    start "$name" ip netns exec "$(ns_of "$n")" "$@"
}

# spawn_on NAME N CMD...: a process on host N, not waited for. With
# STAMP=1, its stdout goes through stamp_complete (RUN/NAME.done: when it
# said `complete: `).
spawn_on() {
    local name=$1 n=$2
    shift 2
    if [ -n "${STAMP:-}" ]; then
        ip netns exec "$(ns_of "$n")" "$@" 2>"$RUN/$name.err" > >(stamp_complete "$RUN/$name") &
    else
        ip netns exec "$(ns_of "$n")" "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" &
    fi
    PIDS+=($!)
    eval "PID_$name=$!"
}

# stop_all: SIGTERM to every process started, SIGKILL to those left after
# 3 s; all reaped. Only PIDs that are still the processes this script
# started (lib.sh's ours), one by one.
stop_all() {
    local pid i any
    for pid in "${PIDS[@]}"; do
        ours "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    for ((i = 0; i < 60; i++)); do
        any=
        for pid in "${PIDS[@]}"; do
            ours "$pid" && any=1 && break
        done
        [ -z "$any" ] && break
        sleep 0.05
    done
    for pid in "${PIDS[@]}"; do
        ours "$pid" && kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    PIDS=()
}

# exited_within PID SECS: waits up to SECS for PID to end; its status in RC.
exited_within() {
    local pid=$1 end
    end=$(awk -v t="$(date +%s.%N)" -v s="$2" 'BEGIN { printf "%.3f", t + s }')
    exited_by "$pid" "$end"
}

# exited_by PID END: waits until END (seconds since the epoch) for PID to
# end; its status in RC.
exited_by() {
    local pid=$1 end=$2
    RC=
    while ours "$pid"; do
        awk -v e="$end" -v t="$(date +%s.%N)" 'BEGIN { exit !(t < e) }' || return 1
        sleep 0.02
    done
    wait "$pid" 2>/dev/null
    RC=$?
    return 0
}

teardown() {
    local i
    trap - INT TERM
    stop_all
    [ -n "${BENCH_OUT:-}" ] && rm -rf "${BENCH_OUT:?}/$PFX-copies" "${BENCH_OUT:?}/$PFX-copies-streams"
    for ((i = ${#NAMESPACES[@]} - 1; i >= 0; i--)); do
        ip netns del "${NAMESPACES[i]}" 2>/dev/null ||
            say "hosts.sh: could not delete namespace ${NAMESPACES[i]}" >&2
    done
    NAMESPACES=()
}

# ---------------------------------------------------------------- checks

# record STATUS SYSTEM CASE [DETAIL]
record() {
    RESULTS+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"${4:-}")
}

# check SYSTEM CASE EXPECTED CMD...: PASS if CMD succeeds; else FAIL with
# what was expected and what CMD left in GOT.
check() {
    local sys=$1 case=$2 expected=$3
    shift 3
    GOT=
    if "$@"; then
        say "PASS  $sys: $case"
        record PASS "$sys" "$case"
    else
        [ -n "$GOT" ] || GOT="not so (the check's command failed)"
        say "FAIL  $sys: $case"
        say "        expected: $expected"
        say "        obtained: $GOT"
        record FAIL "$sys" "$case" "expected: $expected | obtained: $GOT"
    fi
}

skip() {
    say "SKIP  $1: $2 ($3)"
    record SKIP "$1" "$2" "$3"
}

# Deadlines measured from a cut allow 0.3 s for noticing the line (polling
# every 50 ms, a grep per poll, on a busy 2-core machine): the checks
# below compare `since` with the bound + 0.3.
# since T0: seconds since T0 (date +%s.%N), two decimals.
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# line_within FILE ERE SECS: like wait_line, quietly.
line_within() { wait_line "$1" "$2" "$3" 2>/dev/null; }

# ere TEXT: TEXT as an ERE matching itself.
ere() { printf '%s' "$1" | sed 's/[.[\*^$()+?{}|]/\\&/g'; }

# same FILE1 FILE2: byte-identical, else GOT says how.
same() {
    if [ ! -e "$2" ]; then
        GOT="$2 is missing"
        return 1
    fi
    cmp -s "$1" "$2" || {
        GOT="$2 differs from $1 ($(stat -c %s "$2") bytes, $(stat -c %s "$1") expected)"
        return 1
    }
}

# no_partial DIR: no partial or temporary download left in DIR.
no_partial() {
    local left
    left=$(find "$1" -maxdepth 1 \( -name '.*.part' -o -name '.peerkit-tmp*' -o -name '*.part' \) -printf '%f ' 2>/dev/null)
    [ -z "$left" ] || {
        GOT="left in $1: $left"
        return 1
    }
}

# ------------------------------------------------------------------ DHT

# names_at N ADDR: the sorted listing of supernode ADDR, asked from host N.
names_at() { on "$1" p2p-ls --timeout 5 "$2" | sort; }

# on_owner N FILE ADDR...: FILE is on its responsible supernode, seen from
# host N: every supernode holds it, or one lacking it redirects a download
# to one that serves it (the balance demo's test).
on_owner() {
    local n=$1 file=$2 addr lacking=
    shift 2
    for addr in "$@"; do
        if ! names_at "$n" "$addr" | grep -qxF -- "$file"; then
            lacking=$addr
            break
        fi
    done
    [ -z "$lacking" ] && return 0
    on "$n" p2p-get --timeout 5 --force "$lacking" "$file" -o "$RUN/dht/locate.out" 2>"$RUN/dht/locate.err" &&
        grep -q "redirecting to" "$RUN/dht/locate.err"
}

# wait_balanced N SECS FILES -- ADDR...
wait_balanced() {
    local n=$1 secs=$2 files=() f bad t0
    shift 2
    while [ "$1" != "--" ]; do
        files+=("$1")
        shift
    done
    shift
    t0=$(date +%s)
    while :; do
        bad=
        for f in "${files[@]}"; do
            on_owner "$n" "$f" "$@" || {
                bad=$f
                break
            }
        done
        [ -z "$bad" ] && return 0
        if [ $(($(date +%s) - t0)) -ge "$secs" ]; then
            GOT="after ${secs}s $bad is not on its responsible supernode (last try: $(tail -n1 "$RUN/dht/locate.err" 2>/dev/null))"
            return 1
        fi
        sleep 0.25
    done
}

# part_reaches FILE BYTES SECS: FILE (a partial download) holds BYTES.
part_reaches() {
    local f=$1 bytes=$2 secs=$3 i
    for ((i = 0; i < secs * 20; i++)); do
        [ "$(stat -c %s "$f" 2>/dev/null || echo 0)" -ge "$bytes" ] && return 0
        sleep 0.05
    done
    return 1
}

group_dht() {
    local d=$RUN/dht i f a files redirected=0 t0 s1 s2 s3 rc
    note "DHT: index and supernode 1 on host 1 with the README's defaults, supernodes 2 and 3 on hosts 2 and 3, clients on host 4"
    make_hosts 4 || return 1
    mkdir -p "$d/repo1" "$d/repo2" "$d/repo3" "$d/client" "$d/up"
    cp "$ROOT"/testdata/repo01/texto0?.txt "$d/repo1/"
    head -c $((24 << 20)) /dev/urandom >"$d/repo2/big.bin"
    for i in $(seq -w 1 12); do printf 'upload %s from host 4\n' "$i" >"$d/up/u$i.txt"; done

    start_on index 1 p2p-index || return 1
    start_on s1 1 p2p-superd "$d/repo1" --sync-interval 0.5 --heartbeat "$HB" || return 1
    start_on s2 2 p2p-superd "$d/repo2" --index "$(ip_of 1):6110" --sync-interval 0.5 --heartbeat "$HB" || return 1
    start_on s3 3 p2p-superd "$d/repo3" --index "$(ip_of 1):6110" --sync-interval 0.5 --heartbeat "$HB" || return 1
    s1="$(ip_of 1):$PORT_s1" s2="$(ip_of 2):$PORT_s2" s3="$(ip_of 3):$PORT_s3"
    check dht "three supernodes on three hosts join the ring" "3 joined lines on the index" \
        wait_count "$RUN/index.out" '^joined ' 3 10
    say "    index: $(grep '^joined ' "$RUN/index.out" | tr '\n' ' ')"
    say "    supernode 1 (index host, --index localhost:6110): $(grep -m1 'joined the ring' "$RUN/s1.out")"

    check dht "host 4 lists supernode 1 (on the index host)" "texto01.txt..texto06.txt among the names" \
        eval 'names_at 4 "$s1" >"$d/ls1" && [ "$(grep -c "^texto0[1-6].txt$" "$d/ls1")" -eq 6 ] || { GOT="$(tr "\n" " " <"$d/ls1")"; false; }'

    for i in $(seq -w 1 12); do
        on 4 p2p-put --timeout 5 "$s2" "$d/up/u$i.txt" 2>>"$d/put.err" || break
    done
    check dht "12 uploads from host 4 to supernode 2 are stored" "every p2p-put exits 0" \
        eval '[ "$i" = 12 ] && [ ! -s "$d/put.err" ] || { GOT="$(tail -n1 "$d/put.err")"; false; }'

    mapfile -t files < <(cd "$d/repo1" && ls texto0?.txt; cd "$d/up" && ls)
    check dht "balance: every file reaches its responsible supernode (one of them on the index host)" \
        "all 18 files on their owners within 20 s" \
        wait_balanced 4 20 "${files[@]}" -- "$s1" "$s2" "$s3"

    # Redirects: through supernode 2 or 3, for names they lack.
    : >"$d/redirects"
    for f in "${files[@]}"; do
        for a in "$s2" "$s3"; do
            names_at 4 "$a" | grep -qxF "$f" && continue
            rm -f "$d/client/$f"
            on 4 p2p-get --timeout 5 "$a" "$f" -o "$d/client/$f" 2>"$d/get.err"
            rc=$?
            printf '%s via %s: exit %s: %s\n' "$f" "$a" "$rc" "$(tr '\n' ' ' <"$d/get.err")" >>"$d/redirects"
            if grep -q "redirecting to $(ere "$s1")" "$d/get.err"; then
                redirected=$((redirected + 1))
                cmp -s "$d/client/$f" "$d/repo1/$f" 2>/dev/null || cmp -s "$d/client/$f" "$d/up/$f" 2>/dev/null ||
                    redirected=-1000
            fi
        done
    done
    sed 's/^/    /' "$d/redirects" | head -n 6
    check dht "downloads from host 4 redirected to supernode 1 (on the index host) arrive intact" \
        "redirects to $s1 (not 127.0.0.1), each file intact" \
        eval '[ "$redirected" -gt 0 ] || { GOT="$(grep -v "exit 0" "$d/redirects" | head -n1)"; GOT=${GOT:-"no redirect to $s1: $(head -n1 "$d/redirects")"}; false; }'
    on 4 p2p-get --timeout 5 "$s3" nada.txt -o "$d/client/nada.txt" 2>"$d/nada.err"
    rc=$?
    check dht "a name that is nowhere: exit 1, nothing written" "exit 1, 'not available'" \
        eval '[ "$rc" = 1 ] && grep -q "not available" "$d/nada.err" && [ ! -e "$d/client/nada.txt" ] || { GOT="exit $rc: $(cat "$d/nada.err")"; false; }'

    note "DHT: supernode 2's link cut mid-transfer (host 4's link capped at 100 Mbit/s)"
    link_shape 4 100 0
    rm -f "$d/client/big.bin"
    spawn_on get1 4 p2p-get --timeout 3 "$s2" big.bin -o "$d/client/big.bin"
    if part_reaches "$d/client/.big.bin.part" $((6 << 20)) 20; then
        cut_link 2
        t0=$(date +%s.%N)
        say "    cut host 2 after $(stat -c %s "$d/client/.big.bin.part" 2>/dev/null) bytes"
        check dht "the index drops the silent supernode within 3 heartbeats + 1 s" \
            "'removed $s2' within $((3 * HB + 1)) s of the cut" \
            eval 'line_within "$RUN/index.out" "^(removed|disconnected|left) $(ere "$s2")" $((3 * HB + 2)) &&
                  awk -v t="$(since "$t0")" -v m=$((3 * HB + 1)) "BEGIN { exit !(t <= m + 0.3) }" ||
                  { GOT="still in the ring $(since "$t0") s after the cut"; false; }'
        check dht "p2p-get from host 4 fails with a clear error when its supernode is cut" \
            "exit 2 within 13 s, a 'p2p-get: ...' line naming $s2" \
            eval 'exited_within "$PID_get1" 13 && [ "$RC" = 2 ] && grep -q "^p2p-get: .*$(ere "$s2")" "$RUN/get1.err" ||
                  { GOT="exit ${RC:-(still running)}: $(tr "\n" " " <"$RUN/get1.err")"; false; }'
        check dht "the failed download keeps its partial file and says how to resume" \
            ".big.bin.part kept, no big.bin, the resume command (p2p-get -c ...) on stderr" \
            eval '[ -s "$d/client/.big.bin.part" ] && [ ! -e "$d/client/big.bin" ] && grep -q "p2p-get -c " "$RUN/get1.err" ||
                  { GOT="$(ls -A "$d/client" | tr "\n" " ")/ $(tr "\n" " " <"$RUN/get1.err")"; false; }'
        restore_link 2
        check dht "after the restore supernode 2 rejoins the ring" "a second 'joined $s2' on the index" \
            wait_count "$RUN/index.out" "^joined $(ere "$s2")\$" 2 $((3 * HB + 10))
        check dht "after the restore p2p-get -c resumes big.bin intact from supernode 2" "exit 0, same bytes, no .part left" \
            eval 'on 4 p2p-get -c --timeout 5 "$s2" big.bin -o "$d/client/big.bin" 2>"$d/get2.err" && same "$d/repo2/big.bin" "$d/client/big.bin" && no_partial "$d/client" ||
                  { GOT="${GOT:-$(cat "$d/get2.err")}"; false; }'
    else
        check dht "a download from supernode 2 starts" "a growing .big.bin.part" false
    fi

    note "DHT: the fetcher's link (host 4) cut mid-transfer"
    rm -f "$d/client/big.bin"
    spawn_on get3 4 p2p-get --no-keep-partial --timeout 3 "$s2" big.bin -o "$d/client/big.bin"
    if part_reaches "$d/client/.big.bin.part" $((6 << 20)) 20; then
        cut_link 4
        check dht "p2p-get on the cut host fails with a clear error" "exit 2 within 13 s, a 'p2p-get: ...' line" \
            eval 'exited_within "$PID_get3" 13 && [ "$RC" = 2 ] && grep -q "^p2p-get: " "$RUN/get3.err" ||
                  { GOT="exit ${RC:-(still running)}: $(tr "\n" " " <"$RUN/get3.err")"; false; }'
        check dht "with --no-keep-partial no partial file is left on the cut host" "no big.bin nor .big.bin.part" \
            eval 'no_partial "$d/client" && [ ! -e "$d/client/big.bin" ]'
        restore_link 4
        check dht "after the restore host 4 downloads big.bin intact" "exit 0, same bytes" \
            eval 'on 4 p2p-get --timeout 5 "$s2" big.bin -o "$d/client/big.bin" 2>"$d/get4.err" && same "$d/repo2/big.bin" "$d/client/big.bin" ||
                  { GOT="${GOT:-$(cat "$d/get4.err")}"; false; }'
    else
        check dht "a download to host 4 starts" "a growing .big.bin.part" false
    fi
    unshape_all

    note "DHT: supernode 3 leaves gracefully (SIGTERM)"
    kill -TERM "$PID_s3"
    check dht "supernode 3 exits 0 after its last sync" "exit 0 within 15 s" \
        eval 'exited_within "$PID_s3" 15 && [ "$RC" = 0 ] || { GOT="exit ${RC:-(still running)}: $(tail -n2 "$RUN/s3.err" | tr "\n" " ")"; false; }'
    check dht "the index saw supernode 3 leave" "'disconnected $s3'" \
        line_within "$RUN/index.out" "^disconnected $(ere "$s3")\$" 10
    check dht "no file lost: all on their supernodes among the two left" "all 18 files on their owners within 20 s" \
        wait_balanced 4 20 "${files[@]}" -- "$s1" "$s2"
}

# ---------------------------------------------------------------- swarm

# pieces_of NAME: piece lines a -v fetcher printed.
pieces_of() {
    local c
    c=$(grep -c '^piece ' "$RUN/$1.out" 2>/dev/null)
    echo "${c:-0}"
}

# wait_pieces NAME N SECS
wait_pieces() {
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        [ "$(pieces_of "$1")" -ge "$2" ] && return 0
        sleep 0.05
    done
    return 1
}

# completes SECS NAME...: every named fetcher printed `complete:` within SECS
# (counted from the call, for all of them together).
completes() {
    local secs=$1 t0 n left
    shift
    t0=$(date +%s)
    for n in "$@"; do
        left=$((secs - ($(date +%s) - t0)))
        [ "$left" -lt 1 ] && left=1
        line_within "$RUN/$n.out" '^complete: ' "$left" || {
            GOT="$n not complete after ${secs}s ($(pieces_of "$n") piece lines; stderr: $(tail -n1 "$RUN/$n.err" 2>/dev/null))"
            return 1
        }
    done
}

# said_within FILE ERE T0 SECS: FILE has a line matching ERE within SECS of
# T0; if not, waits as long again to tell "late" from "never".
said_within() {
    local file=$1 re=$2 t0=$3 secs=$4 left
    left=$(awk -v t="$(since "$t0")" -v s="$secs" 'BEGIN { l = s - t; printf "%d", (l < 1) ? 1 : l }')
    line_within "$file" "$re" "$left" && return 0
    if line_within "$file" "$re" "$secs"; then
        GOT="said only $(since "$t0") s after the cut"
    else
        GOT="not said in $(since "$t0") s; last lines: $(grep -v '% (' "$file" | tail -n2 | tr '\n' ' ')"
    fi
    return 1
}

# copies_same ORIGINAL DIR...: DIR/NAME is identical and no partial is left.
copies_same() {
    local orig=$1 dir
    shift
    for dir in "$@"; do
        same "$orig" "$dir/$(basename "$orig")" || return 1
        no_partial "$dir" || return 1
    done
}

group_swarm() {
    local d=$RUN/swarm i tr t0
    note "swarm: tracker and seeder on host 1 with the README's defaults, fetchers on hosts 2 and 3"
    make_hosts 5 || return 1
    mkdir -p "$d/seed" "$d/f2" "$d/f3"
    head -c $((8 << 20)) /dev/urandom >"$d/seed/movie.bin"
    start_on tracker 1 bt-tracker || return 1
    start_on seed 1 bt-peer share "$d/seed/movie.bin" --ping-interval "$PING" --report-interval 1 || return 1
    line_within "$RUN/seed.out" '^swarm ' 30 || return 1
    say "    seed: $(grep -m1 '^registered with' "$RUN/seed.out")"
    for i in 2 3; do
        start_on "f$i" "$i" bt-peer fetch movie.bin --tracker "$(ip_of 1):6969" --out "$d/f$i" \
            --exit-when-done -v --ping-interval "$PING" --report-interval 1 || return 1
    done
    check swarm "fetchers on hosts 2 and 3 complete from the seeder on the tracker host" \
        "'complete: movie.bin' on both within 20 s" completes 20 f2 f3
    check swarm "both copies byte-identical, no partial file left" "cmp equal" \
        copies_same "$d/seed/movie.bin" "$d/f2" "$d/f3"
    check swarm "the tracker handed the seeder out at host 1's address" "pieces from $(ip_of 1):" \
        eval 'grep -q "^piece .* from $(ere "$(ip_of 1)"):" "$RUN/f2.out" "$RUN/f3.out" ||
              { GOT="$(grep -m1 -hE "^bt-peer: [0-9.]+:[0-9]+: " "$RUN/f2.err" "$RUN/f3.err" | head -n1)"; false; }'
    stop_all

    note "swarm: links capped at 50 Mbit/s; seeder on host 2, fetchers on hosts 3, 4, 5; host 5's link cut at 30%"
    tr="$(ip_of 1):6969"
    for i in 1 2 3 4 5; do link_shape "$i" 50 0; done
    mkdir -p "$d/cut/seed" "$d/cut/f3" "$d/cut/f4" "$d/cut/f5"
    head -c $((24 << 20)) /dev/urandom >"$d/cut/seed/film.bin"
    start_on tracker2 1 bt-tracker --ping-interval "$PING" || return 1
    start_on cseed 2 bt-peer share "$d/cut/seed/film.bin" --tracker "$tr" --ping-interval "$PING" --report-interval 1 || return 1
    line_within "$RUN/cseed.out" '^swarm ' 30 || return 1
    for i in 3 4 5; do
        start_on "c$i" "$i" bt-peer fetch film.bin --tracker "$tr" --out "$d/cut/f$i" \
            --exit-when-done -v --ping-interval "$PING" --report-interval 1 --timeout 5 --idle-timeout 5 || return 1
    done
    if wait_pieces c5 29 60; then
        cut_link 5
        t0=$(date +%s.%N)
        say "    cut host 5 at $(pieces_of c5) of 96 pieces"
        check swarm "the tracker evicts the cut fetcher within 3 ping intervals + 1 s" \
            "'evicted $(ip_of 5):...' within $((3 * PING + 1)) s of the cut" \
            eval 'line_within "$RUN/tracker2.out" "^evicted $(ere "$(ip_of 5)"):" $((3 * PING + 2)) &&
                  awk -v t="$(since "$t0")" -v m=$((3 * PING + 1)) "BEGIN { exit !(t <= m + 0.3) }" ||
                  { GOT="not evicted $(since "$t0") s after the cut"; false; }'
        check swarm "fetchers on hosts 3 and 4 complete while host 5 is cut" "both complete within 40 s" \
            completes 40 c3 c4
        check swarm "... with byte-identical copies" "cmp equal" copies_same "$d/cut/seed/film.bin" "$d/cut/f3" "$d/cut/f4"
        check swarm "the cut fetcher (--timeout 5 --idle-timeout 5) says it cannot reach any peer" "'cannot reach any peer (...)' on its stderr within 30 s of the cut" \
            said_within "$RUN/c5.err" "cannot reach any peer" "$t0" 30
        check swarm "nothing under the final name on the cut host" "no film.bin in host 5's folder" \
            eval '[ ! -e "$d/cut/f5/film.bin" ] || { GOT="film.bin present ($(stat -c %s "$d/cut/f5/film.bin") bytes)"; false; }'
        restore_link 5
        check swarm "after the restore host 5's fetcher registers again" "a second 'registered $(ip_of 5):$PORT_c5'" \
            wait_count "$RUN/tracker2.out" "^registered $(ere "$(ip_of 5):$PORT_c5") " 2 $((3 * PING + 5))
        check swarm "... and completes" "complete within 40 s" completes 40 c5
        check swarm "... with a byte-identical copy, no partial file left" "cmp equal" copies_same "$d/cut/seed/film.bin" "$d/cut/f5"
    else
        check swarm "host 5's fetch makes progress" "29 pieces" eval 'GOT="$(pieces_of c5) pieces"; false'
    fi

    note "swarm: the seeder's link (host 2) cut at 30%"
    mkdir -p "$d/cut/g3" "$d/cut/g4"
    head -c $((24 << 20)) /dev/urandom >"$d/cut/seed/show.bin"
    start_on gseed 2 bt-peer share "$d/cut/seed/show.bin" --tracker "$tr" --ping-interval "$PING" --report-interval 1 || return 1
    line_within "$RUN/gseed.out" '^swarm ' 30 || return 1
    for i in 3 4; do
        start_on "g$i" "$i" bt-peer fetch show.bin --tracker "$tr" --out "$d/cut/g$i" \
            --exit-when-done -v --ping-interval "$PING" --report-interval 1 || return 1
    done
    if wait_pieces g3 29 60; then
        cut_link 2
        t0=$(date +%s.%N)
        say "    cut host 2 (the seeder) at $(pieces_of g3) of 96 pieces on host 3"
        check swarm "the tracker evicts the cut seeder within 3 ping intervals + 1 s" \
            "'evicted $(ip_of 2):...' within $((3 * PING + 1)) s of the cut" \
            eval 'line_within "$RUN/tracker2.out" "^evicted $(ere "$(ip_of 2)"):" $((3 * PING + 2)) &&
                  awk -v t="$(since "$t0")" -v m=$((3 * PING + 1)) "BEGIN { exit !(t <= m + 0.3) }" ||
                  { GOT="not evicted $(since "$t0") s after the cut"; false; }'
        check swarm "without the seeder nothing appears under the final name" "no show.bin on hosts 3, 4" \
            eval '[ ! -e "$d/cut/g3/show.bin" ] && [ ! -e "$d/cut/g4/show.bin" ] || { GOT="a show.bin exists"; false; }'
        restore_link 2
        check swarm "after the restore the seeder registers again" "a second 'registered $(ip_of 2):$PORT_gseed'" \
            wait_count "$RUN/tracker2.out" "^registered $(ere "$(ip_of 2):$PORT_gseed") " 2 $((3 * PING + 5))
        check swarm "after the seeder's restore both fetchers complete" "both complete within 60 s" completes 60 g3 g4
        check swarm "... with byte-identical copies, no partial file left" "cmp equal" \
            copies_same "$d/cut/seed/show.bin" "$d/cut/g3" "$d/cut/g4"
        say "    host 3's diagnostics: $(grep -v '% (' "$RUN/g3.err" | sort -u | head -n3 | tr '\n' ' ')"
    else
        check swarm "host 3's fetch makes progress" "29 pieces" eval 'GOT="$(pieces_of g3) pieces"; false'
    fi
    unshape_all
}

# ---------------------------------------------------------------- flood

# ask NAME N SERVENT QUERY ANSWERS: kv-query on host N asking SERVENT,
# with an hour's quiet time; its wait is ended with SIGTERM once ANSWERS
# lines came (10 s at most) and each servent of the diamond has forwarded or
# stopped the flood (the flood demo's way: a slow machine makes the check
# slower, never wrong). Answers in $RUN/NAME.ans.
ask() {
    local name=$1 n=$2 servent=$3 query=$4 want=$5 s pid before=()
    for s in 1 2 3 4; do
        before[s]=$(grep -cE '^(forwarded|stopped) ' "$RUN/fs$s.out")
    done
    spawn_on "$name" "$n" kv-query --wait 3600 --settle 3600 "$servent" "$query"
    pid=$(eval echo "\$PID_$name")
    wait_count "$RUN/$name.out" '' "$want" 10 2>/dev/null
    for s in 1 2 3 4; do
        wait_count "$RUN/fs$s.out" '^(forwarded|stopped) ' $((before[s] + 1)) 5 2>/dev/null
    done
    kill -TERM "$pid" 2>/dev/null
    exited_within "$pid" 5
    cp "$RUN/$name.out" "$RUN/$name.ans"
    sed 's/^/    /' "$RUN/$name.ans"
}

# answers_from NAME IP...: NAME has one answer from each IP, and no other.
answers_from() {
    local name=$1 got want
    shift
    got=$(awk '{ print $NF }' "$RUN/$name.ans" | sed 's/:[0-9]*$//' | sort | tr '\n' ' ')
    want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
    [ "$got" = "$want" ] || {
        GOT="answers from: ${got:-none} ($(tr '\n' '|' <"$RUN/$name.err"))"
        return 1
    }
}

# all_stats: each servent of the diamond printed its stats line.
all_stats() {
    local n
    for n in 1 2 3 4; do
        line_within "$RUN/fs$n.out" '^stats ' 5 || {
            GOT="no stats line from s$n"
            return 1
        }
    done
}

group_flood() {
    local td=$ROOT/testdata/flood/diamond a1 a2 a3 a4 n
    note "flooding: the diamond on hosts 1-4 (s1 -> s2, s3 -> s4), clients on host 5 and on host 1"
    make_hosts 5 || return 1
    start_on fs4 4 kv-servent 0 "$td/s4.kv" || return 1
    a4="$(ip_of 4):$PORT_fs4"
    start_on fs2 2 kv-servent 0 "$td/s2.kv" "$a4" || return 1
    start_on fs3 3 kv-servent 0 "$td/s3.kv" "$a4" || return 1
    a2="$(ip_of 2):$PORT_fs2" a3="$(ip_of 3):$PORT_fs3"
    start_on fs1 1 kv-servent 0 "$td/s1.kv" "$a2" "$a3" || return 1
    a1="$(ip_of 1):$PORT_fs1"
    check flood "the four servents link across hosts" "2 links into s4, 1 into s2 and s3" \
        eval 'wait_count "$RUN/fs4.out" "^link in " 2 10 && wait_count "$RUN/fs2.out" "^link in " 1 10 && wait_count "$RUN/fs3.out" "^link in " 1 10'

    ask q_pop3 5 "$a1" '?pop3' 1
    check flood "?pop3 from host 5: answered once, straight from s4 on host 4" "one answer from $(ip_of 4)" \
        answers_from q_pop3 "$(ip_of 4)"
    ask q_http 5 "$a1" '?http' 2
    check flood "?http from host 5: answered by s2 and s3 straight from hosts 2 and 3" \
        "answers from $(ip_of 2) and $(ip_of 3)" answers_from q_http "$(ip_of 2)" "$(ip_of 3)"
    ask q_topo 5 "$a1" T 4
    check flood "T from host 5: one path per servent, from each servent's host" "answers from hosts 1-4" \
        answers_from q_topo "$(ip_of 1)" "$(ip_of 2)" "$(ip_of 3)" "$(ip_of 4)"
    check flood "T's paths name servents by their hosts' addresses" "every path address in $NET.0/24" \
        eval '! sed "s/ [^ ]*$//" "$RUN/q_topo.ans" | tr " " "\n" | grep -v "^$(ere "$NET")\.[0-9]*:[0-9]*$" | grep -q . &&
              [ -s "$RUN/q_topo.ans" ] || { GOT="$(sed "s/ [^ ]*$//" "$RUN/q_topo.ans" | tr "\n" "|")"; false; }'
    ask q_local 1 "127.0.0.1:$PORT_fs1" '?pop3' 1
    check flood "?pop3 from host 1 through 127.0.0.1: answered straight from s4 on host 4" \
        "one answer from $(ip_of 4)" answers_from q_local "$(ip_of 4)"
    for n in 1 2 3 4; do
        kill -TERM "$(eval echo "\$PID_fs$n")"
    done
    check flood "the servents stop on SIGTERM with their stats" "a stats line from each" all_stats
}

# ----------------------------------------------------------------- rdir

# rpcbind_on N: an rpcbind of host N's own, in a private mount namespace
# whose /run (and /var/run) is a fresh tmpfs: rpcbind's Unix socket and lock
# are files, shared across network namespaces otherwise. Sets PID_rpcbindN.
rpcbind_on() {
    local n=$1 rb pid i
    for rb in "$(command -v rpcbind 2>/dev/null)" /usr/sbin/rpcbind /sbin/rpcbind ""; do
        [ -n "$rb" ] && [ -x "$rb" ] && break
    done
    [ -n "$rb" ] || {
        GOT="no rpcbind (scripts/install-deps.sh hosts)"
        return 1
    }
    if ! command -v unshare >/dev/null || ! command -v nsenter >/dev/null; then
        GOT="no unshare/nsenter (util-linux)"
        return 1
    fi
    # shellcheck disable=SC2016
    spawn_on "rpcbind$n" "$n" unshare --mount --propagation private -- sh -c \
        'mount -t tmpfs -o mode=755 tmpfs /run && { [ -L /var/run ] || mount -t tmpfs -o mode=755 tmpfs /var/run; } && exec "$0" -f' "$rb"
    pid=$(eval echo "\$PID_rpcbind$n")
    for ((i = 0; i < 100; i++)); do
        [ -S "/proc/$pid/root/run/rpcbind.sock" ] && on "$n" ss -ltn | grep -q ':111 ' && return 0
        ours "$pid" || break
        sleep 0.05
    done
    GOT="rpcbind did not start: $(cat "$RUN/rpcbind$n.err")"
    return 1
}

# in_rpc N CMD...: CMD on host N inside its rpcbind's mount namespace.
in_rpc() {
    local n=$1
    shift
    nsenter --target "$(eval echo "\$PID_rpcbind$n")" --mount --net "$@"
}

# listed_as_local N MODE SERVER PORT DIR...: rls on host N lists each DIR
# as `ls -f` does (sorted).
listed_as_local() {
    local n=$1 mode=$2 server=$3 port=$4 dir
    shift 4
    for dir in "$@"; do
        local args=(--mode "$mode" --server "$server" --timeout 5)
        [ -n "$port" ] && args+=(--port "$port")
        LC_ALL=C on "$n" rls "${args[@]}" "$dir" 2>"$RUN/rdir/rls.err" | LC_ALL=C sort >"$RUN/rdir/got"
        # shellcheck disable=SC2012
        (cd "$RUN/rdir/root" && LC_ALL=C ls -fa "$dir" | LC_ALL=C sort) >"$RUN/rdir/want"
        cmp -s "$RUN/rdir/got" "$RUN/rdir/want" || {
            GOT="$dir: $(wc -l <"$RUN/rdir/got") names, $(wc -l <"$RUN/rdir/want") expected; $(head -c 300 "$RUN/rdir/rls.err")"
            return 1
        }
    done
}

# exits_with CODE N CMD...: CMD on host N exits CODE.
exits_with() {
    local code=$1 n=$2 rc
    shift 2
    on "$n" "$@" >/dev/null 2>"$RUN/rdir/exit.err"
    rc=$?
    [ "$rc" = "$code" ] || {
        GOT="exit $rc: $(head -c 300 "$RUN/rdir/exit.err")"
        return 1
    }
}

group_rdir() {
    local d=$RUN/rdir h1
    note "remote directories: rdird on host 1 in three modes (rpc with host 1's own rpcbind), rls on hosts 2 and 1"
    make_hosts 3 || return 1
    h1=$(ip_of 1)
    mkdir -p "$d"
    cp -r "$ROOT/testdata/rdir" "$d/root"
    mkdir -p "$d/root/many"
    for i in $(seq -w 1 300); do : >"$d/root/many/entry $i"; done
    start_on rd_sl 1 rdird --mode stateless --root "$d/root" --listen 0.0.0.0:0 -q || return 1
    start_on rd_sf 1 rdird --mode stateful --root "$d/root" --listen 0.0.0.0:0 -q || return 1
    check rdir "stateless: host 2 lists docs, music, many as ls -f" "same names" \
        listed_as_local 2 stateless "$h1" "$PORT_rd_sl" docs music many
    check rdir "stateful: host 2 lists docs, music, many as ls -f" "same names" \
        listed_as_local 2 stateful "$h1" "$PORT_rd_sf" docs music many
    check rdir "stateless: host 1 lists through 127.0.0.1" "same names" \
        listed_as_local 1 stateless 127.0.0.1 "$PORT_rd_sl" docs
    check rdir "a directory that is not there: exit 1" "exit 1" \
        exits_with 1 2 rls --server "$h1" --port "$PORT_rd_sl" --timeout 5 nothing-here
    if rpcbind_on 1; then
        say "    host 1's rpcbind: pid $PID_rpcbind1, socket /run/rpcbind.sock in its own mount namespace"
        start rd_rpc nsenter --target "$PID_rpcbind1" --mount --net rdird --mode rpc --root "$d/root" --listen 0.0.0.0:0 -q || return 1
        check rdir "rpc: rdird registered with host 1's rpcbind, seen from host 2" "rpcinfo lists 667654321" \
            eval 'on 2 rpcinfo -p "$h1" >"$d/rpcinfo" 2>&1 && grep -q "667654321" "$d/rpcinfo" || { GOT="$(tr "\n" " " <"$d/rpcinfo")"; false; }'
        check rdir "rpc: host 2 lists docs, music, many, the port from host 1's rpcbind" "same names" \
            listed_as_local 2 rpc "$h1" "" docs music many
        check rdir "rpc: the root namespace's rpcbind socket is untouched" "no /run/rpcbind.sock made outside" \
            eval '[ "$(stat -c %i /run/rpcbind.sock 2>/dev/null)" = "${ROOT_RPCBIND_SOCK:-}" ] || { GOT="/run/rpcbind.sock changed"; false; }'
    else
        skip rdir "rpc mode across hosts" "$GOT"
    fi
    check rdir "rpc: a server host without rpcbind: exit 2" "exit 2" \
        exits_with 2 2 rls --mode rpc --server "$(ip_of 3)" --timeout 3 docs
    check rdir "stateless: a server port with nothing on it: exit 2" "exit 2" \
        exits_with 2 2 rls --server "$(ip_of 3)" --port 7654 --timeout 3 docs
    check rdir "stateful: a server port with nothing on it: exit 2" "exit 2" \
        exits_with 2 2 rls --mode stateful --server "$(ip_of 3)" --port 7654 --timeout 3 docs
    cut_link 1
    check rdir "stateless: a server whose link is cut: exit 2 within its timeout" "exit 2" \
        exits_with 2 2 rls --server "$h1" --port "$PORT_rd_sl" --timeout 2 docs
    restore_link 1
}

# ------------------------------------------------------------------ nap

# peer_on NAME N SERVER: an interactive nap-peer on host N reading commands
# from a FIFO held open on a descriptor kept in FD_NAME.
peer_on() {
    local name=$1 n=$2 server=$3 fd
    mkdir -p "$RUN/nap/$name"
    mkfifo "$RUN/$name.in"
    ip netns exec "$(ns_of "$n")" nap-peer -s "$server" -p 5000 --share "$RUN/nap/$name" --time-url "http://$(ip_of 3):8000/" \
        <"$RUN/$name.in" >"$RUN/$name.out" 2>"$RUN/$name.err" &
    PIDS+=($!)
    eval "PID_$name=$!"
    exec {fd}>"$RUN/$name.in"
    eval "FD_$name=$fd"
    : >>"$RUN/$name.out"
}

# say_to NAME COMMAND LINES: sends COMMAND, waits for LINES more lines of
# output; the new lines in REPLY (joined with |).
say_to() {
    local name=$1 command=$2 lines=$3 before fd
    fd=$(eval echo "\$FD_$name")
    before=$(wc -l <"$RUN/$name.out")
    printf '%s\n' "$command" >&"$fd"
    wait_count "$RUN/$name.out" '' $((before + lines)) 15 2>/dev/null
    REPLY=$(sed -n "$((before + 1)),\$p" "$RUN/$name.out" | tr '\n' '|')
    say "    $name c> $command -> ${REPLY%|}"
}

# replied NAME COMMAND EXPECTED...: the command's lines match EXPECTED (globs).
replied() {
    local name=$1 command=$2 got i=0 e
    shift 2
    say_to "$name" "$command" $#
    for e in "$@"; do
        i=$((i + 1))
        got=$(printf '%s' "$REPLY" | cut -d'|' -f"$i")
        # shellcheck disable=SC2053
        [[ $got == $e ]] || {
            GOT="${REPLY%|} ($(tail -n1 "$RUN/$name.err" 2>/dev/null))"
            return 1
        }
    done
}

group_nap() {
    local d=$RUN/nap h1 p fd
    note "Napster-like: nap-server on host 1 (-p 5000), ana on host 1 (-s 127.0.0.1), bo on host 2, cy on host 4; nap-time and nap-log on host 3"
    make_hosts 4 || return 1
    h1=$(ip_of 1)
    mkdir -p "$d"
    start_on time 3 nap-time || return 1
    local logrpc=()
    if rpcbind_on 3; then
        start napl nsenter --target "$PID_rpcbind3" --mount --net nap-log || return 1
        logrpc=(--log-rpc "$(ip_of 3)")
        say "    nap-log on host 3 registered with host 3's own rpcbind"
    else
        skip nap "nap-log through host 3's rpcbind" "$GOT"
    fi
    start_on server 1 nap-server "${logrpc[@]}" || return 1
    peer_on ana 1 127.0.0.1
    peer_on bo 2 "$h1"
    peer_on cy 4 "$h1"
    head -c 3000000 /dev/urandom >"$d/ana/song.bin"
    printf 'notes of bo\n' >"$d/bo/notes.txt"

    check nap "ana (host 1, server 127.0.0.1) registers, connects, publishes" "REGISTER OK, CONNECT OK, PUBLISH OK" \
        eval 'replied ana "REGISTER ana" "REGISTER OK" && replied ana "CONNECT ana" "CONNECT OK" && replied ana "PUBLISH song.bin a binary file" "PUBLISH OK"'
    check nap "bo (host 2) registers, connects, publishes" "REGISTER OK, CONNECT OK, PUBLISH OK" \
        eval 'replied bo "REGISTER bo" "REGISTER OK" && replied bo "CONNECT bo" "CONNECT OK" && replied bo "PUBLISH notes.txt my notes" "PUBLISH OK"'
    check nap "LIST_USERS from host 2 gives ana at host 1's address" "LIST_USERS OK, 'ana $h1 PORT'" \
        eval 'replied bo LIST_USERS "LIST_USERS OK" "*" "*" && printf "%s" "$REPLY" | tr "|" "\n" | grep -q "^ana $(ere "$h1") [0-9]*$" || { GOT="${GOT:-${REPLY%|}}"; false; }'
    check nap "GET_FILE: bo on host 2 gets ana's file from host 1" "GET_FILE OK, same bytes" \
        eval 'replied bo "GET_FILE ana song.bin $d/bo/song.bin" "GET_FILE OK" && same "$d/ana/song.bin" "$d/bo/song.bin"'
    check nap "GET_FILE: ana on host 1 gets bo's file from host 2" "GET_FILE OK, same bytes" \
        eval 'replied ana "GET_FILE bo notes.txt $d/ana/notes-of-bo.txt" "GET_FILE OK" && same "$d/bo/notes.txt" "$d/ana/notes-of-bo.txt"'
    check nap "GET_FILE: cy on host 4 gets files from hosts 1 and 2" "GET_FILE OK twice" \
        eval 'replied cy "REGISTER cy" "REGISTER OK" && replied cy "CONNECT cy" "CONNECT OK" &&
              replied cy "GET_FILE bo notes.txt $d/cy/notes.txt" "GET_FILE OK" &&
              replied cy "GET_FILE ana song.bin $d/cy/song.bin" "GET_FILE OK" && same "$d/ana/song.bin" "$d/cy/song.bin"'
    check nap "a failed GET_FILE leaves nothing" "GET_FILE FAIL / FILE NOT EXIST, no file" \
        eval 'replied cy "GET_FILE bo missing.txt $d/cy/missing.txt" "GET_FILE FAIL / FILE NOT EXIST" && [ ! -e "$d/cy/missing.txt" ] && no_partial "$d/cy"'
    check nap "nap-time on host 3 answers host 2 over HTTP" "a DD/MM/YYYY HH:MM:SS line" \
        eval 'on 2 bash -c "exec 3<>/dev/tcp/$(ip_of 3)/8000 && printf \"GET / HTTP/1.0\r\n\r\n\" >&3 && tail -n1 <&3" >"$d/time.txt" 2>&1 &&
              grep -qE "^[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2}" "$d/time.txt" || { GOT="$(cat "$d/time.txt")"; false; }'
    if [ ${#logrpc[@]} -gt 0 ]; then
        check nap "nap-log on host 3 logs ana's PUBLISH (server on host 1 found it through host 3's rpcbind)" \
            "'ana PUBLISH song.bin DATE'" \
            eval 'line_within "$RUN/napl.out" "^ana PUBLISH song\.bin [0-9]{2}/" 10 || { GOT="$(head -n3 "$RUN/napl.out" | tr "\n" "|") $(tail -n1 "$RUN/server.err")"; false; }'
    fi
    for p in ana bo cy; do
        say_to "$p" QUIT 0
        fd=$(eval echo "\$FD_$p")
        exec {fd}>&-
    done
}

# ----------------------------------------------------------------- loss

group_loss() {
    local d=$RUN/loss i t0 secs drops0 port
    make_hosts 4 || return 1
    detect_netem
    case "$LINK_EMULATION" in
    netem) note "loss and rate: netem loss $LOSS% (and 1 ms delay) under an HTB rate cap at the switch ports" ;;
    *) note "loss and rate: no netem in this kernel; loss $LOSS% by an HTB class with a 0-packet fifo fed by a random BPF classifier (ld rand), rate by HTB" ;;
    esac
    mkdir -p "$d"
    head -c $((8 << 20)) /dev/urandom >"$d/eight.bin"

    link_shape 1 40 0
    link_shape 2 40 0
    port=$((20000 + RANDOM % 40000))
    spawn_on ncl 2 nc -l "$(ip_of 2)" "$port"
    for ((i = 0; i < 100; i++)); do
        on 2 ss -ltn | grep -q ":$port " && break
        sleep 0.05
    done
    t0=$(date +%s.%N)
    on 1 nc -N "$(ip_of 2)" "$port" <"$d/eight.bin"
    exited_within "$PID_ncl" 30
    secs=$(since "$t0")
    say "    nc moved 8 MiB through a 40 Mbit/s cap in $secs s (1.68 s at the cap)"
    check loss "the rate cap is in effect (nc through 40 Mbit/s)" "at least 1.34 s for 8 MiB (80% of the cap's time)" \
        eval 'awk -v t="$secs" "BEGIN { exit !(t >= 1.34) }" || { GOT="$secs s"; false; }'
    unshape_all

    for i in 1 2 3 4; do link_shape "$i" 100 "$LOSS"; done
    drops0=$(switch_drops)
    note "DHT over lossy links: index on host 1, a lone supernode on host 2, p2p-get on host 3"
    mkdir -p "$d/repo" "$d/client"
    head -c $((16 << 20)) /dev/urandom >"$d/repo/lossy.bin"
    start_on lindex 1 p2p-index --listen 0.0.0.0:6111 || return 1
    start_on lsuper 2 p2p-superd "$d/repo" --index "$(ip_of 1):6111" --sync-interval 0.5 --heartbeat "$HB" || return 1
    line_within "$RUN/lindex.out" '^joined ' 10
    t0=$(date +%s.%N)
    check loss "p2p-get of 16 MiB from host 2 to host 3 with $LOSS% loss arrives intact" "exit 0, same bytes" \
        eval 'on 3 p2p-get --timeout 10 "$(ip_of 2):$PORT_lsuper" lossy.bin -o "$d/client/lossy.bin" 2>"$d/get.err" &&
              same "$d/repo/lossy.bin" "$d/client/lossy.bin" || { GOT="${GOT:-$(cat "$d/get.err")}"; false; }'
    say "    took $(since "$t0") s"

    note "swarm over lossy links: tracker on host 1, seeder on host 2, fetchers on hosts 3 and 4"
    mkdir -p "$d/f3" "$d/f4"
    start_on ltracker 1 bt-tracker --listen 0.0.0.0:6970 || return 1
    start_on lseed 2 bt-peer share "$d/eight.bin" --tracker "$(ip_of 1):6970" --ping-interval "$PING" --report-interval 1 || return 1
    line_within "$RUN/lseed.out" '^swarm ' 30
    for i in 3 4; do
        start_on "l$i" "$i" bt-peer fetch eight.bin --tracker "$(ip_of 1):6970" --out "$d/f$i" --exit-when-done \
            --ping-interval "$PING" --report-interval 1 || return 1
    done
    check loss "two fetchers complete with $LOSS% loss" "both complete within 60 s" completes 60 l3 l4
    check loss "... with byte-identical copies" "cmp equal" copies_same "$d/eight.bin" "$d/f3" "$d/f4"

    note "remote directories over lossy links: rdird on host 4, rls on host 3"
    mkdir -p "$RUN/rdir"
    [ -d "$RUN/rdir/root" ] || {
        cp -r "$ROOT/testdata/rdir" "$RUN/rdir/root"
        mkdir -p "$RUN/rdir/root/many"
        for i in $(seq -w 1 300); do : >"$RUN/rdir/root/many/entry $i"; done
    }
    start_on lrdird 4 rdird --root "$RUN/rdir/root" --listen 0.0.0.0:0 -q || return 1
    check loss "rls lists 300 entries with $LOSS% loss" "same names" \
        eval 'listed_as_local 3 stateless "$(ip_of 4)" "$PORT_lrdird" many'
    say "    the switch ports dropped $(($(switch_drops) - drops0)) packets"
    check loss "the loss is in effect (the switch dropped packets)" "drops > 0" \
        eval '[ "$(($(switch_drops) - drops0))" -gt 0 ] || { GOT="no drops"; false; }'
    unshape_all
}

# -------------------------------------------------------------- sigterm

# sig_daemons A: the six daemons on host 6, each listening on address A.
sig_daemons() {
    local a=$1
    start_on sig_index 6 p2p-index --listen "$a:0" &&
        start_on sig_tracker 6 bt-tracker --listen "$a:0" &&
        start_on sig_rdird 6 rdird --root "$RUN/sig" --listen "$a:0" &&
        start_on sig_nap 6 nap-server --listen "$a:0" &&
        start_on sig_time 6 nap-time --listen "$a:0" &&
        start_on sig_kv 6 kv-servent --bind "$a" 0 "$RUN/sig/kv"
}

# all_end_by END NAME...: every named daemon ended by END.
all_end_by() {
    local end=$1 name
    shift
    for name in "$@"; do
        exited_by "$(eval echo "\$PID_$name")" "$end" || {
            GOT="${name#sig_} still running"
            return 1
        }
    done
}

group_sigterm() {
    local a name pid t0 end names=(sig_index sig_tracker sig_rdird sig_nap sig_time sig_kv)
    note "SIGTERM after the listening address was removed (ip addr del): each daemon on host 6 must stop within 2 s"
    make_hosts 6 || return 1
    a=$(ip_of 6)
    mkdir -p "$RUN/sig"
    printf 'k v\n' >"$RUN/sig/kv"
    sig_daemons "$a" || return 1
    end=$(awk -v t="$(date +%s.%N)" 'BEGIN { printf "%.3f", t + 2 }')
    for name in "${names[@]}"; do
        kill -TERM "$(eval echo "\$PID_$name")"
    done
    check sigterm "control: with the address in place all six stop within 2 s of SIGTERM" "all ended within 2 s" \
        all_end_by "$end" "${names[@]}"
    stop_all
    sig_daemons "$a" || return 1
    ip -n "$(ns_of 6)" addr del "$a/24" dev eth0
    t0=$(date +%s.%N)
    end=$(awk -v t="$t0" 'BEGIN { printf "%.3f", t + 2 }')
    for name in "${names[@]}"; do
        kill -TERM "$(eval echo "\$PID_$name")"
    done
    for name in "${names[@]}"; do
        pid=$(eval echo "\$PID_$name")
        check sigterm "${name#sig_}: SIGTERM stops it within 2 s once its address is gone" "ends within 2 s (exit 0)" \
            eval 'exited_by "$pid" "$end" || { GOT="still running $(since "$t0") s after SIGTERM"; false; }'
        [ -n "$RC" ] && say "        (exit $RC after $(since "$t0") s)"
    done
    ip -n "$(ns_of 6)" addr add "$a/24" dev eth0
}

# ---------------------------------------------------------------- bench

# bench_once N CUT: one run of N fetchers with default flags (each keeps
# seeding once complete, as the bound assumes; CUT=1: the last one's link is
# cut at 30% of its pieces and restored once the others are done); prints
# the seconds from the first fetcher's start to the last (other) fetcher's
# `complete: ` line.
bench_once() {
    local n=$1 cutting=$2 d=$RUN/bench i t0 tr out
    tr="$(ip_of 1):6969"
    out=$(fresh_fetchers "$n")
    start_on btr 1 bt-tracker -q >&2 || return 1
    start_on bseed 2 bt-peer share "$d/file.bin" --tracker "$tr" -q >&2 || return 1
    line_within "$RUN/bseed.out" '^swarm ' 60 || return 1
    local m0
    m0=$(meter_now)
    t0=$(date +%s.%N)
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$out/$i"
        local extra=(-q)
        [ "$cutting" = 1 ] && [ "$i" = "$n" ] && extra=(-v)
        STAMP=1 spawn_on "bf$i" $((i + 2)) bt-peer fetch file.bin --tracker "$tr" --out "$out/$i" "${extra[@]}"
    done
    local watch=$n
    if [ "$cutting" = 1 ]; then
        watch=$((n - 1))
        wait_pieces "bf$n" $((PIECES * 3 / 10)) 300 && cut_link $((n + 2))
    fi
    last_fetcher "$t0" "$watch" "N=$n"
    meter_since "$m0"
    if [ "$cutting" = 1 ]; then
        restore_link $((n + 2))
        stamped_within 120 "$n" "$n" ||
            say "bench: the cut fetcher did not complete within 120 s of its link's return" >&2
    fi
    end_fetchers "$n" ""
}

# fresh_fetchers N: an empty folder for the fetchers' copies (printed) and
# no .done or .out left from a previous run of fetchers bf1 .. bfN.
fresh_fetchers() {
    local out i
    out=$(bench_out)
    rm -rf "$out"
    mkdir -p "$out"
    for ((i = 1; i <= $1; i++)); do rm -f "$RUN/bf$i.done" "$RUN/bf$i.out"; done
    echo "$out"
}

# last_fetcher T0 N WHAT: the seconds from T0 until the last of fetchers
# bf1 .. bfN was done; at most 120 (a stalled swarm is reported, not
# waited for).
last_fetcher() {
    if stamped_within 120 1 "$2"; then
        last_done "$1" "$RUN/bf" "$2"
    else
        say "bench: $3: not every fetcher done after 120 s (stalled); 120 s counted" >&2
        echo 120
    fi
}

# end_fetchers N WHO: says which of the N fetchers' copies differ from the
# file (WHO names the system in the message), stops every process and
# removes the copies.
end_fetchers() {
    local d=$RUN/bench out i
    out=$(bench_out)
    for ((i = 1; i <= $1; i++)); do
        cmp -s "$d/file.bin" "$out/$i/file.bin" || say "bench: ${2:+$2 }fetcher $i's copy differs" >&2
    done
    stop_all
    rm -rf "$out"
}

# wire_once N SYSTEM: one run of N fetchers on the BitTorrent wire, with
# the file's .torrent (256 KiB pieces, like the own wire): SYSTEM btwire is
# bt-tracker --announce, a bt-peer seeder and bt-peer fetchers; aria2c is
# opentracker, an aria2c seeder and aria2c leechers, nothing of peerkit's
# (each leecher's completion hook stamps its time). Same hosts, links and
# meters as bench_once; prints the seconds until the last fetcher is done.
wire_once() {
    local n=$1 sys=$2 d=$RUN/bench i t0 m0 out url tries
    out=$(fresh_fetchers "$n")
    rm -rf "$d/wire"
    mkdir -p "$d/wire"
    if [ "$sys" = btwire ]; then
        start_on wtr 1 bt-tracker --listen "$(ip_of 1):6968" --announce "$(ip_of 1):6881" -q >&2 || return 1
        line_within "$RUN/wtr.out" '^announce on ' 30 || return 1
        url=$(sed -n 's/^announce on //p' "$RUN/wtr.out" | head -n1)
        bt-peer torrent "$d/file.bin" -o "$d/wire/file.torrent" --tracker "$url" \
            --piece-size 256K >"$d/wire/torrent.out" 2>&1 || return 1
        start_on wseed 2 bt-peer share "$d/file.bin" --torrent "$d/wire/file.torrent" -q >&2 || return 1
        line_within "$RUN/wseed.out" '^seeding ' 60 || return 1
    else
        url="http://$(ip_of 1):6881/announce"
        mktorrent -l 18 -a "$url" -o "$d/wire/file.torrent" "$d/file.bin" >"$d/wire/mktorrent.out" 2>&1 || return 1
        aria2c -S "$d/wire/file.torrent" | sed -n 's/^Info Hash: //p' >"$d/wire/whitelist"
        printf 'access.whitelist %s\n' "$d/wire/whitelist" >"$d/wire/opentracker.conf"
        spawn_on wtr 1 sh -c "cd '$d/wire' && exec opentracker -i $(ip_of 1) -p 6881 -P 6881 -A $(ip_of 1) -f '$d/wire/opentracker.conf'"
        mkdir -p "$d/wire/seed"
        ln -f "$d/file.bin" "$d/wire/seed/file.bin"
        local common=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false
            --enable-peer-exchange=false --bt-require-crypto=false --bt-min-crypto-level=plain
            --disable-ipv6=true --seed-ratio=0.0 --file-allocation=none
            --summary-interval=0 --console-log-level=warn --bt-max-peers=0)
        for ((tries = 0; tries < 200; tries++)); do
            on 1 ss -ltn | grep -q "$(ip_of 1):6881 " && break
            sleep 0.05
        done
        spawn_on wseed 2 aria2c "${common[@]}" --dir="$d/wire/seed" --check-integrity=true \
            --bt-seed-unverified=true "$d/wire/file.torrent"
        # Ready once the tracker counts it as a seeder.
        for ((tries = 0; tries < 600; tries++)); do
            [ "$(on 1 curl -s "http://$(ip_of 1):6881/stats?mode=peer" | sed -n 2p)" = 1 ] && break
            sleep 0.05
        done
        [ "$tries" -lt 600 ] || { say "bench: the aria2c seeder never announced" >&2; return 1; }
    fi
    m0=$(meter_now)
    t0=$(date +%s.%N)
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$out/$i"
        if [ "$sys" = btwire ]; then
            STAMP=1 spawn_on "bf$i" $((i + 2)) bt-peer fetch "$d/wire/file.torrent" --out "$out/$i" -q
        else
            printf '#!/bin/sh\ndate +%%s.%%N >"%s"\n' "$RUN/bf$i.done" >"$d/wire/bf$i.hook"
            chmod +x "$d/wire/bf$i.hook"
            spawn_on "bf$i" $((i + 2)) aria2c "${common[@]}" --dir="$out/$i" \
                --on-bt-download-complete="$d/wire/bf$i.hook" "$d/wire/file.torrent"
        fi
    done
    last_fetcher "$t0" "$n" "$sys, N=$n"
    meter_since "$m0"
    end_fetchers "$n" "$sys"
}

# stamped_within SECS FIRST LAST: waits up to SECS until fetchers bfFIRST
# .. bfLAST have each said `complete: ` (their stamp_complete .done files).
stamped_within() {
    local tries i left
    for ((tries = 0; tries < $1 * 20; tries++)); do
        left=
        for ((i = $2; i <= $3; i++)); do
            [ -s "$RUN/bf$i.done" ] || { left=1 && break; }
        done
        [ -z "$left" ] && return 0
        sleep 0.05
    done
    return 1
}

# bench_out: where the benchmark's fetchers write their copies: under
# BENCH_OUT (e.g. /dev/shm, to leave the disk's file system out of the
# figures) if set, else in the run folder.
bench_out() {
    if [ -n "${BENCH_OUT:-}" ]; then
        echo "$BENCH_OUT/$PFX-copies"
    else
        echo "$RUN/bench/out"
    fi
}

# meter_now: "BUSY SOFTIRQ TOTAL FRAMES BYTES": the machine's CPU ticks so
# far (/proc/stat: busy, in network softirqs, all) and the frames and bytes
# the switch has passed to the hosts (each frame counted once, at its last
# hop). Printed with %.0f: mawk prints a plain sum past 2^31 as 2.28747e+09,
# which bash arithmetic refuses.
meter_now() {
    local link
    link=$(ip netns exec "$SW" sh -c 'for s in /sys/class/net/h*/statistics; do
        echo "$(cat "$s/tx_packets") $(cat "$s/tx_bytes")"; done' |
        awk '{ f += $1; b += $2 } END { printf "%.0f %.0f\n", f, b }')
    awk -v link="$link" '/^cpu / {
        printf "%.0f %.0f %.0f %s\n", $2 + $3 + $4 + $7 + $8 + $9, $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, link }' /proc/stat
}

# meter_since "BUSY SOFTIRQ TOTAL FRAMES BYTES": with METER=PREFIX set,
# appends since then the share of CPU time busy (PREFIX.busy) and in
# softirqs (PREFIX.sirq, the kernel's per-packet work: on these links most
# of it is forwarding through the veths, the bridge and the HTB qdiscs),
# and the frames per MiB the switch passed (PREFIX.fpm).
meter_since() {
    [ -n "${METER:-}" ] || return 0
    local b0 q0 t0 f0 y0 b1 q1 t1 f1 y1
    read -r b0 q0 t0 f0 y0 <<<"$1"
    read -r b1 q1 t1 f1 y1 <<<"$(meter_now)"
    awk -v b="$((b1 - b0))" -v q="$((q1 - q0))" -v t="$((t1 - t0))" \
        -v f="$((f1 - f0))" -v y="$((y1 - y0))" -v p="$METER" 'BEGIN {
        printf "%.0f\n", (t > 0) ? 100 * b / t : 0 >>(p ".busy")
        printf "%.0f\n", (t > 0) ? 100 * q / t : 0 >>(p ".sirq")
        printf "%.0f\n", (y > 0) ? f / (y / 1048576) : 0 >>(p ".fpm") }'
}

# streams_once N: N nc streams at once, fetcher host I sending the file to
# fetcher host I+1 (the last to the first), each into a file; prints the
# seconds until the last is written. Every fetcher host sends and receives
# F, the bytes each moves in a perfect swarm: what this machine's kernel
# can forward through the bridge and the shaped links in that time is a
# bound the swarm cannot beat here, whatever its algorithm.
streams_once() {
    local n=$1 d=$RUN/bench i to port t0 tries senders=() out
    port=$((20000 + RANDOM % 40000))
    out="$(bench_out)-streams"
    rm -rf "$out"
    mkdir -p "$out"
    for ((i = 1; i <= n; i++)); do
        spawn_on "bs$i" $((i + 2)) sh -c "exec nc -l $(ip_of $((i + 2))) $port >$out/$i"
    done
    for ((i = 1; i <= n; i++)); do
        for ((tries = 0; tries < 100; tries++)); do
            on $((i + 2)) ss -ltnH "sport = :$port" | grep -q . && break
            sleep 0.05
        done
    done
    local m0
    m0=$(meter_now)
    t0=$(date +%s.%N)
    for ((i = 1; i <= n; i++)); do
        to=$((i % n + 1))
        on $((i + 2)) nc -N "$(ip_of $((to + 2)))" "$port" <"$d/file.bin" &
        senders+=($!)
        PIDS+=($!)
    done
    for ((i = 0; i < n; i++)); do wait "${senders[i]}"; done
    for ((i = 1; i <= n; i++)); do
        local pid
        pid=$(eval echo "\$PID_bs$i")
        exited_within "$pid" 120 || say "bench: stream $i did not end" >&2
    done
    # The time first: reading the meters is not the streams' work.
    local took
    took=$(since "$t0")
    meter_since "$m0"
    echo "$took"
    for ((i = 1; i <= n; i++)); do
        cmp -s "$d/file.bin" "$out/$i" ||
            say "bench: stream $i's copy differs ($(stat -c %s "$out/$i" 2>/dev/null || echo no) of $(stat -c %s "$d/file.bin") bytes; its time is not a stream's)" >&2
    done
    rm -rf "$out"
}

# stats FILE: best and median of the numbers in FILE.
stats() { sort -g "$1" | awk '{ v[NR] = $1 } END { printf "%.2f %.2f", v[1], (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ratio A B: A / B to two places.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# row LABEL BOUND TIMES [REF_TIMES REF_NAME]: one line of the table: best
# and median of TIMES, each over BOUND, and the median over REF_TIMES's.
row() {
    local best med rb rm ref=-
    read -r best med <<<"$(stats "$3")"
    if [ -n "${4:-}" ]; then
        read -r rb rm <<<"$(stats "$4")"
        ref="$(ratio "$med" "$rm") ($5)"
    fi
    printf '%-26s %7s %7s %7s %7s %7s %5s %5s %6s  %s\n' "$1" "$2" "$best" "$med" \
        "$(ratio "$best" "$2")" "$(ratio "$med" "$2")" "$(median_of "$3.busy" %)" \
        "$(median_of "$3.sirq" %)" "$(median_of "$3.fpm")" "$ref"
}

# median_of FILE [UNIT]: the median of the numbers in FILE, then UNIT; or -.
median_of() {
    local best med
    [ -s "$1" ] || { echo -; return; }
    read -r best med <<<"$(stats "$1")"
    printf '%.0f%s' "$med" "${2:-}"
}

bench() {
    local runs=${RUNS:-1} f_mib=${F_MIB:-128} rate=${RATE_MBIT:-200} ns=${NS:-6 16} n r d=$RUN/bench max=0 port
    for n in $ns; do [ "$n" -gt "$max" ] && max=$n; done
    note "swarm benchmark: every link capped at $rate Mbit/s, $f_mib MiB, 1 seeder + N fetchers (N = $ns), default flags, RUNS=$runs"
    make_hosts $((max + 2)) || return 1
    for ((n = 1; n <= max + 2; n++)); do link_shape "$n" "$rate" 0 || return 1; done
    mkdir -p "$d"
    head -c $((f_mib << 20)) /dev/urandom >"$d/file.bin"
    PIECES=$(((f_mib << 20) / (256 << 10)))
    need nc netcat-openbsd
    local bytes=$((f_mib << 20)) u bound
    u=$((rate * 1000000 / 8))
    : >"$d/nc.times"
    for ((r = 0; r < runs; r++)); do
        port=$((20000 + RANDOM % 40000))
        spawn_on bnc 4 nc -l "$(ip_of 4)" "$port"
        for ((i = 0; i < 100; i++)); do
            on 4 ss -ltn | grep -q ":$port " && break
            sleep 0.05
        done
        local t0
        t0=$(date +%s.%N)
        on 2 nc -N "$(ip_of 4)" "$port" <"$d/file.bin"
        exited_within "$PID_bnc" 120
        since "$t0" >>"$d/nc.times"
        echo >>"$d/nc.times"
    done
    bound=$(awk -v f="$bytes" -v u="$u" 'BEGIN { printf "%.2f", f / u }')
    say "lower bound max(F/u_s, N*F/(u_s + N*u)) = F/u = $bound s for every N; references: one nc"
    say "stream, and N nc streams at once (each fetcher host sending F and receiving F, the bytes a"
    say "perfect swarm moves: where that takes longer than the bound, the machine, not the swarm,"
    say "sets the pace; the last column is the swarm's median over it); medians over the runs of:"
    say "cpu, the share of both cores busy, everything on the machine included; sirq, the share in"
    say "network softirqs (forwarding through the veths, the bridge and the HTB qdiscs: per-frame"
    say "work, so it follows fr/MiB); fr/MiB, the frames the switch passed per MiB"
    say "fetchers' and streams' copies in $(bench_out)* (BENCH_OUT sets the folder)"
    printf '%-26s %7s %7s %7s %7s %7s %5s %5s %6s  %s\n' case bound best median "best/b" "med/b" \
        cpu sirq fr/MiB "med/reference"
    row "nc, one stream" "$bound" "$d/nc.times"
    local wire=${WIRE-btwire aria2c} w
    case " $wire " in *" aria2c "*)
        need aria2c aria2
        need opentracker opentracker
        need mktorrent mktorrent
        need curl curl
        ;;
    esac
    for n in $ns; do
        rm -f "$d/s$n"* "$d/t$n"*
        : >"$d/s$n"
        : >"$d/t$n"
        for w in $wire; do
            rm -f "$d/w$w$n"*
            : >"$d/w$w$n"
        done
        for ((r = 0; r < runs; r++)); do
            METER=$d/s$n streams_once "$n" >>"$d/s$n"
            METER=$d/t$n bench_once "$n" 0 >>"$d/t$n"
            for w in $wire; do METER=$d/w$w$n wire_once "$n" "$w" >>"$d/w$w$n"; done
        done
        row "nc, $n streams at once" "$bound" "$d/s$n"
        row "swarm, N=$n" "$bound" "$d/t$n" "$d/s$n" "$n streams"
        for w in $wire; do
            case $w in
            btwire) row "BitTorrent wire, N=$n" "$bound" "$d/w$w$n" "$d/t$n" "own wire" ;;
            aria2c) row "aria2c, N=$n" "$bound" "$d/w$w$n" "$d/t$n" "own wire" ;;
            esac
        done
    done
    if [ "${CUT:-1}" = 1 ]; then
        n=$(echo "$ns" | awk '{ print $1 }')
        rm -f "$d/cut$n"*
        : >"$d/cut$n"
        for ((r = 0; r < runs; r++)); do METER=$d/cut$n bench_once "$n" 1 >>"$d/cut$n"; done
        row "swarm, N=$n, one cut at 30%" "$bound" "$d/cut$n" "$d/t$n" uncut
        say "(the cut row: the time for the $((n - 1)) others)"
    fi
}

# --------------------------------------------------------------- driver

summary_table() {
    local r st sys case detail pass=0 fail=0 skipped=0
    note "summary"
    for r in "${RESULTS[@]}"; do
        IFS=$'\t' read -r st sys case detail <<<"$r"
        printf '%-4s  %-7s  %s\n' "$st" "$sys" "$case"
        [ "$st" = FAIL ] && printf '                 %s\n' "$detail"
        case "$st" in PASS) pass=$((pass + 1)) ;; FAIL) fail=$((fail + 1)) ;; *) skipped=$((skipped + 1)) ;; esac
    done
    say "$pass passed, $fail failed, $skipped skipped; links: ${LINK_EMULATION:-not shaped with loss}; took $SECONDS s"
    [ "$fail" -eq 0 ]
}

# can_make_namespaces: root, ip and tc, and a namespace with a veth pair
# and a bridge can be made; else WHY.
can_make_namespaces() {
    WHY=
    if [ "$(id -u)" -ne 0 ]; then
        WHY="not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    elif ! command -v ip >/dev/null 2>&1; then
        WHY="no ip command (iproute2; scripts/install-deps.sh hosts)"
    elif ! command -v tc >/dev/null 2>&1; then
        WHY="no tc command (iproute2; scripts/install-deps.sh hosts)"
    elif ! out=$(ip netns add "$PFX-probe" 2>&1); then
        WHY="cannot make a network namespace: $out"
    else
        # A veth pair and a bridge, made inside the probe namespace only.
        if ! out=$(ip -n "$PFX-probe" link add name pa type veth peer name pb 2>&1); then
            WHY="cannot make a veth pair: $out"
        elif ! out=$(ip -n "$PFX-probe" link add name pbr type bridge 2>&1); then
            WHY="cannot make a bridge: $out"
        fi
        ip netns del "$PFX-probe"
    fi
    [ -z "$WHY" ]
}

usage() {
    say "usage: scripts/hosts.sh [GROUP...] | bench | list"
    say "groups: ${GROUPS_DEFAULT[*]}"
}

main() {
    local groups=() g rc=0
    case "${1:-}" in
    -h | --help) usage; return 0 ;;
    list) printf '%s\n' "${GROUPS_DEFAULT[@]}"; return 0 ;;
    esac
    if [ $# -eq 0 ]; then
        groups=("${GROUPS_DEFAULT[@]}")
    else
        groups=("$@")
    fi
    for g in "${groups[@]}"; do
        if [ "$g" != bench ] && ! declare -F "group_$g" >/dev/null; then
            say "scripts/hosts.sh: no such group: $g" >&2
            usage >&2
            return 2
        fi
    done
    if ! can_make_namespaces; then
        skipped "the multi-host suite" "needs network namespaces: $WHY"
        return 0
    fi
    demo_init hosts
    trap teardown EXIT
    trap 'say "interrupted: cleaning up; logs kept in $RUN"; exit 130' INT TERM
    # The root namespace's rpcbind socket (if any), to check it is untouched.
    export ROOT_RPCBIND_SOCK
    ROOT_RPCBIND_SOCK=$(stat -c %i /run/rpcbind.sock 2>/dev/null)
    say "hosts suite in $RUN; namespaces $PFX-*; subnet $NET.0/24"
    for g in "${groups[@]}"; do
        if [ "$g" = bench ]; then
            bench || rc=1
            continue
        fi
        "group_$g" || {
            say "FAIL  $g: the group could not be set up (see above and $RUN)"
            record FAIL "$g" "setting up the group" "see $RUN"
        }
        stop_all
        unshape_all
    done
    if [ ${#RESULTS[@]} -gt 0 ]; then
        summary_table || rc=1
    fi
    if [ "$rc" -eq 0 ] && [ -z "${KEEP:-}" ]; then
        teardown
        rm -rf "$RUN"
    else
        say "kept $RUN"
    fi
    return "$rc"
}

main "$@"
