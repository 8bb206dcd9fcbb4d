#!/usr/bin/env bash
# Starting a flooding topology from testdata/flood/NAME.topo, in the order
# its file gives (each servent links to neighbours already running).
#
#   scripts/flood-topology.sh chain|diamond [KV-SERVENT FLAGS...]
#       starts the servents on free loopback ports, prints each one's
#       address (and page, with --http 127.0.0.1:0), and keeps them until
#       Ctrl-C; their logs are in the run folder it names (removed then,
#       unless KEEP=1)
#
# Sourced (by the flood demo and its tmux layout, after scripts/lib.sh), it
# only defines start_topology.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    . "$(dirname "$0")/lib.sh"
fi
TD=$ROOT/testdata/flood

# start_topology TOPO PREFIX: starts the servents of testdata/flood/TOPO.topo
# in file order as PREFIX_<name>, each linked to the named running
# neighbours, and waits until every neighbour has registered its link.
# The names, in start order, end up in TOPO_NAMES; LINK_FROM[PREFIX_n]
# lists, for servent n, "ADDR=NAME" for each link it accepted: the
# address its "link in ADDR" line shows (the neighbour's ephemeral port)
# and the servent on the other end. SERVENT_ARGS (an array) goes to every
# kv-servent: the tmux layout gives --http and --ttl.
declare -A LINKS_IN LINK_FROM
SERVENT_ARGS=("${SERVENT_ARGS[@]}")
start_topology() {
    local topo=$1 prefix=$2 name kv neighbours n v
    TOPO_NAMES=()
    while read -r name kv neighbours; do
        case "$name" in "" | \#*) continue ;; esac
        local addrs=()
        for n in $neighbours; do
            v="ADDR_${prefix}_$n"
            addrs+=("${!v}")
        done
        VIEW_LABEL="servent $name" start "${prefix}_$name" kv-servent --bind 127.0.0.1 \
            "${SERVENT_ARGS[@]}" 0 "$TD/$kv" "${addrs[@]}" || return 1
        for n in $neighbours; do
            LINKS_IN[${prefix}_$n]=$((${LINKS_IN[${prefix}_$n]:-0} + 1))
            wait_count "$RUN/${prefix}_$n.out" '^link in ' "${LINKS_IN[${prefix}_$n]}" || return 1
            v=$(grep '^link in ' "$RUN/${prefix}_$n.out" | sed -n "${LINKS_IN[${prefix}_$n]}s/^link in //p")
            LINK_FROM[${prefix}_$n]+="$v=$name "
        done
        TOPO_NAMES+=("$name")
    done <"$TD/$topo.topo"
}

[ "${BASH_SOURCE[0]}" = "$0" ] || return 0
topo=${1:-}
if [ ! -f "$TD/$topo.topo" ]; then
    say "usage: scripts/flood-topology.sh chain|diamond [KV-SERVENT FLAGS...]" >&2
    exit 2
fi
shift
demo_init "flood-$topo"
SERVENT_ARGS=("$@")
start_topology "$topo" f || exit 1
for name in "${TOPO_NAMES[@]}"; do
    v="ADDR_f_$name"
    page="VIEW_f_$name"
    say "servent $name on ${!v}${!page:+  page ${!page}}  (log: $RUN/f_$name.out)"
done
say "ask with: kv-query $(v=ADDR_f_s1 && echo "${!v}") '?servent'   (Ctrl-C here stops them all)"
# Ctrl-C: stop them (demo_init's EXIT trap) and drop the folder unless KEEP=1.
trap 'cleanup; [ -n "${KEEP:-}" ] || { rm -rf "$RUN"; rmdir "$ROOT/run" 2>/dev/null; }; exit 0' INT TERM
while :; do sleep 1; done
