#!/usr/bin/env bash
# tmux layout of the balance demo (scripts/test.sh tmux balance): four
# panes, 2x2 so each stays readable on a 1280x720 projector: the client and
# three supernodes; the index runs behind them (its page and joins show in
# the client pane). The client pane drives the demo: it lets supernode 1
# start, then 2 once 1 is up, then 3 once the files have been copied to
# their responsible supernodes, then runs the client steps. Every daemon
# serves its page (--http): the addresses are printed and in the pane
# titles. Ctrl-C in a supernode pane makes it leave gracefully.
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

# title_when_listening NAME TITLE: adds NAME's address and page to this
# pane's title once they are out, so ports in every log match a pane.
title_when_listening() {
    local addr page
    addr=$(addr_of "$1") || return
    wait_line "$RUN/$1.out" '^view on ' 60 >/dev/null || return
    page=$(grep -m1 '^view on ' "$RUN/$1.out" | sed 's/^view on //')
    # After the layout has set the plain titles.
    sleep 1
    title "$2 $addr  page $page"
}

pane_superd() {
    local n=$1 index
    say "supernode $n waits for its turn..."
    until [ -e "$RUN/go-$n" ]; do sleep 0.2; done
    index=$(addr_of index)
    title_when_listening "s$n" "supernode $n (repo0$n)" &
    say "\$ p2p-superd repo$n --index $index --listen 127.0.0.1:0 --sync-interval $SYNC ${HTTP[*]}"
    p2p-superd "$RUN/repo$n" --index "$index" --listen 127.0.0.1:0 \
        --sync-interval "$SYNC" "${HTTP[@]}" | tee -i "$RUN/s$n.out"
}

# show_repos ADDR...: what each running supernode holds now. Supernode 1
# keeps its own repo01: a file copied to the supernode responsible for it
# stays where it was too.
show_repos() {
    local i=1 a
    for a in "$@"; do
        say "supernode $i ($a) holds: $(names_at "$a" | tr '\n' ' ')"
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
    say "index is $(addr_of index), its page $(grep -m1 '^view on ' "$RUN/index.out" | sed 's/^view on //')"
    pause
    note "supernode 1 starts with repo01"
    touch "$RUN/go-1"
    s1=$(addr_of s1)
    step "supernode 1 ($s1) joined" wait_line "$RUN/index.out" "^joined $s1\$" 30
    show_repos "$s1"
    pause
    note "supernode 2 joins: the files it is responsible for are copied to it"
    touch "$RUN/go-2"
    s2=$(addr_of s2)
    step "supernode 2 ($s2) joined" wait_line "$RUN/index.out" "^joined $s2\$" 30
    step "every file is on its responsible supernode (of 2)" wait_balanced 60 "${FILES[@]}" -- "$s1" "$s2"
    show_repos "$s1" "$s2"
    say "(supernode 1 keeps its own copies: repo01 is its folder)"
    pause
    note "supernode 3 joins: the files it is responsible for are copied to it"
    touch "$RUN/go-3"
    s3=$(addr_of s3)
    step "supernode 3 ($s3) joined" wait_line "$RUN/index.out" "^joined $s3\$" 30
    step "every file is on its responsible supernode (of 3)" wait_balanced 60 "${FILES[@]}" -- "$s1" "$s2" "$s3"
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
    # removed when the session ends (tmux_keep), unless a step failed.
    if KEEP=1 summary >"$RUN/summary"; then
        touch "$RUN/passed"
    else
        touch "$RUN/failed"
    fi
    grep -v '^kept ' "$RUN/summary"
    say
    say "Press Ctrl-C in a supernode pane to watch it leave gracefully."
}

if [ "${1:-}" = pane ]; then
    RUN=$3
    export PATH="$BIN:$PATH"
    case $2 in
        superd) pane_superd "$4" ;;
        client) pane_client ;;
    esac
    exit
fi

demo_init balance-tmux
TMUX_LAYOUT=1
mkdir -p "$RUN/repo1" "$RUN/repo2" "$RUN/repo3" "$RUN/client"
cp "$ROOT"/testdata/repo01/texto0?.txt "$RUN/repo1/"
VIEW_LABEL="index" start index p2p-index --listen 127.0.0.1:0 "${HTTP[@]}" || exit 1
for n in 1 2 3; do
    view_later "supernode $n" "$RUN/s$n.out"
done
me="env BIN=$BIN VIEW_HOST=$VIEW_HOST PACE=$PACE SYNC=$SYNC bash $HERE/balance.sh pane"
tmux_open balance "client  (index $ADDR_index  page $VIEW_index)" "$me client $RUN"
tmux_pane "supernode 1 (repo01)" "$me superd $RUN 1"
tmux_pane "supernode 2 (repo02)" "$me superd $RUN 2"
tmux_pane "supernode 3 (repo03)" "$me superd $RUN 3"
tmux_show 4
tmux_keep
