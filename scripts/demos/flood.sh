#!/usr/bin/env bash
# Key-value flooding, headless: the diamond (topologia1) and the chain
# (topologia2) from testdata/flood, each queried with kv-query and checked.
#
#   diamond: s4 is reached from s1 along both sides and answers once;
#            a key held on both sides is answered twice; T lists 4 paths.
#   chain:   with TTL 3 a query from s1 reaches s1..s4 and stops at s4;
#            s5's key is not found; T returns the growing path. Then s1
#            restarted with --ttl 4: the query reaches five servents,
#            s1..s5, the figure the course's write-up gives for TTL 3.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
. "$ROOT/scripts/flood-topology.sh"
demo_init flood
# Every servent sends an ID with its listening port before each answer, so
# kv-query names an answer by the servent that sent it (its listening
# address), not by the answer connection's source port.
SERVENT_ARGS+=(--answer-id)
# kv-query's quiet time (seconds), longer than the demo: each wait for
# answers is ended with SIGTERM once the servents' own lines show the flood
# is over, so a slow machine makes the demo slower, never wrong.
NEVER=3600

# ere TEXT: TEXT as an ERE matching itself (addresses have dots).
ere() { printf '%s' "$1" | sed 's/[.[\*^$()+?{}|]/\\&/g'; }

# client_start NAME SERVENT_OUT CMD...: starts a kv-query in the background
# (stdin from $RUN/NAME.in if it exists, output in $RUN/NAME.ans and .qerr,
# pid in QPID) and sets O to the answer address the servent logged for it
# and S0 to its first query's sequence number (a client starts at a random
# one).
client_start() {
    local name=$1 out=$2 before
    shift 2
    before=$(grep -c '^client .* answers to ' "$out")
    local in=/dev/null
    [ -f "$RUN/$name.in" ] && in=$RUN/$name.in
    "$@" <"$in" >"$RUN/$name.ans" 2>"$RUN/$name.qerr" &
    QPID=$!
    PIDS+=("$QPID")
    wait_count "$out" '^client .* answers to ' $((before + 1)) || return 1
    O=$(grep '^client .* answers to ' "$out" | sed -n "$((before + 1))s/.* answers to //p")
    wait_count "$out" "^request (key|topo) $(ere "$O") seq " 1 || return 1
    S0=$(grep -E "^request (key|topo) $(ere "$O") seq " "$out" | head -1 | sed 's/.* seq \([0-9]*\).*/\1/')
}

# settled PREFIX K "REACHED" "ANSWERERS" NLINES NAME: waits until query
# ($O, S0 + K) was forwarded or stopped by each servent in REACHED, answered by
# each in ANSWERERS, and NAME.ans has NLINES lines; then ends the wait.
settled() {
    local prefix=$1 seq=$(((S0 + $2) % 4294967296)) reached=$3 answerers=$4 nlines=$5 name=$6 n o
    o=$(ere "$O")
    for n in $reached; do
        wait_count "$RUN/${prefix}_$n.out" "^(forwarded $o seq $seq |stopped $o seq $seq\$)" 1 || return 1
    done
    for n in $answerers; do
        wait_count "$RUN/${prefix}_$n.out" "^answered $o seq $seq\$" 1 || return 1
    done
    wait_count "$RUN/$name.ans" '' "$nlines" || return 1
    kill -TERM "$QPID"
}

# flooded PREFIX K "REACHED" "ANSWERERS": waits until query ($O, S0 + K)
# was forwarded or stopped by each servent in REACHED and answered by each
# in ANSWERERS (a pipeline's answers are printed only when its one wait
# ends).
flooded() {
    local prefix=$1 seq=$(((S0 + $2) % 4294967296)) reached=$3 answerers=$4 n o
    o=$(ere "$O")
    for n in $reached; do
        wait_count "$RUN/${prefix}_$n.out" "^(forwarded $o seq $seq |stopped $o seq $seq\$)" 1 || return 1
    done
    for n in $answerers; do
        wait_count "$RUN/${prefix}_$n.out" "^answered $o seq $seq\$" 1 || return 1
    done
}

# ask NAME PREFIX ENTRY QUERY "REACHED" "ANSWERERS": asks servent ENTRY,
# ends the wait once the flood is over, and keeps the output in $RUN/NAME.
ask() {
    local name=$1 prefix=$2 entry=$3 query=$4 reached=$5 answerers=$6 v rc
    v="ADDR_${prefix}_$entry"
    say "\$ kv-query ${!v} '$query'"
    if client_start "$name" "$RUN/${prefix}_$entry.out" kv-query --wait "$NEVER" --settle "$NEVER" "${!v}" "$query"; then
        # shellcheck disable=SC2086
        settled "$prefix" 0 "$reached" "$answerers" "$(echo $answerers | wc -w)" "$name" ||
            kill -TERM "$QPID"
    else
        kill -TERM "$QPID"
    fi
    wait "$QPID"
    rc=$?
    echo "$rc" >"$RUN/$name.rc"
    echo "$O" >"$RUN/$name.origin"
    sed 's/^/    /' "$RUN/$name.ans" "$RUN/$name.qerr"
}

# values NAME: the answers' values (the address is the last word), sorted.
values() { sed 's/ [^ ]*$//' "$RUN/$1.ans" | sort; }
lines() { wc -l <"$RUN/$1.ans" | tr -d ' '; }
rc() { cat "$RUN/$1.rc"; }
origin_of() { cat "$RUN/$1.origin"; }
# tree NAME FIRST: NAME holds 4 topology answers, one ending at each servent,
# each starting at FIRST and being an answered path plus one hop.
tree() {
    local name=$1 first=$2 p
    [ "$(lines "$name")" -eq 4 ] || return 1
    [ "$(values "$name" | awk '{print $NF}' | sort -u | wc -l)" -eq 4 ] || return 1
    while read -r p; do
        [ "${p%% *}" = "$first" ] || return 1
        case "$p" in *" "*) values "$name" | grep -qxF -- "${p% *}" || return 1 ;; esac
    done < <(values "$name")
}
# dropped_somewhere PREFIX ORIGIN: a servent of PREFIX dropped a duplicate.
dropped_somewhere() { grep -q "^duplicate $2 seq [0-9]* " "$RUN/$1"_*.out; }
# eventually SECS CMD...: retries CMD for up to SECS seconds.
eventually() {
    local secs=$1 i=0
    shift
    while ! "$@"; do
        i=$((i + 1))
        [ "$i" -ge $((secs * 20)) ] && return 1
        sleep 0.05
    done
}

note "diamond (topologia1): s1 -> s2, s3 -> s4"
sed -n '/^#  /p' "$TD/diamond.topo" | sed 's/^#//'
start_topology diamond d || exit 1

D="s1 s2 s3 s4"
ask imap d s1 '?imap' "$D" s4
step "diamond: ?imap (held by s4, reached along both sides) answered exactly once" \
    test "$(rc imap):$(lines imap):$(values imap)" = "0:1:143/tcp imap2 # Internet Message Access Protocol"
O=$(origin_of imap)
# The two copies meet at s4, or at s2/s3 when the copy round through s4 wins.
step "diamond: the second copy was dropped as a duplicate" eventually 30 dropped_somewhere d "$O"
step "diamond: s4 answered once" test "$(grep -c "^answered $O seq [0-9]*$" "$RUN/d_s4.out")" -eq 1
step "diamond: the answer is named by s4's listening address ($ADDR_d_s4)" \
    test "$(awk '{print $NF}' "$RUN/imap.ans")" = "$ADDR_d_s4"

ask http d s1 '?http' "$D" "s2 s3"
step "diamond: ?http answered by s2 and by s3" \
    test "$(values http | tr '\n' '|')" = "80/tcp www # WorldWideWeb HTTP (copy held by s2)|80/tcp www # WorldWideWeb HTTP (copy held by s3)|"

ask dtopo d s1 T "$D" "$D"
# Usually s1, s1 s2, s1 s3 and one path to s4; on a busy machine s2 or s3
# may first hear it through s4.
step "diamond: T returns one path per servent, the path it came by plus itself" \
    tree dtopo "$ADDR_d_s1"

ask nokey d s1 '?no-such-key' "$D" ""
step "diamond: a key nobody holds: exit 1, no response received" \
    test "$(rc nokey)" = 1 -a "$(grep -c 'no response received' "$RUN/nokey.qerr")" = 1

note "chain (topologia2): s1 - s2 - s3 - s4 - s5 - s6, TTL 3"
start_topology chain c || exit 1

C="s1 s2 s3 s4"
ask reach c s1 '?servent' "$C" "$C"
step "chain: ?servent (held by all) reaches s1, s2, s3, s4 only" \
    test "$(values reach | tr '\n' ' ')" = "s1 s2 s3 s4 "
O=$(origin_of reach)
step "chain: s4 stopped the flood (TTL used up)" grep -qx "stopped $(ere "$O") seq [0-9]*" "$RUN/c_s4.out"
step "chain: s5 never saw it" test "$(grep -c "$O" "$RUN/c_s5.out")" -eq 0

ask far c s1 '?domain' "$C" ""
step "chain: ?domain (held by s5, four hops away) is not found" test "$(rc far)" = 1

ask ctopo c s1 T "$C" "$C"
expected="$ADDR_c_s1 $ADDR_c_s2 $ADDR_c_s3 $ADDR_c_s4"
step "chain: T returns the path growing hop by hop up to s4" \
    test "$(values ctopo | awk '{print NF}' | sort | tr '\n' ' '):$(values ctopo | tail -1)" = "1 2 3 4 :$expected"

printf '?ftp\n?ssh\nbogus\n?telnet\nQ\n?smtp\n' >"$RUN/pipe.in"
say "\$ kv-query $ADDR_c_s1 <pipe.in   # $(tr '\n' ' ' <"$RUN/pipe.in")"
# The pipeline's queries go out together and share one wait, ended as in
# ask once every flood is over: ?ftp (the first seq) is held by s1, ?ssh
# (the next) by s2, ?telnet (the third) by s3.
if client_start pipe "$RUN/c_s1.out" kv-query --wait "$NEVER" --settle "$NEVER" "$ADDR_c_s1"; then
    flooded c 0 "$C" s1 && flooded c 1 "$C" s2 && flooded c 2 "$C" s3
fi
kill -TERM "$QPID"
wait "$QPID"
echo $? >"$RUN/pipe.rc"
sed 's/^/    /' "$RUN/pipe.ans" "$RUN/pipe.qerr"
step "chain: a pipeline runs each line until Q" \
    test "$(rc pipe):$(values pipe | cut -d/ -f1 | tr '\n' ' '):$(cat "$RUN/pipe.qerr")" = '0:21 22 23 :kv-query: unknown command "bogus" (help lists the commands)'

note "chain, s1 restarted with --ttl 4: the write-up's five servents"
# The write-up says TTL 3 reaches five of the six; the protocol's
# arithmetic (the entry servent, then one more per TTL) gives four, as
# above. With --ttl 4 the flood reaches the five the write-up counts.
kill "$PID_c_s1"
wait "$PID_c_s1" 2>/dev/null
links=$(grep -c '^link in ' "$RUN/c_s2.out")
start c_s1 kv-servent --bind 127.0.0.1 --answer-id --ttl 4 0 "$TD/chain/s1.kv" "$ADDR_c_s2" || exit 1
wait_count "$RUN/c_s2.out" '^link in ' $((links + 1)) || exit 1
C5="s1 s2 s3 s4 s5"
ask reach4 c s1 '?servent' "$C5" "$C5"
step "chain, --ttl 4: ?servent reaches s1, s2, s3, s4, s5 (five servents)" \
    test "$(values reach4 | tr '\n' ' ')" = "s1 s2 s3 s4 s5 "
O=$(origin_of reach4)
step "chain, --ttl 4: s5 stopped the flood, s6 never saw it" \
    test "$(grep -cxF "stopped $O seq $S0" "$RUN/c_s5.out"):$(grep -c "$O" "$RUN/c_s6.out")" = "1:0"

summary
