#!/usr/bin/env bash
# Key-value flooding in tmux: the diamond topology (testdata/flood/diamond.topo,
# or FLOOD_TOPO=chain for the chain), one pane per servent showing its event
# log, and an interactive kv-query on s1. Try ?imap, ?http, ?servent, T, Q.
# The servents stop when the tmux session ends.
set -uo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
demo_init flood-tmux
TOPO=${FLOOD_TOPO:-diamond}
. "$ROOT/scripts/flood-topology.sh"

# Start the servents in file order, each linked to its running neighbours.
start_topology "$TOPO" t || exit 1

query="echo \"kv-query on s1 ($ADDR_t_s1), $TOPO topology. Try: ?imap  ?http  ?servent  T  Q\"; $BIN/kv-query --wait 2 $ADDR_t_s1"
tmux_open "flood" "kv-query" "$query"
for name in "${TOPO_NAMES[@]}"; do
    v="ADDR_t_$name"
    tmux_pane "servent $name" "echo \"servent $name on ${!v}: $(grep -v '^#' "$TD/$TOPO.topo" | awk -v n="$name" '$1 == n { s = "holds " $2; if (NF > 2) { s = s ", linked to"; for (i = 3; i <= NF; i++) s = s " " $i }; print s }')\"; tail -n +1 -f $RUN/t_$name.out $RUN/t_$name.err"
done
tmux_show
# Keep the servents alive as long as the session exists.
while tmux has-session -t "$TMUX_SESSION" 2>/dev/null; do
    sleep 1
done
