#!/usr/bin/env bash
# The remote-directory demo: rdird in its three designs over a copy of
# testdata/rdir (plus a 500-entry folder and a non-UTF-8 name), rls in each
# mode against a local `ls -f`, --mix, bogus stateful handles, a stateless
# server restarted in the middle of a listing, a stateful handle refused
# after a restart, and the rpcgen-built C client through rpcbind.
#
#   scripts/test.sh rdir          (headless; exits 0 only if every step matched)
#   scripts/test.sh tmux rdir     (the same run in tmux panes)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# rdir_setup: the served folder in $RUN/root.
rdir_setup() {
    cp -r "$ROOT/testdata/rdir" "$RUN/root"
    mkdir -p "$RUN/root/many" "$RUN/root/empty"
    for i in $(seq -w 1 500); do : >"$RUN/root/many/entry $i"; done
    : >"$RUN/root/docs/$(printf 'latin1-\xf1and\xfa.txt')"
}

# same_as_local MODE PORT DIR: rls lists DIR as ls -f does (sorted; names
# are raw bytes, compared as such).
same_as_local() {
    local mode=$1 port=$2 dir=$3
    LC_ALL=C rls --mode "$mode" --port "$port" "$dir" | LC_ALL=C sort >"$RUN/got.txt"
    (cd "$RUN/root" && LC_ALL=C ls -f "$dir" | LC_ALL=C sort) >"$RUN/want.txt"
    cmp -s "$RUN/got.txt" "$RUN/want.txt"
}

# alternates: the --mix output takes docs and music in turn.
alternates() {
    rls --port "$PORT_stateless" --mix docs music >"$RUN/mix.txt" || return 1
    say "   $(head -6 "$RUN/mix.txt" | tr '\n' '|')"
    head -6 "$RUN/mix.txt" | sed -n '2p;4p;6p' | grep -q . &&
        [ "$(wc -l <"$RUN/mix.txt")" -eq $(($(ls -fa "$RUN/root/docs" | wc -l) + $(ls -fa "$RUN/root/music" | wc -l))) ]
}

# refused_with PATTERN CMD...: CMD exits 1 and says PATTERN on stderr.
refused_with() {
    local pattern=$1
    shift
    "$@" >/dev/null 2>"$RUN/refusal.err"
    local code=$?
    say "   $(head -1 "$RUN/refusal.err")"
    [ "$code" -eq 1 ] && grep -q -- "$pattern" "$RUN/refusal.err"
}

# restart NAME MODE: stops the server NAME and starts it again on its port.
restart() {
    local name=$1 mode=$2 pid_var="PID_$1" port_var="PORT_$1"
    kill "${!pid_var}" && wait "${!pid_var}" 2>/dev/null
    start "$name" rdird --mode "$mode" --root "$RUN/root" --listen "127.0.0.1:${!port_var}"
}

# listing_survives_restart: a slow stateless listing of many/ goes on
# across a restart of its server.
listing_survives_restart() {
    : >"$RUN/slow.txt"
    rls --port "$PORT_stateless" --batch 20 --pause 100ms many >"$RUN/slow.txt" 2>"$RUN/slow.err" &
    local pid=$!
    wait_count "$RUN/slow.txt" . 100 30 || return 1
    restart stateless stateless || return 1
    say "   restarted the stateless server after $(wc -l <"$RUN/slow.txt") entries"
    wait "$pid" || { cat "$RUN/slow.err"; return 1; }
    (cd "$RUN/root" && ls -fa many | LC_ALL=C sort) >"$RUN/want.txt"
    LC_ALL=C sort "$RUN/slow.txt" | cmp -s - "$RUN/want.txt"
}

# handle_refused_after_restart: a slow stateful listing breaks cleanly when
# its server restarts: the new server refuses the old handle.
handle_refused_after_restart() {
    : >"$RUN/slowful.txt"
    rls --mode stateful --port "$PORT_stateful" --batch 20 --pause 100ms many \
        >"$RUN/slowful.txt" 2>"$RUN/slowful.err" &
    local pid=$!
    wait_count "$RUN/slowful.txt" . 60 30 || return 1
    restart stateful stateful || return 1
    wait "$pid"
    local code=$?
    say "   $(cat "$RUN/slowful.err" | head -1)"
    [ "$code" -eq 1 ] && grep -q 'bad handle' "$RUN/slowful.err"
}

# c_client: builds the rpcgen C client and lists through rpcbind.
c_client() {
    SERVIDOR=127.0.0.1 "$RUN/c/rls-c" docs >"$RUN/c.txt" || return 1
    rls --mode rpc docs >"$RUN/rpc.txt" || return 1
    say "   rls-c listed $(wc -l <"$RUN/c.txt") entries, byte-identical to rls --mode rpc"
    cmp -s "$RUN/c.txt" "$RUN/rpc.txt"
}

# course_rls DESIGN PORT DIR: the course's rls.c, linked against DESIGN's
# dirops library, lists DIR as rls --mode DESIGN does, byte for byte.
course_rls() {
    local design=$1 port=$2 dir=$3
    SERVIDOR=127.0.0.1 PUERTO=$port "$RUN/dirops/$design/rls" "$dir" >"$RUN/course.txt" || return 1
    rls --mode "$design" --port "$port" "$dir" >"$RUN/ours.txt" || return 1
    say "   rls.c ($design) listed $(wc -l <"$RUN/course.txt") entries of $dir"
    cmp -s "$RUN/course.txt" "$RUN/ours.txt"
}

rdir_demo() {
    demo_init rdir
    note "rdir demo in $RUN"
    rdir_setup
    start stateful rdird --mode stateful --root "$RUN/root" --listen 127.0.0.1:0 || exit 2
    start stateless rdird --mode stateless --root "$RUN/root" --listen 127.0.0.1:0 || exit 2
    start rpc rdird --mode rpc --root "$RUN/root" --listen 127.0.0.1:0 || exit 2
    say "stateful on $ADDR_stateful, stateless on $ADDR_stateless, rpc on $ADDR_rpc"
    if grep -q 'not registered with rpcbind' "$RUN/rpc.err"; then
        say "   $(cat "$RUN/rpc.err")"
    fi

    for d in docs music many empty; do
        step "stateful lists $d as ls -f does" same_as_local stateful "$PORT_stateful" "$d"
        step "stateless lists $d as ls -f does" same_as_local stateless "$PORT_stateless" "$d"
        step "rpc lists $d as ls -f does" same_as_local rpc "$PORT_rpc" "$d"
    done
    step "--mix reads docs and music alternately" alternates
    for p in .. /etc; do
        step "rls refuses $p (outside the root)" \
            refused_with 'outside the served folder' rls --port "$PORT_stateless" "$p"
    done
    step "rls exits 1 for a missing folder" refused_with 'status 2' rls --port "$PORT_stateless" nothere
    for h in 0 deadbeef 123456789abcdef0; do
        step "the stateful server refuses made-up handle $h" \
            refused_with 'bad handle' rls --mode stateful --port "$PORT_stateful" --handle "$h" docs
    done
    step "the stateful server still serves after bogus handles" \
        same_as_local stateful "$PORT_stateful" docs
    step "a stateless listing goes on across a server restart" listing_survives_restart
    step "a stateful handle is refused after a server restart" handle_refused_after_restart

    if "$ROOT/testdata/rdir-c/build.sh" "$RUN/c" >"$RUN/c-build.log" 2>&1 &&
        rpcinfo -p 127.0.0.1 >/dev/null 2>&1; then
        step "the rpcgen-built C client lists docs through rpcbind" c_client
    else
        skipped "rdir demo: the rpcgen C client" \
            "no rpcgen, gcc, libtirpc-dev or rpcbind (scripts/install-deps.sh rpc); $(tail -1 "$RUN/c-build.log")"
    fi
    if "$ROOT/scripts/build-dirops.sh" "$RUN/dirops" >"$RUN/dirops-build.log" 2>&1; then
        step "the course's rls.c over dirops.h lists many (stateful)" \
            course_rls stateful "$PORT_stateful" many
        step "the course's rls.c over dirops.h lists many (stateless)" \
            course_rls stateless "$PORT_stateless" many
        step "the course's rls.c over dirops.h lists many (rpc)" course_rls rpc "$PORT_rpc" many
    else
        skipped "rdir demo: the dirops C library" \
            "no C compiler, rpcgen or libtirpc-dev (scripts/install-deps.sh rpc); $(tail -1 "$RUN/dirops-build.log")"
    fi
    say "logs: $RUN/*.out, $RUN/*.err"
    summary
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    rdir_demo
fi
