#!/usr/bin/env bash
# Churn for a while: a DHT of 5 supernodes, a swarm of 8 peers and 3
# key-value servents under a steady stream of uploads, downloads, fetches
# and queries while members are killed with SIGKILL, leave gracefully and
# come back, at random (seeded: the seed is printed, SEED=N repeats a run).
#
#   scripts/soak.sh [--minutes N]     (default 2; SEED=N, KEEP=1 keep $RUN)
#
# At the end: every file a supernode acknowledged is retrievable and
# identical, every fetch is complete and identical, the servents answer,
# the long-lived daemons' open descriptors and RSS are flat after the
# first third of the run (the curve is printed), and no temporary or
# partial file is left anywhere.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/lib.sh"

MINUTES=2
while [ $# -gt 0 ]; do
    case "$1" in
    --minutes) MINUTES=$2; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "scripts/soak.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
SEED=${SEED:-$(( $(od -An -N2 -tu2 /dev/urandom) ))}
RANDOM=$SEED
demo_init soak
note "soak: $MINUTES minutes, seed $SEED (SEED=$SEED $0 --minutes $MINUTES repeats it)"

T="--timeout 5"
sha() { sha256sum "$1" | cut -d' ' -f1; }
# signal SIG PID NAME: sends SIG only to our own child PID still running
# NAME (a pid that ended may have been given to another process since).
signal() {
    local sig=$1 pid=$2 name=$3
    [ "$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)" = "$$" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name" || return 1
    kill "-$sig" "$pid" 2>/dev/null
}
log() { printf '%5ss %s\n' "$((EPOCHSECONDS - START))" "$*" >>"$RUN/events.log"; }

# ---- DHT: an index and 5 supernodes; sn1 is never killed (it is measured).
start idx p2p-index --listen 127.0.0.1:0 || exit 1
declare -a SN_PID SN_ADDR SN_DOWN SN_GEN
sn_start() {
    local i=$1
    local name
    SN_GEN[$i]=$((${SN_GEN[$i]:-0} + 1))
    name="sn${i}_${SN_GEN[$i]}"
    mkdir -p "$RUN/repo$i"
    start "$name" p2p-superd "$RUN/repo$i" --index "$ADDR_idx" --listen 127.0.0.1:0 \
        --sync-interval 1 $T || return 1
    eval "SN_PID[$i]=\$PID_$name; SN_ADDR[$i]=\$ADDR_$name"
    SN_DOWN[$i]=0
}
for i in 1 2 3 4 5; do sn_start "$i" || exit 1; done
# up_sn: UP lists the supernodes up now. rand_up_sn: I is one of them.
# The churn loop forks only the programs it runs: no command or process
# substitution there (bash 5.2 can lose a foreground child's exit when a
# process substitution's PID is reused, which the loop's thousands of
# processes make likely, and then waits forever), and RANDOM is drawn in
# this shell, so SEED repeats the run.
up_sn() {
    local i
    UP=()
    for i in 1 2 3 4 5; do [ "${SN_DOWN[$i]}" = 0 ] && UP+=("$i"); done
}
rand_up_sn() {
    up_sn
    I=${UP[$((RANDOM % ${#UP[@]}))]}
}

# ---- Swarm: a tracker, a seed, 8 fetchers that stay on to share.

start tracker bt-tracker --listen 127.0.0.1:0 || exit 1
mkdir -p "$RUN/swarm"
head -c $((6 << 20)) /dev/urandom >"$RUN/swarm/data.bin"
start seed bt-peer share "$RUN/swarm/data.bin" --tracker "$ADDR_tracker" \
    --listen 127.0.0.1:0 --ping-interval 0.5 --report-interval 1 || exit 1
declare -a BT_PID BT_GEN
bt_start() {
    local i=$1
    local name
    BT_GEN[$i]=$((${BT_GEN[$i]:-0} + 1))
    name="bt${i}_${BT_GEN[$i]}"
    mkdir -p "$RUN/peer$i"
    start "$name" bt-peer fetch data.bin --tracker "$ADDR_tracker" --listen 127.0.0.1:0 \
        --out "$RUN/peer$i" --ping-interval 0.5 --report-interval 1 || return 1
    eval "BT_PID[$i]=\$PID_$name"
}
for i in 1 2 3 4 5 6 7 8; do bt_start "$i" || exit 1; done

# ---- Flooding: s1 - s2 - s3; s3 (a leaf) is the one killed.
mkdir -p "$RUN/kv"
for i in 1 2 3; do printf 'key%s value%s\nshared from-s%s\n' "$i" "$i" "$i" >"$RUN/kv/s$i.kv"; done
start s1 kv-servent --bind 127.0.0.1 0 "$RUN/kv/s1.kv" || exit 1
start s2 kv-servent --bind 127.0.0.1 0 "$RUN/kv/s2.kv" "$ADDR_s1" || exit 1
S3_GEN=0
s3_start() {
    S3_GEN=$((S3_GEN + 1))
    start "s3_$S3_GEN" kv-servent --bind 127.0.0.1 0 "$RUN/kv/s3.kv" "$ADDR_s2" || return 1
    eval "S3_PID=\$PID_s3_$S3_GEN"
    S3_DOWN=0
}
s3_start || exit 1

# ---- The measured daemons: never killed.
MEASURED="idx:$PID_idx sn1:${SN_PID[1]} tracker:$PID_tracker seed:$PID_seed s1:$PID_s1 s2:$PID_s2"
sample() {
    local m name pid fds rss line
    line=$1
    for m in $MEASURED; do
        name=${m%%:*} pid=${m#*:}
        fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        line="$line $name=$fds/$rss"
    done
    echo "$line" >>"$RUN/curve"
}

# ---- The run.
START=$EPOCHSECONDS
END=$((START + MINUTES * 60))
NEXT_SAMPLE=$START
N=0 PUT_OK=0 PUT_FAIL=0 GET_OK=0 GET_MISS=0 BAD=0 Q_OK=0 Q_MISS=0 KILLS=0 LEAVES=0
: >"$RUN/acked"
ACKED=()
declare -A RESTART_AT
while [ "$EPOCHSECONDS" -lt "$END" ]; do
    now=$EPOCHSECONDS
    if [ "$now" -ge "$NEXT_SAMPLE" ]; then
        sample $((now - START))
        NEXT_SAMPLE=$((now + 10))
    fi
    for k in "${!RESTART_AT[@]}"; do
        if [ "${RESTART_AT[$k]}" -le "$now" ]; then
            unset "RESTART_AT[$k]"
            case "$k" in
            sn*) sn_start "${k#sn}" && log "restarted supernode ${k#sn} at ${SN_ADDR[${k#sn}]}" ;;
            bt*) bt_start "${k#bt}" && log "restarted peer ${k#bt}" ;;
            s3) s3_start && log "restarted servent s3" ;;
            esac
        fi
    done
    r=$((RANDOM % 100))
    if [ "$r" -lt 45 ]; then
        # Upload a new file to a random supernode.
        N=$((N + 1))
        f="$RUN/src/f$N.bin"
        mkdir -p "$RUN/src"
        head -c $(((RANDOM % 256 + 1) * 1024)) /dev/urandom >"$f"
        rand_up_sn
        i=$I
        if p2p-put "${SN_ADDR[$i]}" "$f" $T >/dev/null 2>>"$RUN/put.err"; then
            ACKED+=("f$N.bin $(sha "$f")")
            echo "${ACKED[-1]}" >>"$RUN/acked"
            PUT_OK=$((PUT_OK + 1))
        else
            PUT_FAIL=$((PUT_FAIL + 1))
        fi
    elif [ "$r" -lt 65 ] && [ "${#ACKED[@]}" -gt 0 ]; then
        # Download an acknowledged file from a random supernode.
        read -r name want <<<"${ACKED[$(((RANDOM * 32768 + RANDOM) % ${#ACKED[@]}))]}"
        rand_up_sn
        i=$I
        rm -f "$RUN/dl.bin"
        if p2p-get "${SN_ADDR[$i]}" "$name" -o "$RUN/dl.bin" --force $T >/dev/null 2>>"$RUN/get.err"; then
            if [ "$(sha "$RUN/dl.bin")" = "$want" ]; then
                GET_OK=$((GET_OK + 1))
            else
                BAD=$((BAD + 1))
                log "MISMATCH: $name from supernode $i"
            fi
        else
            GET_MISS=$((GET_MISS + 1))
        fi
    elif [ "$r" -lt 75 ]; then
        if kv-query --wait 0.5 $T "$ADDR_s1" "?key$((RANDOM % 3 + 1))" >/dev/null 2>&1; then
            Q_OK=$((Q_OK + 1))
        else
            Q_MISS=$((Q_MISS + 1))
        fi
    elif [ "$r" -lt 80 ]; then
        # SIGKILL or SIGTERM a supernode other than sn1, keeping three up.
        up_sn
        if [ "${#UP[@]}" -gt 3 ]; then
            i=${UP[$((1 + RANDOM % (${#UP[@]} - 1)))]}
            if [ $((RANDOM % 2)) = 0 ]; then
                signal KILL "${SN_PID[$i]}" p2p-superd; KILLS=$((KILLS + 1)); how=SIGKILL
            else
                signal TERM "${SN_PID[$i]}" p2p-superd; LEAVES=$((LEAVES + 1)); how=SIGTERM
            fi
            wait "${SN_PID[$i]}" 2>/dev/null
            SN_DOWN[$i]=1
            RESTART_AT[sn$i]=$((now + 2 + RANDOM % 6))
            log "$how supernode $i"
        fi
    elif [ "$r" -lt 85 ]; then
        # SIGKILL a fetcher; it resumes (or, one time in three, starts over).
        i=$((1 + RANDOM % 8))
        if [ -z "${RESTART_AT[bt$i]:-}" ]; then
            signal KILL "${BT_PID[$i]}" bt-peer; wait "${BT_PID[$i]}" 2>/dev/null
            KILLS=$((KILLS + 1))
            if [ $((RANDOM % 3)) = 0 ]; then rm -rf "${RUN:?}/peer$i"; how="and wiped"; else how=""; fi
            RESTART_AT[bt$i]=$((now + 1 + RANDOM % 4))
            log "SIGKILL peer $i $how"
        fi
    elif [ "$r" -lt 87 ] && [ "${S3_DOWN:-0}" = 0 ]; then
        signal KILL "$S3_PID" kv-servent; wait "$S3_PID" 2>/dev/null
        KILLS=$((KILLS + 1)); S3_DOWN=1
        RESTART_AT[s3]=$((now + 2 + RANDOM % 4))
        log "SIGKILL servent s3"
    else
        sleep 0.2
    fi
done
sample $((EPOCHSECONDS - START))

# ---- Everything back, then the checks.
for k in "${!RESTART_AT[@]}"; do
    case "$k" in
    sn*) sn_start "${k#sn}" ;;
    bt*) bt_start "${k#bt}" ;;
    s3) s3_start ;;
    esac
done
note "churn over: $PUT_OK uploads acknowledged ($PUT_FAIL refused), $GET_OK downloads checked ($GET_MISS unavailable at the time), $Q_OK queries answered ($Q_MISS not), $KILLS SIGKILLs, $LEAVES graceful leaves"
say "events: $RUN/events.log ($(wc -l <"$RUN/events.log" 2>/dev/null || echo 0) lines)"

# retrievable NAME SHA: from any supernode, within 60 s (the ring settles).
retrievable() {
    local name=$1 want=$2
    local i tries=0
    while [ "$tries" -lt 120 ]; do
        i=$(( (tries % 5) + 1 ))
        if p2p-get "${SN_ADDR[$i]}" "$name" -o "$RUN/check.bin" --force $T >/dev/null 2>&1 &&
            [ "$(sha "$RUN/check.bin")" = "$want" ]; then
            return 0
        fi
        tries=$((tries + 1))
        sleep 0.5
    done
    say "  $name: not retrievable" >&2
    return 1
}
every_acked() {
    local name want bad=0
    while read -r name want; do retrievable "$name" "$want" || bad=$((bad + 1)); done <"$RUN/acked"
    [ "$bad" -eq 0 ]
}
step "every one of the $PUT_OK acknowledged files is retrievable and identical" every_acked
step "no download during the churn was different from what was acknowledged" test "$BAD" -eq 0

all_fetched() {
    local i
    for i in 1 2 3 4 5 6 7 8; do
        wait_line "$RUN/bt${i}_${BT_GEN[$i]}.out" '^complete: ' 120 || return 1
        cmp -s "$RUN/peer$i/data.bin" "$RUN/swarm/data.bin" || { say "  peer $i differs" >&2; return 1; }
    done
}
step "all 8 fetches complete and identical" all_fetched

kv_answers() {
    local i=0
    while [ "$i" -lt 60 ]; do
        [ "$(kv-query --wait 1 $T "$ADDR_s1" '?key3' 2>/dev/null | cut -d' ' -f1)" = value3 ] && return 0
        i=$((i + 1))
        sleep 0.5
    done
    return 1
}
step "the servents answer across the restarted leaf" kv_answers

note "open descriptors / RSS KiB of the long-lived daemons, every 10 s"
cat "$RUN/curve"
# flat NAME: from the sample a third of the way in to the last, at most 8
# more descriptors and at most 50% (and 8 MiB) more RSS.
flat() {
    local name=$1
    local lines third f0 r0 f1 r1
    lines=$(wc -l <"$RUN/curve")
    third=$(( (lines + 2) / 3 ))
    read -r f0 r0 < <(sed -n "${third}p" "$RUN/curve" | tr ' ' '\n' | sed -n "s/^$name=//p" | tr / ' ')
    read -r f1 r1 < <(tail -n1 "$RUN/curve" | tr ' ' '\n' | sed -n "s/^$name=//p" | tr / ' ')
    [ "$f1" -le $((f0 + 8)) ] && [ "$r1" -le $((r0 * 3 / 2 + 8192)) ] ||
        { say "  $name: $f0 -> $f1 descriptors, $r0 -> $r1 KiB" >&2; return 1; }
}
for m in $MEASURED; do
    step "${m%%:*}: descriptors and RSS flat after the first third" flat "${m%%:*}"
done

# Stop everything gracefully, then look for leftovers.
cleanup
leftovers() {
    local found
    found=$(find "$RUN"/repo* "$RUN"/peer* -name '.peerkit-tmp-*' -o -name '*.part' 2>/dev/null)
    [ -z "$found" ] || { say "$found" >&2; return 1; }
}
step "no temporary or partial file left" leftovers
say "seed $SEED"
summary
