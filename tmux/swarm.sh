#!/usr/bin/env bash
# The swarm demo in tmux panes: the tracker, the seed and 4 peers, slowed
# down (one piece request per --request-interval per peer) so the rarest-
# first spread can be watched; the tracker and every peer serve their pages
# (--http: the piece map on the tracker's). Run it with: scripts/test.sh tmux swarm
# The run folder (the seed's file and four copies) goes when the session
# ends, unless KEEP=1 or a copy differed from the original.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

SIZE_MIB=${SIZE_MIB:-4}
INTERVAL=${INTERVAL:-0.5}
PERIODS="--ping-interval 2 --report-interval 4"

demo_init swarm-tmux
mkdir -p "$RUN/seed"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$RUN/seed/movie.bin"

tmux_open swarm "tracker" "echo tracker; $BIN/bt-tracker --listen 127.0.0.1:0 --cleanup-interval 6 --http $VIEW_HOST:0 | tee $RUN/tracker.out"
wait_line "$RUN/tracker.out" '^listening on ' 30 || tmux_abort "bt-tracker"
TRACKER=$(grep -m1 '^listening on ' "$RUN/tracker.out" | sed 's/^listening on //')

view_of tracker "bt-tracker" "$RUN/tracker.out" || tmux_abort "bt-tracker's page"
tmux_pane "seed" "echo seed; $BIN/bt-peer share $RUN/seed/movie.bin --tracker $TRACKER --listen 127.0.0.1:0 --piece-size 128K --upload-limit 1M $PERIODS --http $VIEW_HOST:0 | tee $RUN/seed.out"
tmux_title_when "$RUN/seed.out" "seed"
wait_line "$RUN/seed.out" '^swarm ' 60 || tmux_abort "the seed"
view_of seed "bt-peer seed" "$RUN/seed.out" || tmux_abort "the seed's page"

for i in 1 2 3 4; do
    mkdir -p "$RUN/peer$i"
    view_later "bt-peer $i" "$RUN/peer$i.out"
    tmux_pane "peer $i" "echo peer$i; $BIN/bt-peer fetch movie.bin -v --tracker $TRACKER --out $RUN/peer$i --listen 127.0.0.1:0 --request-interval $INTERVAL $PERIODS --http $VIEW_HOST:0 | tee $RUN/peer$i.out; echo; if cmp $RUN/seed/movie.bin $RUN/peer$i/movie.bin; then echo identical to the original; touch $RUN/done-$i; else touch $RUN/failed; fi"
    tmux_title_when "$RUN/peer$i.out" "peer $i"
done
tmux_show 6
tmux_keep
