#!/usr/bin/env bash
# The rdir demo in tmux panes: the three servers (stateful, stateless, rpc)
# over a copy of testdata/rdir, and a client pane that lists in each mode,
# shows --mix and bogus handles, restarts the stateless server in the middle
# of a slow listing (it completes) and the stateful one (its handle is
# refused), and lists through the rpcgen-built C client.
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
    local mode=$1 listen=${2:-127.0.0.1:0}
    title "rdird $mode"
    say "\$ rdird --mode $mode --root $RUN/root --listen $listen"
    rdird --mode "$mode" --root "$RUN/root" --listen "$listen" | tee -i "$RUN/$mode.out"
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
    rls --port "$sl" --batch 20 --pause-ms 100 many | tee "$RUN/slow.txt" | tail -n 3 &
    local pid=$!
    wait_count "$RUN/slow.txt" . 100 30
    : >"$RUN/stateless.out"
    tmux respawn-pane -k -t "$(cat "$RUN/pane-stateless")" \
        "bash $HERE/rdir.sh pane $RUN server stateless 127.0.0.1:$sl; exec bash"
    wait "$pid"
    say "listed $(wc -l <"$RUN/slow.txt") entries across the restart"
    say
    say "-- a slow stateful listing; its server restarts after 60 entries"
    : >"$RUN/slowful.txt"
    rls --mode stateful --port "$sf" --batch 20 --pause-ms 100 many >"$RUN/slowful.txt" &
    pid=$!
    wait_count "$RUN/slowful.txt" . 60 30
    : >"$RUN/stateful.out"
    tmux respawn-pane -k -t "$(cat "$RUN/pane-stateful")" \
        "bash $HERE/rdir.sh pane $RUN server stateful 127.0.0.1:$sf; exec bash"
    wait "$pid"
    say "rls exited $? after $(wc -l <"$RUN/slowful.txt") entries"
    if "$ROOT/testdata/rdir-c/build.sh" "$RUN/c" >/dev/null 2>&1; then
        show env SERVIDOR=127.0.0.1 "$RUN/c/rls-c" docs
    else
        say "(no rpcgen C client: scripts/install-deps.sh rpc installs what it needs)"
    fi
}

if [ "${1:-}" = pane ]; then
    RUN=$2
    export PATH="$BIN:$PATH"
    case $3 in
        server) pane_server "$4" "${5:-}" ;;
        client) pane_client ;;
    esac
    exit
fi

demo_init rdir-tmux
rdir_setup
me="bash $HERE/rdir.sh pane $RUN"
tmux_open rdir "rdird stateful" "$me server stateful"
tmux display-message -p -t "$TMUX_SESSION" '#{pane_id}' >"$RUN/pane-stateful"
tmux_pane "rdird stateless" "$me server stateless"
tmux display-message -p -t "$TMUX_SESSION" '#{pane_id}' >"$RUN/pane-stateless"
tmux_pane "rdird rpc" "$me server rpc"
tmux_pane "client" "$me client"
say "folder: $RUN"
tmux_show
