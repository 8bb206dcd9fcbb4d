#!/usr/bin/env bash
# Key-value flooding, headless: the diamond (topologia1) and the chain
# (topologia2) from testdata/flood, each queried with kv-query and checked.
#
#   diamond: s4 is reached from s1 along both sides and answers once;
#            a key held on both sides is answered twice; T lists 4 paths.
#   chain:   with TTL 3 a query from s1 reaches s1..s4 and stops at s4;
#            s5's key is not found; T returns the growing path.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
demo_init flood
TD=$ROOT/testdata/flood
# Quiet time that ends a query (seconds); answers come in milliseconds.
WAIT=${FLOOD_WAIT:-1}

# wait_count FILE ERE N [SECS]: waits until FILE has N lines matching ERE.
wait_count() {
    local file=$1 re=$2 n=$3 secs=${4:-30} i=0
    while [ "$i" -lt $((secs * 20)) ]; do
        if [ "$(grep -cE -- "$re" "$file" 2>/dev/null || true)" -ge "$n" ]; then
            return 0
        fi
        sleep 0.05
        i=$((i + 1))
    done
    say "timed out waiting for $n lines /$re/ in $file" >&2
    return 1
}

# start_topology TOPO PREFIX: starts the servents of testdata/flood/TOPO.topo
# in file order as PREFIX_<name>, each linked to the named running
# neighbours, and waits until every neighbour has registered its link.
declare -A LINKS_IN
start_topology() {
    local topo=$1 prefix=$2 name kv neighbours n v
    while read -r name kv neighbours; do
        case "$name" in "" | \#*) continue ;; esac
        local addrs=()
        for n in $neighbours; do
            v="ADDR_${prefix}_$n"
            addrs+=("${!v}")
        done
        start "${prefix}_$name" kv-servent --bind 127.0.0.1 0 "$TD/$kv" "${addrs[@]}" || return 1
        for n in $neighbours; do
            LINKS_IN[${prefix}_$n]=$((${LINKS_IN[${prefix}_$n]:-0} + 1))
            wait_count "$RUN/${prefix}_$n.out" '^link in ' "${LINKS_IN[${prefix}_$n]}" || return 1
        done
    done <"$TD/$topo.topo"
}

# ask NAME ADDR QUERY: runs kv-query, shows and keeps its output in $RUN/NAME.
ask() {
    local name=$1 addr=$2 query=$3
    say "\$ kv-query $addr '$query'"
    kv-query --wait "$WAIT" "$addr" "$query" >"$RUN/$name.ans" 2>"$RUN/$name.qerr"
    echo $? >"$RUN/$name.rc"
    sed 's/^/    /' "$RUN/$name.ans" "$RUN/$name.qerr"
}

# values NAME: the answers' values (the address is the last word), sorted.
values() { sed 's/ [^ ]*$//' "$RUN/$1.ans" | sort; }
lines() { wc -l <"$RUN/$1.ans" | tr -d ' '; }
rc() { cat "$RUN/$1.rc"; }
# origin_of NAME: the answer address of the latest client of servent NAME.
origin_of() { grep "^client .* answers to " "$RUN/$1.out" | tail -1 | sed 's/.* answers to //'; }
# dropped_somewhere PREFIX ORIGIN: a servent of PREFIX dropped a duplicate.
dropped_somewhere() { grep -q "^duplicate $2 seq 0 " "$RUN/$1"_*.out; }
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

ask imap "$ADDR_d_s1" '?imap'
step "diamond: ?imap (held by s4, reached along both sides) answered exactly once" \
    test "$(rc imap):$(lines imap):$(values imap)" = "0:1:143/tcp imap2 # Internet Message Access Protocol"
O=$(origin_of d_s1)
# The two copies meet at s4, or at s2/s3 when the copy round through s4 wins.
step "diamond: the second copy was dropped as a duplicate" eventually 10 dropped_somewhere d "$O"
step "diamond: s4 answered once" test "$(grep -c "^answered $O seq 0" "$RUN/d_s4.out")" -eq 1

ask http "$ADDR_d_s1" '?http'
step "diamond: ?http answered by s2 and by s3" \
    test "$(values http | tr '\n' '|')" = "80/tcp www # WorldWideWeb HTTP (copy held by s2)|80/tcp www # WorldWideWeb HTTP (copy held by s3)|"

ask dtopo "$ADDR_d_s1" 'T'
step "diamond: T returns s1, s1 s2, s1 s3 and one path to s4" \
    test "$(values dtopo | awk '{print NF}' | sort | tr '\n' ' ')" = "1 2 2 3 "

ask nokey "$ADDR_d_s1" '?no-such-key'
step "diamond: a key nobody holds: exit 1, no response received" \
    test "$(rc nokey)" = 1 -a "$(grep -c 'no response received' "$RUN/nokey.qerr")" = 1

note "chain (topologia2): s1 - s2 - s3 - s4 - s5 - s6, TTL 3"
start_topology chain c || exit 1

ask reach "$ADDR_c_s1" '?servent'
step "chain: ?servent (held by all) reaches s1, s2, s3, s4 only" \
    test "$(values reach | tr '\n' ' ')" = "s1 s2 s3 s4 "
O=$(origin_of c_s1)
step "chain: s4 stopped the flood (TTL used up)" wait_line "$RUN/c_s4.out" "^stopped $O seq 0$" 10
step "chain: s5 never saw it" test "$(grep -c "$O" "$RUN/c_s5.out")" -eq 0

ask far "$ADDR_c_s1" '?domain'
step "chain: ?domain (held by s5, four hops away) is not found" test "$(rc far)" = 1

ask ctopo "$ADDR_c_s1" 'T'
expected="$ADDR_c_s1 $ADDR_c_s2 $ADDR_c_s3 $ADDR_c_s4"
step "chain: T returns the path growing hop by hop up to s4" \
    test "$(values ctopo | awk '{print NF}' | sort | tr '\n' ' '):$(values ctopo | tail -1)" = "1 2 3 4 :$expected"

say "\$ printf '?ftp\\n?ssh\\nbogus\\n?telnet\\nQ\\n?smtp\\n' | kv-query $ADDR_c_s1"
printf '?ftp\n?ssh\nbogus\n?telnet\nQ\n?smtp\n' |
    kv-query --wait "$WAIT" "$ADDR_c_s1" >"$RUN/pipe.ans" 2>"$RUN/pipe.qerr"
echo $? >"$RUN/pipe.rc"
sed 's/^/    /' "$RUN/pipe.ans" "$RUN/pipe.qerr"
step "chain: a pipeline runs each line until Q" \
    test "$(rc pipe):$(values pipe | cut -d/ -f1 | tr '\n' ' '):$(cat "$RUN/pipe.qerr")" = "0:21 22 23 :kv-query: unknown command"

summary
