#!/usr/bin/env bash
# The tmux layouts, checked without a terminal on a private tmux server
# (tmux -L): each demo returns at once, detached, saying how to attach and
# listing its daemons' pages, which answer; the balance and nap layouts keep
# every pane at least 60x14 on a 1280x720 screen (128x36 cells); the balance and
# rdir client panes finish their steps; ending the session stops the
# daemons and removes the run folder (KEEP=1 keeps it); and
# `scripts/test.sh view DEMO` prints the pages to open.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
demo_init layouts
if ! command -v tmux >/dev/null; then
    skipped "tmux layouts check" "no tmux (scripts/install-deps.sh demo)"
    exit 0
fi
export PEERKIT_TMUX_SOCKET="peerkit-check-$$"
export PACE=0
t() { tmux -L "$PEERKIT_TMUX_SOCKET" "$@"; }
finish() {
    t kill-server 2>/dev/null
    cleanup
}
trap finish EXIT

# http_ok URL: GET / answers 200.
http_ok() {
    local hp=${1#http://}
    hp=${hp%%/*}
    timeout 10 bash -c "exec 3<>/dev/tcp/${hp%:*}/${hp##*:} &&
        printf 'GET / HTTP/1.0\r\nHost: demo\r\n\r\n' >&3 && head -n1 <&3" | grep -q ' 200 '
}

# launch DEMO [ENV...]: runs tmux/DEMO.sh with no terminal (60 s at most);
# sets OUT (its output file), SESSION and FOLDER.
launch() {
    local demo=$1
    shift
    OUT="$RUN/$demo.launch"
    env "$@" timeout 60 bash "$ROOT/tmux/$demo.sh" </dev/null >"$OUT" 2>&1
    LAUNCH_RC=$?
    sed 's/^/    /' "$OUT"
    SESSION=$(sed -n 's/.* attach -t //p' "$OUT" | head -n1)
    FOLDER=$(sed -n 's/^folder: \([^ ]*\).*/\1/p' "$OUT" | head -n1)
}

# pages_answer N: the launch listed N pages, and each answers.
pages_answer() {
    local urls n=0 u
    urls=$(grep -oE 'http://[0-9.]+:[0-9]+/' "$OUT" | sort -u)
    for u in $urls; do
        http_ok "$u" || {
            say "    $u does not answer"
            return 1
        }
        n=$((n + 1))
    done
    [ "$n" -eq "$1" ]
}

# ended_and_tidied: kills the session; the folder goes and its daemons stop.
ended_and_tidied() {
    t kill-session -t "$SESSION" || return 1
    local i
    for i in $(seq 300); do
        if [ ! -e "$FOLDER" ]; then
            ! pgrep -f -- "$FOLDER" >/dev/null
            return
        fi
        sleep 0.1
    done
    return 1
}

# panes_at_least W H: every pane of the session is at least W x H.
panes_at_least() {
    t list-panes -t "$SESSION" -F '#{pane_width} #{pane_height}' |
        awk -v w="$1" -v h="$2" '{ print "    pane " $1 "x" $2 } $1 < w || $2 < h { bad = 1 } END { exit bad }'
}

# says_copied: the balance client pane says files are copied, never moved.
says_copied() {
    t capture-pane -pJ -S -300 -t "$SESSION:0.0" >"$RUN/client.txt"
    grep -q 'are copied to it' "$RUN/client.txt" && ! grep -q 'move to it' "$RUN/client.txt"
}

for demo in nap flood balance rdir swarm; do
    note "tmux $demo, no terminal"
    case $demo in
        flood) launch flood FLOOD_TOPO=chain FLOOD_TTL=4 ;;
        *) launch "$demo" ;;
    esac
    step "$demo: returns at once, detached" [ "$LAUNCH_RC" -eq 0 ]
    step "$demo: says how to attach" grep -q "attach -t $SESSION\$" "$OUT"
    step "$demo: session runs" t has-session -t "$SESSION"
    case $demo in
        nap)
            step "nap: 5 pages listed and answering" pages_answer 5
            step "nap: 4 panes of at least 60x14 at 128x36" panes_at_least 60 14
            ;;
        flood) step "flood: 6 pages listed and answering" pages_answer 6 ;;
        balance)
            step "balance: 4 pages listed and answering" pages_answer 4
            step "balance: 4 panes of at least 60x14 at 128x36" panes_at_least 60 14
            step "balance: the client's steps passed" \
                bash -c "for i in \$(seq 900); do [ -e '$FOLDER/passed' ] && exit 0; [ -e '$FOLDER/failed' ] && exit 1; sleep 0.2; done; exit 1"
            step "balance: says copied, not moved" says_copied
            ;;
        rdir)
            step "rdir: 3 pages listed and answering" pages_answer 3
            step "rdir: the client pane finished" \
                bash -c "for i in \$(seq 900); do [ -e '$FOLDER/client-done' ] && exit 0; sleep 0.2; done; exit 1"
            step "rdir: a restarted server keeps its page" pages_answer 3
            ;;
        swarm)
            step "swarm: 6 panes" test "$(t list-panes -t "$SESSION" | wc -l)" -eq 6
            step "swarm: 6 pages (tracker, seed, 4 peers) listed and answering" pages_answer 6
            ;;
    esac
    step "$demo: ending the session stops its daemons and removes its folder" ended_and_tidied
done

note "KEEP=1 keeps the folder"
launch nap KEEP=1
step "KEEP=1: ending the session leaves the folder" \
    bash -c "tmux -L $PEERKIT_TMUX_SOCKET kill-session -t '$SESSION' && sleep 3 && [ -d '$FOLDER' ]"
rm -rf "$FOLDER"

note "scripts/test.sh view nap"
OUT="$RUN/view.out"
timeout 60 bash "$ROOT/scripts/test.sh" view nap </dev/null >"$OUT" 2>&1
rc=$?
sed 's/^/    /' "$OUT"
SESSION=$(sed -n 's/.* attach -t //p' "$OUT" | head -n1)
FOLDER=$(sed -n 's/^folder: \([^ ]*\).*/\1/p' "$OUT" | head -n1)
step "view: returns with the pages to open" [ "$rc" -eq 0 ]
step "view: nap-server, nap-time, nap-log and both peers' pages answer" pages_answer 5
step "view: ending the session tidies up" ended_and_tidied
summary
