#!/usr/bin/env bash
# The Napster-like directory in tmux, four panes in a 2x2 grid (readable on
# a 1280x720 projector): two interactive peers (ana and bo) sharing their
# own folders above, nap-server's and nap-log's lines below; nap-time runs
# behind them (its address and WSDL in the server pane). Try in ana's pane: REGISTER ana, CONNECT ana, PUBLISH
# notes.txt my notes; in bo's: REGISTER bo, CONNECT bo, LIST_USERS,
# LIST_CONTENT ana, GET_FILE ana notes.txt copy.txt, QUIT.
# The daemons serve their pages (--http); their addresses are printed and
# in the pane titles. The daemons stop, and the run folder goes, when the
# tmux session ends.
set -uo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
demo_init nap-tmux
TMUX_LAYOUT=1

VIEW_LABEL=nap-time start time nap-time --listen 127.0.0.1:0 "${HTTP[@]}" || exit 1
VIEW_LABEL=nap-log start log nap-log --listen 127.0.0.1:0 "${HTTP[@]}" || exit 1
VIEW_LABEL=nap-server start server nap-server --listen 127.0.0.1:0 --storage "$RUN/state" --log-rpc "$ADDR_log" "${HTTP[@]}" || exit 1
mkdir -p "$RUN/ana" "$RUN/bo"
printf 'notes of ana\n' >"$RUN/ana/notes.txt"
printf 'a song of bo\n' >"$RUN/bo/song.txt"

peer() {
    echo "cd $RUN/$1 && echo \"peer $1: shares $RUN/$1 (try: REGISTER $1, CONNECT $1, PUBLISH $2, LIST_USERS, LIST_CONTENT $3, GET_FILE ...)\" && $BIN/nap-peer -s 127.0.0.1 -p $PORT_server --share $RUN/$1 --time-url http://$ADDR_time/ --listen-ip 127.0.0.1 --http $VIEW_HOST:0"
}

tmux_open "nap" "peer 1 (ana)" "$(peer ana "notes.txt my notes" bo)"
tmux_pane "peer 2 (bo)" "$(peer bo "song.txt a song" ana)"
tmux_pane "nap-server $ADDR_server  page $VIEW_server" "echo \"nap-time on $ADDR_time (page $VIEW_time): GET http://$ADDR_time/ or the WSDL at http://$ADDR_time/?wsdl\"; tail -n +1 -f $RUN/server.out $RUN/server.err"
tmux_pane "nap-log $ADDR_log  page $VIEW_log" "tail -n +1 -f $RUN/log.out $RUN/log.err"
view_in_pane "$TMUX_SESSION:0.0" "nap-peer ana" || tmux_abort "nap-peer ana (no page)"
view_in_pane "$TMUX_SESSION:0.1" "nap-peer bo" || tmux_abort "nap-peer bo (no page)"
tmux_show 5
tmux_keep
