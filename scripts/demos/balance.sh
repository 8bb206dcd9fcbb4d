#!/usr/bin/env bash
# The balance demo: an index, then three supernodes joining one after
# another while supernode 1's files (testdata/repo01) spread over the ring;
# then a listing, an upload, a refused duplicate upload, a redirected
# download, a download of a name that is nowhere, and a graceful leave.
#
#   scripts/test.sh balance          (headless; exits 0 only if every step matched)
#   scripts/test.sh tmux balance     (the same processes in tmux panes)
#
# Sourced (by tmux/balance.sh), it only defines its helper functions.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

SYNC=${SYNC:-0.5}

# names_at ADDR: the sorted listing of the supernode at HOST:PORT.
names_at() {
    p2p-ls "${1%:*}" "${1##*:}" | sort
}

# on_owner FILE ADDR...: true if FILE is on the supernode responsible for it.
# Either every supernode holds it, or one that lacks it redirects a download
# to the responsible one, which serves it.
on_owner() {
    local file=$1 addr lacking=
    shift
    for addr in "$@"; do
        if ! names_at "$addr" | grep -qxF -- "$file"; then
            lacking=$addr
            break
        fi
    done
    [ -z "$lacking" ] && return 0
    p2p-get --force "${lacking%:*}" "${lacking##*:}" "$file" -o "$RUN/locate.out" 2>"$RUN/locate.err" &&
        grep -q "redirecting to" "$RUN/locate.err"
}

# balanced FILES -- ADDR...: every file is on its responsible supernode.
balanced() {
    local files=() f
    while [ "$1" != "--" ]; do
        files+=("$1")
        shift
    done
    shift
    for f in "${files[@]}"; do
        on_owner "$f" "$@" || return 1
    done
}

# wait_balanced SECS FILES -- ADDR...: polls `balanced` up to SECS seconds.
wait_balanced() {
    local secs=$1 i=0
    shift
    while [ "$i" -lt $((secs * 4)) ]; do
        balanced "$@" && return 0
        sleep 0.25
        i=$((i + 1))
    done
    return 1
}

# show FILE PATTERN: prints the matching lines of a log, indented.
show() {
    grep -E -- "$2" "$1" | sed 's/^/    /' || true
}

[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

demo_init balance
FILES=(texto01.txt texto02.txt texto03.txt texto04.txt texto05.txt texto06.txt)
mkdir -p "$RUN/repo1" "$RUN/repo2" "$RUN/repo3" "$RUN/client"
cp "$ROOT"/testdata/repo01/texto0?.txt "$RUN/repo1/"

note "the index"
start index p2p-index --listen 127.0.0.1:0 || exit 1
say "index at $ADDR_index"

superd() {
    start "s$1" p2p-superd "$RUN/repo$1" --index "$ADDR_index" \
        --listen 127.0.0.1:0 --sync-interval "$SYNC"
}

note "supernode 1 with repo01 (${FILES[*]})"
superd 1 || exit 1
step "supernode 1 joined the ring" wait_line "$RUN/index.out" "^joined $ADDR_s1\$" 10

note "supernode 2 joins"
superd 2 || exit 1
step "supernode 2 joined the ring" wait_line "$RUN/index.out" "^joined $ADDR_s2\$" 10
step "files balanced over 2 supernodes" wait_balanced 30 "${FILES[@]}" -- "$ADDR_s1" "$ADDR_s2"
show "$RUN/s1.out" '^\[balance\]'

note "supernode 3 joins"
superd 3 || exit 1
step "supernode 3 joined the ring" wait_line "$RUN/index.out" "^joined $ADDR_s3\$" 10
ALL=("$ADDR_s1" "$ADDR_s2" "$ADDR_s3")
step "files balanced over 3 supernodes" wait_balanced 30 "${FILES[@]}" -- "${ALL[@]}"
for n in 1 2 3; do
    say "  supernode $n:"
    show "$RUN/s$n.out" '^(\[balance\]|receiving)'
done

note "client: list supernode 1"
p2p-ls 127.0.0.1 "$PORT_s1" | tee "$RUN/client/ls.out" | sed 's/^/    /'
step "the listing shows repo01's six files" \
    diff <(printf '%s\n' "${FILES[@]}") <(sort "$RUN/client/ls.out")

note "client: upload nuevo.txt to supernode 2"
printf 'a file uploaded by the client\n' >"$RUN/client/nuevo.txt"
step "the upload is stored" p2p-put 127.0.0.1 "$PORT_s2" "$RUN/client/nuevo.txt"
printf 'a different file under the same name\n' >"$RUN/client/nuevo.txt"
p2p-put 127.0.0.1 "$PORT_s2" "$RUN/client/nuevo.txt" 2>"$RUN/client/dup.err"
dup_status=$?
sed 's/^/    /' "$RUN/client/dup.err"
step "the duplicate upload is refused (exit 1, 'already exists')" \
    eval '[ "$dup_status" -eq 1 ] && grep -q "already exists" "$RUN/client/dup.err"'
step "nuevo.txt reaches its responsible supernode" \
    wait_balanced 30 "${FILES[@]}" nuevo.txt -- "${ALL[@]}"

note "client: a download that is redirected"
rf= ra=
for f in "${FILES[@]}"; do
    for a in "$ADDR_s2" "$ADDR_s3"; do
        if ! names_at "$a" | grep -qxF "$f"; then
            rf=$f ra=$a
            break 2
        fi
    done
done
if [ -n "$rf" ]; then
    say "    p2p-get ${ra%:*} ${ra##*:} $rf"
    (cd "$RUN/client" && p2p-get "${ra%:*}" "${ra##*:}" "$rf" 2>get.err)
    sed 's/^/    /' "$RUN/client/get.err"
    step "$rf is redirected and arrives intact" \
        eval 'grep -q "^$rf not found at $ra, redirecting to " "$RUN/client/get.err" && cmp -s "$RUN/client/$rf" "$ROOT/testdata/repo01/$rf"'
else
    step "some supernode lacks a file to redirect" false
fi

note "client: a download of a name that is nowhere"
(cd "$RUN/client" && p2p-get 127.0.0.1 "$PORT_s1" nada.txt 2>nada.err)
nada_status=$?
sed 's/^/    /' "$RUN/client/nada.err"
step "nada.txt is not available (exit 1)" \
    eval '[ "$nada_status" -eq 1 ] && grep -q "nada.txt is not available in the network" "$RUN/client/nada.err" && [ ! -e "$RUN/client/nada.txt" ]'

note "supernode 3 leaves gracefully (SIGTERM)"
kill -TERM "$PID_s3"
wait "$PID_s3"
s3_status=$?
show "$RUN/s3.out" '^(\[balance\]|left|disconnected)'
step "supernode 3 exits 0 after its last sync" [ "$s3_status" -eq 0 ]
step "the index saw it leave" wait_line "$RUN/index.out" "^disconnected $ADDR_s3\$" 10
step "no file lost: all on their supernodes among the two left" \
    wait_balanced 30 "${FILES[@]}" nuevo.txt -- "$ADDR_s1" "$ADDR_s2"

summary
