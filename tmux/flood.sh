#!/usr/bin/env bash
# Key-value flooding in tmux: the diamond topology (testdata/flood/diamond.topo,
# or FLOOD_TOPO=chain for the chain), one pane per servent showing its event
# log, and an interactive kv-query on s1. Try ?imap, ?http, ?servent, T, help, Q.
# FLOOD_TTL=N gives the servents --ttl N (default 3): FLOOD_TOPO=chain
# FLOOD_TTL=4 shows the course write-up's "five servents reached" (see the
# README). Every servent serves its page (--http): the addresses are printed
# and in the pane titles. The servents stop, and the run folder goes, when
# the tmux session ends.
#
# Every pane title carries the address its process listens on; each servent
# pane starts with the addresses its links show up as in its log (a link it
# accepted shows the neighbour's ephemeral port), and kv-query (-v) prints
# the port answers come to, which servents log as "answers to". The
# servents run with --answer-id, so kv-query names each answer by the
# listening address of the servent that sent it.
set -uo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
demo_init flood-tmux
TMUX_LAYOUT=1
TOPO=${FLOOD_TOPO:-diamond}
. "$ROOT/scripts/flood-topology.sh"

# Start the servents in file order, each linked to its running neighbours.
SERVENT_ARGS=("${HTTP[@]}" --answer-id)
[ -n "${FLOOD_TTL:-}" ] && SERVENT_ARGS+=(--ttl "$FLOOD_TTL")
start_topology "$TOPO" t || exit 1

# banner NAME: what servent NAME holds, and who is behind each link address.
banner() {
    local name=$1 kv neighbours n v pair
    read -r kv neighbours < <(awk -v n="$name" '$1 == n { $1 = ""; print }' <(grep -v '^#' "$TD/$TOPO.topo"))
    v="ADDR_t_$name"
    say "servent $name on ${!v}, holds $kv"
    for n in $neighbours; do
        v="ADDR_t_$n"
        say "  link out ${!v} is servent $n"
    done
    for pair in ${LINK_FROM[t_$name]:-}; do
        v="ADDR_t_${pair#*=}"
        say "  link in ${pair%=*} is servent ${pair#*=} (${!v})"
    done
}

query="echo \"kv-query on s1 ($ADDR_t_s1), $TOPO topology, TTL ${FLOOD_TTL:-3}\"; $BIN/kv-query -v --wait 2 $ADDR_t_s1"
tmux_open "flood" "kv-query -> s1 ($ADDR_t_s1)" "$query"
for name in "${TOPO_NAMES[@]}"; do
    v="ADDR_t_$name"
    banner "$name" >"$RUN/t_$name.banner"
    page="VIEW_t_$name"
    tmux_pane "servent $name ${!v}  page ${!page}" "cat $RUN/t_$name.banner; tail -n +1 -f $RUN/t_$name.out $RUN/t_$name.err"
done
tmux_show "${#TOPO_NAMES[@]}"
tmux_keep
