#!/usr/bin/env bash
# tmux layout of the balance demo (scripts/test.sh tmux balance): panes for
# the index, three supernodes and a client. The client pane drives the demo:
# it lets supernode 1 start, then 2 once 1 is up, then 3 once the files have
# balanced over two, then runs the client steps. Ctrl-C in a supernode pane
# makes it leave gracefully.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The headless demo's helpers (on_owner, wait_balanced, ...) and lib.sh.
. "$HERE/../scripts/demos/balance.sh"

FILES=(texto01.txt texto02.txt texto03.txt texto04.txt texto05.txt texto06.txt)

title() { printf '\033]2;%s\033\\' "$1"; }

# addr_of NAME: the HOST:PORT from NAME's readiness line.
addr_of() {
    wait_line "$RUN/$1.out" '^listening on ' 60 >/dev/null &&
        grep -m1 '^listening on ' "$RUN/$1.out" | sed 's/^listening on //'
}

pane_index() {
    title "p2p-index"
    say "\$ p2p-index --listen 127.0.0.1:0"
    p2p-index --listen 127.0.0.1:0 | tee -i "$RUN/index.out"
}

pane_superd() {
    local n=$1 index
    title "p2p-superd $n"
    say "supernode $n waits for its turn..."
    until [ -e "$RUN/go-$n" ]; do sleep 0.2; done
    index=$(addr_of index)
    say "\$ p2p-superd repo$n --index $index --listen 127.0.0.1:0 --sync-interval $SYNC"
    p2p-superd "$RUN/repo$n" --index "$index" --listen 127.0.0.1:0 \
        --sync-interval "$SYNC" | tee -i "$RUN/s$n.out"
}

# run CMD...: shows a client command, then runs it.
run() {
    say "\$ $*"
    "$@"
}

pane_client() {
    title "client"
    local s1 s2 s3
    addr_of index >/dev/null
    note "supernode 1 starts with repo01"
    touch "$RUN/go-1"
    s1=$(addr_of s1)
    step "supernode 1 joined" wait_line "$RUN/index.out" "^joined $s1\$" 30
    note "supernode 2 joins"
    touch "$RUN/go-2"
    s2=$(addr_of s2)
    step "files balanced over 2 supernodes" wait_balanced 60 "${FILES[@]}" -- "$s1" "$s2"
    note "supernode 3 joins"
    touch "$RUN/go-3"
    s3=$(addr_of s3)
    step "files balanced over 3 supernodes" wait_balanced 60 "${FILES[@]}" -- "$s1" "$s2" "$s3"

    cd "$RUN/client" || return 1
    note "list"
    run p2p-ls "${s1%:*}" "${s1##*:}"
    note "upload, then a refused duplicate"
    printf 'a file uploaded by the client\n' >nuevo.txt
    step "upload stored" run p2p-put "${s2%:*}" "${s2##*:}" nuevo.txt
    step "duplicate refused" eval '! run p2p-put "${s2%:*}" "${s2##*:}" nuevo.txt'
    note "a redirected download"
    local f a
    for f in "${FILES[@]}"; do
        for a in "$s2" "$s3"; do
            if ! names_at "$a" | grep -qxF "$f"; then
                step "redirected download of $f" run p2p-get "${a%:*}" "${a##*:}" "$f"
                break 2
            fi
        done
    done
    note "a name that is nowhere"
    step "nada.txt not available" eval '! run p2p-get "${s1%:*}" "${s1##*:}" nada.txt'
    summary
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
