#!/usr/bin/env bash
# Key-value flooding in tmux: the diamond topology (testdata/flood/diamond.topo,
# or FLOOD_TOPO=chain for the chain), one pane per servent showing its event
# log, and an interactive kv-query on s1. Try ?imap, ?http, ?servent, T, Q.
# The servents stop when the tmux session ends.
set -uo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
demo_init flood-tmux
TOPO=${FLOOD_TOPO:-diamond}
TD=$ROOT/testdata/flood

# Start the servents in file order, each linked to its running neighbours.
declare -A LINKS_IN
names=()
while read -r name kv neighbours; do
    case "$name" in "" | \#*) continue ;; esac
    addrs=()
    for n in $neighbours; do
        v="ADDR_$n"
        addrs+=("${!v}")
    done
    start "$name" kv-servent --bind 127.0.0.1 0 "$TD/$kv" "${addrs[@]}" || exit 1
    for n in $neighbours; do
        LINKS_IN[$n]=$((${LINKS_IN[$n]:-0} + 1))
        until [ "$(grep -c '^link in ' "$RUN/$n.out")" -ge "${LINKS_IN[$n]}" ]; do sleep 0.05; done
    done
    names+=("$name")
done <"$TD/$TOPO.topo"

query="echo \"kv-query on s1 ($ADDR_s1), $TOPO topology. Try: ?imap  ?http  ?servent  T  Q\"; $BIN/kv-query --wait 2 $ADDR_s1"
tmux_open "flood" "$query"
for name in "${names[@]}"; do
    v="ADDR_$name"
    tmux_pane "echo \"servent $name on ${!v}: $(grep -v '^#' "$TD/$TOPO.topo" | awk -v n="$name" '$1 == n { s = "holds " $2; if (NF > 2) { s = s ", linked to"; for (i = 3; i <= NF; i++) s = s " " $i }; print s }')\"; tail -n +1 -f $RUN/$name.out $RUN/$name.err"
done
tmux_show
# Keep the servents alive as long as the session exists.
while tmux has-session -t "$TMUX_SESSION" 2>/dev/null; do
    sleep 1
done
