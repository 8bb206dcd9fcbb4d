#!/usr/bin/env bash
# The rdir demo in tmux panes: the three servers (stateful, stateless, rpc)
# over a copy of testdata/rdir, and a client pane that lists in each mode,
# shows --mix and bogus handles, restarts the stateless server in the middle
# of a slow listing (it completes) and the stateful one (its handle is
# refused), lists through the rpcgen-built C client and the course's rls.c
# linked against each design's dirops library (scripts/build-dirops.sh).
# Each server serves its page (--http; a restarted server keeps its page's
# address): the addresses are printed and in the pane titles.
# Run it with: scripts/test.sh tmux rdir
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The headless demo's helpers (rdir_setup, ...) and lib.sh.
. "$HERE/../scripts/demos/rdir.sh"

title() { printf '\033]2;%s\033\\' "$1"; }

addr_of() {
    wait_line "$RUN/$1.out" '^listening on ' 60 >/dev/null &&
        grep -m1 '^listening on ' "$RUN/$1.out" | sed 's/^listening on //'
}

pane_server() {
    local mode=$1 listen=${2:-127.0.0.1:0} http=${3:-$VIEW_HOST:0} line addr=
    title "rdird $mode"
    say "\$ rdird --mode $mode --root $RUN/root --listen $listen --http $http"
    rdird --mode "$mode" --root "$RUN/root" --listen "$listen" --http "$http" |
        tee -i "$RUN/$mode.out" | while IFS= read -r line; do
            say "$line"
            case $line in
                "listening on "*) addr=${line#listening on } ;;
                "view on "*) title "rdird $mode $addr  page ${line#view on }" ;;
            esac
        done
}

# page_of MODE: HOST:PORT of MODE's page (to restart it on the same one).
page_of() {
    wait_line "$RUN/$1.out" '^view on ' 60 >/dev/null &&
        grep -m1 '^view on ' "$RUN/$1.out" | sed 's|^view on http://||; s|/$||'
}

# show CMD...: prints a command, then runs it.
show() {
    say
    say "\$ $*"
    "$@"
}

pane_client() {
    title "client"
    local sf sl rp
    sf=$(addr_of stateful) sl=$(addr_of stateless) rp=$(addr_of rpc)
    sf=${sf##*:} sl=${sl##*:} rp=${rp##*:}
    show rls --mode stateful --port "$sf" docs
    show rls --mode stateless --port "$sl" music
    show rls --mode rpc docs
    show rls --port "$sl" --mix docs music
    show rls --port "$sl" ..
    show rls --mode stateful --port "$sf" --handle deadbeef docs
    say
    say "-- a slow stateless listing; its server restarts after 100 entries"
    : >"$RUN/slow.txt"
    rls --port "$sl" --batch 20 --pause 100ms many | tee "$RUN/slow.txt" | tail -n 3 &
    local pid=$!
    wait_count "$RUN/slow.txt" . 100 30
    local page
    page=$(page_of stateless)
    : >"$RUN/stateless.out"
    tmux respawn-pane -k -t "$(cat "$RUN/pane-stateless")" \
        "$me server stateless 127.0.0.1:$sl $page; exec bash"
    wait "$pid"
    say "listed $(wc -l <"$RUN/slow.txt") entries across the restart"
    say
    say "-- a slow stateful listing; its server restarts after 60 entries"
    : >"$RUN/slowful.txt"
    rls --mode stateful --port "$sf" --batch 20 --pause 100ms many >"$RUN/slowful.txt" &
    pid=$!
    wait_count "$RUN/slowful.txt" . 60 30
    page=$(page_of stateful)
    : >"$RUN/stateful.out"
    tmux respawn-pane -k -t "$(cat "$RUN/pane-stateful")" \
        "$me server stateful 127.0.0.1:$sf $page; exec bash"
    wait "$pid"
    say "rls exited $? after $(wc -l <"$RUN/slowful.txt") entries"
    if "$ROOT/testdata/rdir-c/build.sh" "$RUN/c" >/dev/null 2>&1; then
        (cd "$RUN" && show env SERVIDOR=127.0.0.1 c/rls-c docs)
    else
        say "(no rpcgen C client: scripts/install-deps.sh rpc installs what it needs)"
    fi
    say
    say "-- the course's rls.c over dirops.h, linked against each design's library"
    if "$ROOT/scripts/build-dirops.sh" "$RUN/dirops" >/dev/null 2>&1; then
        cd "$RUN" || return 1
        show env SERVIDOR=127.0.0.1 PUERTO="$sf" dirops/stateful/rls docs
        show env SERVIDOR=127.0.0.1 PUERTO="$sl" dirops/stateless/rls music
        show env SERVIDOR=127.0.0.1 PUERTO="$rp" dirops/rpc/rls docs
    else
        say "(no C compiler, rpcgen or libtirpc-dev: scripts/install-deps.sh rpc)"
    fi
    touch "$RUN/client-done"
}

if [ "${1:-}" = pane ]; then
    RUN=$2
    export PATH="$BIN:$PATH"
    me="env BIN=$BIN VIEW_HOST=$VIEW_HOST bash $HERE/rdir.sh pane $RUN"
    case $3 in
        server) pane_server "$4" "${5:-}" "${6:-}" ;;
        client) pane_client ;;
    esac
    exit
fi

demo_init rdir-tmux
rdir_setup
me="env BIN=$BIN VIEW_HOST=$VIEW_HOST bash $HERE/rdir.sh pane $RUN"
tmux_open rdir "rdird stateful" "$me server stateful"
tmx display-message -p -t "$TMUX_SESSION" '#{pane_id}' >"$RUN/pane-stateful"
tmux_pane "rdird stateless" "$me server stateless"
tmx display-message -p -t "$TMUX_SESSION" '#{pane_id}' >"$RUN/pane-stateless"
tmux_pane "rdird rpc" "$me server rpc"
tmux_pane "client" "$me client"
for mode in stateful stateless rpc; do
    view_of "$mode" "rdird $mode" "$RUN/$mode.out" || tmux_abort "rdird $mode"
done
tmux_show 3
tmux_keep
