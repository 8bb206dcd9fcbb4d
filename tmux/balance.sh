#!/usr/bin/env bash
# tmux layout of the balance demo (scripts/test.sh tmux balance): panes for
# the index, three supernodes and a client. The client pane drives the demo:
# it lets supernode 1 start, then 2 once 1 is up, then 3 once the files have
# balanced over two, then runs the client steps. Ctrl-C in a supernode pane
# makes it leave gracefully.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Slower rounds than the headless demo, so each move shows in the panes.
SYNC=${SYNC:-1.5}
# The headless demo's helpers (on_owner, wait_balanced, ...) and lib.sh.
. "$HERE/../scripts/demos/balance.sh"

FILES=(texto01.txt texto02.txt texto03.txt texto04.txt texto05.txt texto06.txt)

# Seconds between the demo's acts, so a viewer can follow (PACE=0: no pauses).
PACE=${PACE:-3}
pause() { sleep "$PACE"; }

# title TEXT: this pane's title (shown in its top border).
title() { tmux select-pane -t "${TMUX_PANE:-}" -T "$1" 2>/dev/null || true; }

# addr_of NAME: the HOST:PORT from NAME's readiness line.
addr_of() {
    wait_line "$RUN/$1.out" '^listening on ' 60 >/dev/null &&
        grep -m1 '^listening on ' "$RUN/$1.out" | sed 's/^listening on //'
}

# title_when_listening NAME TITLE: adds NAME's address to this pane's title
# once its readiness line is out, so ports in every log match a pane.
title_when_listening() {
    local addr
    addr=$(addr_of "$1") || return
    # After the layout has set the plain titles.
    sleep 1
    title "$2 - $addr"
}

pane_index() {
    title_when_listening index "index" &
    say "\$ p2p-index --listen 127.0.0.1:0"
    p2p-index --listen 127.0.0.1:0 | tee -i "$RUN/index.out"
}

pane_superd() {
    local n=$1 index
    say "supernode $n waits for its turn..."
    until [ -e "$RUN/go-$n" ]; do sleep 0.2; done
    index=$(addr_of index)
    title_when_listening "s$n" "supernode $n (repo0$n)" &
    say "\$ p2p-superd repo$n --index $index --listen 127.0.0.1:0 --sync-interval $SYNC"
    p2p-superd "$RUN/repo$n" --index "$index" --listen 127.0.0.1:0 \
        --sync-interval "$SYNC" | tee -i "$RUN/s$n.out"
}

# show_repos ADDR...: what each running supernode holds now.
show_repos() {
    local i=1 a
    for a in "$@"; do
        say "supernode $i ($a): $(names_at "$a" | tr '\n' ' ')"
        i=$((i + 1))
    done
}

# run CMD...: shows a client command, then runs it.
run() {
    say "\$ $*"
    "$@"
}

pane_client() {
    local s1 s2 s3
    addr_of index >/dev/null
    say "index is $(addr_of index)"
    pause
    note "supernode 1 starts with repo01"
    touch "$RUN/go-1"
    s1=$(addr_of s1)
    step "supernode 1 ($s1) joined" wait_line "$RUN/index.out" "^joined $s1\$" 30
    show_repos "$s1"
    pause
    note "supernode 2 joins: the files it is responsible for move to it"
    touch "$RUN/go-2"
    s2=$(addr_of s2)
    step "supernode 2 ($s2) joined" wait_line "$RUN/index.out" "^joined $s2\$" 30
    step "files balanced over 2 supernodes" wait_balanced 60 "${FILES[@]}" -- "$s1" "$s2"
    show_repos "$s1" "$s2"
    pause
    note "supernode 3 joins: the files it is responsible for move to it"
    touch "$RUN/go-3"
    s3=$(addr_of s3)
    step "supernode 3 ($s3) joined" wait_line "$RUN/index.out" "^joined $s3\$" 30
    step "files balanced over 3 supernodes" wait_balanced 60 "${FILES[@]}" -- "$s1" "$s2" "$s3"
    show_repos "$s1" "$s2" "$s3"
    pause

    cd "$RUN/client" || return 1
    note "list"
    run p2p-ls "$s1"
    pause
    note "upload, then a refused duplicate"
    printf 'a file uploaded by the client\n' >nuevo.txt
    step "upload stored" run p2p-put "$s2" nuevo.txt
    step "duplicate refused" eval '! run p2p-put "$s2" nuevo.txt'
    pause
    note "a redirected download"
    local f a
    for f in "${FILES[@]}"; do
        for a in "$s2" "$s3"; do
            if ! names_at "$a" | grep -qxF "$f"; then
                step "redirected download of $f" run p2p-get "$a" "$f"
                break 2
            fi
        done
    done
    pause
    note "a name that is nowhere"
    step "nada.txt not available" eval '! run p2p-get "$s1" nada.txt'
    # The daemons in the other panes still use the run folder: it is
    # removed when the session ends (see the end of this script).
    if KEEP=1 summary >"$RUN/summary"; then
        touch "$RUN/passed"
    fi
    grep -v '^kept ' "$RUN/summary"
    say
    say "Press Ctrl-C in a supernode pane to watch it leave gracefully."
}

if [ "${1:-}" = pane ]; then
    RUN=$3
    export PATH="$BIN:$PATH"
    case $2 in
        index) pane_index ;;
        superd) pane_superd "$4" ;;
        client) pane_client ;;
    esac
    exit
fi

demo_init balance-tmux
mkdir -p "$RUN/repo1" "$RUN/repo2" "$RUN/repo3" "$RUN/client"
cp "$ROOT"/testdata/repo01/texto0?.txt "$RUN/repo1/"
me="bash $HERE/balance.sh pane"
tmux_open balance "index" "$me index $RUN"
tmux_pane "supernode 1 (repo01)" "$me superd $RUN 1"
tmux_pane "supernode 2 (repo02)" "$me superd $RUN 2"
tmux_pane "supernode 3 (repo03)" "$me superd $RUN 3"
tmux_pane "client" "$me client $RUN"
tmux_show
# Attached until the session ended: a passing run's folder goes (KEEP=1 keeps it).
if ! tmux has-session -t "$TMUX_SESSION" 2>/dev/null && [ -e "$RUN/passed" ] && [ -z "${KEEP:-}" ]; then
    rm -rf "$RUN"
fi
