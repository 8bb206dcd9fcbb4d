# Shared helpers for demos and benchmarks. Source it; do not run it.
#
#   demo_init NAME         fresh git-ignored run folder in $RUN, builds release binaries
#   start NAME CMD...      runs CMD in the background (stdout $RUN/NAME.out,
#                          stderr $RUN/NAME.err), waits for its "listening on"
#                          line and sets ADDR_NAME / PORT_NAME; with --http in
#                          CMD also its "view on" line: VIEW_NAME, views.txt
#   "${HTTP[@]}"           --http on $VIEW_HOST (127.0.0.1), port 0
#   view_of, view_later, view_in_pane   a page started another way, in views.txt
#   skipped WHAT WHY       SKIPPED line, and into $PEERKIT_SKIPPED
#   wait_line FILE ERE [SECS]   waits until FILE has a line matching ERE
#   wait_count FILE ERE N [SECS]  waits until FILE has N lines matching ERE
#   step DESC CMD...       runs CMD, prints "ok - DESC" or "FAIL - DESC"
#   summary                prints the tally; returns non-zero if a step failed;
#                          removes $RUN after a passing run unless KEEP=1
#
# Every background process is killed when the sourcing script exits.
# The tmux layouts' helpers (tmux_open, tmux_pane, tmux_show, tmux_keep)
# are described where they are defined, below.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
PASSED=0
FAILED=0
PIDS=()
# When each started process began (see ours): PID -> start time.
declare -A STARTED=()

say() { printf '%s\n' "$*"; }
note() { printf '\033[1m== %s\033[0m\n' "$*"; }

build_release() {
    if [ -z "${PEERKIT_SKIP_BUILD:-}" ]; then
        (cd "$ROOT" && cargo build --release --bins --quiet)
    fi
}

# demo_init NAME: creates $RUN=$ROOT/run/NAME-<time>-<pid> and builds.
demo_init() {
    RUN="$ROOT/run/$1-$(date +%Y%m%d-%H%M%S)-$$"
    mkdir -p "$RUN"
    build_release
    export PATH="$BIN:$PATH"
    trap cleanup EXIT
}

# proc_stat PID: sets PSTAT to the fields of /proc/PID/stat after the
# command name (which may hold spaces), from field 3 on: PSTAT[0] is the
# state, PSTAT[1] the parent, PSTAT[19] the start time. Fails if there is
# no such process.
proc_stat() {
    local stat
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    read -r -a PSTAT <<<"${stat##*) }"
}

# remember PID: notes when PID's process started, for ours.
remember() {
    proc_stat "$1" || return 0
    STARTED[$1]=${PSTAT[19]}
}

# ours PID: PID is still the process this script started. A PID whose
# process ended is given out again once the counter wraps (at 32768 by
# default, minutes into a long soak), so a PID remembered from earlier
# may by now be someone else's process: signal only what this checks.
# The check is the process's start time (field 22 of /proc/PID/stat, the
# one thing a later process with the same PID cannot share) where
# remember noted it, else that it is a child of this shell; a zombie is
# not running.
ours() {
    proc_stat "$1" || return 1
    [ "${PSTAT[0]}" != Z ] || return 1
    if [ -n "${STARTED[$1]:-}" ]; then
        [ "${PSTAT[19]}" = "${STARTED[$1]}" ]
    else
        [ "${PSTAT[1]}" = "$$" ]
    fi
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        ours "$pid" && kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}

# wait_line FILE ERE [SECS]: polls FILE until a line matches, up to SECS (30).
wait_line() {
    local file=$1 re=$2 secs=${3:-30} i=0
    local tries=$((secs * 20))
    while [ "$i" -lt "$tries" ]; do
        if [ -f "$file" ] && grep -qE -- "$re" "$file"; then
            return 0
        fi
        sleep 0.05
        i=$((i + 1))
    done
    say "timed out after ${secs}s waiting for /$re/ in $file" >&2
    return 1
}

# wait_count FILE ERE N [SECS]: polls FILE until N lines match, up to SECS (30).
wait_count() {
    local file=$1 re=$2 n=$3 secs=${4:-30} i=0
    while [ "$i" -lt $((secs * 20)) ]; do
        if [ "$(grep -cE -- "$re" "$file" 2>/dev/null || true)" -ge "$n" ]; then
            return 0
        fi
        sleep 0.05
        i=$((i + 1))
    done
    say "timed out waiting for $n lines /$re/ in $file" >&2
    return 1
}

# start NAME CMD...: background daemon; waits for its readiness line.
start() {
    local name=$1
    shift
    # Emptied here, not only by the child's redirection: a restart under the
    # same name must not find the last run's readiness line.
    : >"$RUN/$name.out"
    : >"$RUN/$name.err"
    if [ -n "${TMUX_LAYOUT:-}" ]; then
        # A tmux layout's daemons outlive the terminal that started them
        # (detached sessions): a session of their own, no hangup.
        setsid "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" </dev/null &
    else
        "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" &
    fi
    PIDS+=($!)
    remember $!
    eval "PID_$name=$!"
    if ! wait_line "$RUN/$name.out" '^listening on ' 30; then
        say "$name failed to start; stderr:" >&2
        cat "$RUN/$name.err" >&2
        return 1
    fi
    local addr
    addr=$(grep -m1 '^listening on ' "$RUN/$name.out" | sed 's/^listening on //')
    eval "ADDR_$name=\$addr"
    eval "PORT_$name=\${addr##*:}"
    # Started with --http: its page's address, in VIEW_NAME and views.txt.
    # VIEW_LABEL=TEXT start ...: how the page is listed (default NAME).
    case " $* " in *" --http "*) view_of "$name" "${VIEW_LABEL:-$name}" "$RUN/$name.out" || return 1 ;; esac
}

# view_of NAME LABEL FILE [SECS]: waits (up to SECS, 60) for the "view on
# URL" line in FILE (a daemon started with --http), sets VIEW_NAME and adds
# "LABEL URL" to $RUN/views.txt, the pages a demo prints and
# `scripts/test.sh view` lists.
view_of() {
    local url
    wait_line "$3" '^view on ' "${4:-60}" || return 1
    url=$(grep -m1 '^view on ' "$3" | sed 's/^view on //')
    eval "VIEW_$1=\$url"
    printf '%s %s\n' "$2" "$url" >>"$RUN/views.txt"
}

# view_in_pane PANE LABEL: view_of for an interactive program whose stdout
# is its pane (nap-peer): waits (up to 60 s) for the "view on" line on the
# pane's screen.
view_in_pane() {
    local i url
    for i in $(seq 300); do
        url=$(tmx capture-pane -pJ -t "$1" 2>/dev/null | sed -n 's/^view on \(http[^ ]*\).*/\1/p' | head -n1)
        if [ -n "$url" ]; then
            printf '%s %s\n' "$2" "$url" >>"$RUN/views.txt"
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# view_later LABEL FILE: view_of in the background, for a daemon that a
# pane starts later.
view_later() {
    (view_of _ "$1" "$2" 600) </dev/null >/dev/null 2>&1 &
}

# Where the demos' pages listen: VIEW_HOST=0.0.0.0 to open them from
# another machine (a projector's laptop).
VIEW_HOST=${VIEW_HOST:-127.0.0.1}
HTTP=(--http "$VIEW_HOST:0")

# step DESC CMD...: one checked step of a demo.
step() {
    local desc=$1
    shift
    if "$@"; then
        say "ok - $desc"
        PASSED=$((PASSED + 1))
    else
        say "FAIL - $desc"
        FAILED=$((FAILED + 1))
    fi
}

# summary: the tally. A passing run's folder is removed (KEEP=1 keeps it);
# a failing run's folder is kept for inspection.
summary() {
    say "$PASSED passed, $FAILED failed"
    if [ "$FAILED" -eq 0 ]; then
        if [ -z "${KEEP:-}" ] && [ -n "${RUN:-}" ]; then
            cleanup
            rm -rf "$RUN"
        else
            say "kept $RUN"
        fi
        return 0
    fi
    say "kept $RUN for inspection"
    return 1
}

# peak_rss_kib PID: the process's peak resident set (VmHWM) in KiB.
peak_rss_kib() {
    awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# nc_seconds FILE OUT: moves FILE into OUT over loopback with nc (a
# listener on a free port, retrying if taken; the sender closes with -N)
# and prints the seconds it took; fails if OUT ends up another size.
nc_seconds() {
    local file=$1 out=$2 port ncpid t0 t1
    rm -f "$out"
    for _ in $(seq 20); do
        port=$((20000 + RANDOM % 40000))
        ss -ltn | grep -q ":$port " && continue
        nc -l 127.0.0.1 "$port" >"$out" &
        ncpid=$!
        for _ in $(seq 100); do
            ss -ltn | grep -q "127.0.0.1:$port " && break
            sleep 0.02
        done
        kill -0 "$ncpid" 2>/dev/null && break
    done
    t0=$(date +%s.%N)
    nc -N 127.0.0.1 "$port" <"$file"
    wait "$ncpid"
    t1=$(date +%s.%N)
    [ "$(stat -c %s "$out")" = "$(stat -c %s "$file")" ] || {
        say "nc moved a different number of bytes" >&2
        return 1
    }
    awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

# stamp_complete BASE: copies stdin (a fetcher's stdout) to BASE.out and,
# when the first line starting with `complete: ` arrives, writes the time it
# was read (seconds since the epoch) to BASE.done: the fetcher's own
# completion time, as aria2c's completion hook gives it, without the delay
# of a poll. Run it as `FETCH... > >(stamp_complete BASE) &`, so that $! is
# the fetcher.
stamp_complete() {
    local line at stamped=
    while IFS= read -r line; do
        at=$EPOCHREALTIME
        printf '%s\n' "$line"
        if [ -z "$stamped" ] && [[ $line == 'complete: '* ]]; then
            printf '%s\n' "${at/,/.}" >"$1.done"
            stamped=1
        fi
    done >"$1.out"
}

# last_done T0 PREFIX N: seconds from T0 to the latest of PREFIX1.done ..
# PREFIXN.done (stamp_complete's times).
last_done() {
    local t0=$1 prefix=$2 n=$3 i files=()
    for ((i = 1; i <= n; i++)); do files+=("$prefix$i.done"); done
    awk -v t0="$t0" '$1 > m { m = $1 } END { printf "%.3f\n", m - t0 }' "${files[@]}"
}

# skipped WHAT WHY: says "SKIPPED: WHAT: WHY" and adds the line to the skip
# list .ci/run prints at the end ($PEERKIT_SKIPPED, when set).
skipped() {
    say "SKIPPED: $1: $2"
    if [ -n "${PEERKIT_SKIPPED:-}" ]; then
        printf 'skipped: %s (%s)\n' "$1" "$2" >>"$PEERKIT_SKIPPED" || true
    fi
}

# need CMD PACKAGE: installs a Debian package if CMD is missing.
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        say "installing $2 (for $1)" >&2
        if [ "$(id -u)" -eq 0 ]; then
            apt-get update -qq >/dev/null && apt-get install -y -qq "$2" >/dev/null
        else
            sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq "$2" >/dev/null
        fi
    fi
}

# tmux layouts (tmux/NAME.sh):
#   tmux_open SESSION TITLE CMD   new detached session whose first pane runs CMD
#   tmux_pane TITLE CMD           another pane in it running CMD (tiled)
#   tmux_show [N]                 tiles the panes, prints the pages (waiting
#                                 for N of them when detached), then attaches
#                                 (or switches) on a terminal, or says how to
#                                 attach when there is none
#   tmux_keep                     keeps the demo's daemons until the session
#                                 ends, then stops them and removes the run
#                                 folder (unless KEEP=1 or a pane marked it
#                                 $RUN/failed); in the background when the
#                                 session was left running
# Every pane shows its TITLE (`index`, `supernode 1 (repo01)`, `peer 3`) in
# its top border; the status line says how to end the demo. Pane commands
# run under "bash -c" and keep the pane open when they end.
# DETACH=1 never attaches (scripts/test.sh view); PEERKIT_TMUX_SOCKET=NAME
# uses a private tmux server (tmux -L NAME), as the headless check does.
# Sessions are made at 128x36, a 1280x720 screen in a 10x20 font; attaching
# resizes them to the terminal.
# A layout sets TMUX_LAYOUT=1 before its daemons start (see start).
TMUX_SESSION=
tmx() {
    if [ -n "${PEERKIT_TMUX_SOCKET:-}" ]; then
        tmux -L "$PEERKIT_TMUX_SOCKET" "$@"
    else
        tmux "$@"
    fi
}
# The tmux command a person types to reach the session.
tmux_cmd() {
    if [ -n "${PEERKIT_TMUX_SOCKET:-}" ]; then
        echo "tmux -L $PEERKIT_TMUX_SOCKET"
    else
        echo tmux
    fi
}
tmux_open() {
    TMUX_SESSION="$1-$$"
    tmx new-session -d -s "$TMUX_SESSION" -x "${TMUX_COLS:-128}" -y "${TMUX_ROWS:-36}" "bash -c '$3; exec bash'"
    tmx set-option -t "$TMUX_SESSION" remain-on-exit on >/dev/null
    tmx set-option -t "$TMUX_SESSION" pane-border-status top >/dev/null
    tmx set-option -t "$TMUX_SESSION" pane-border-format ' #{pane_index}: #{pane_title} ' >/dev/null
    tmx set-option -t "$TMUX_SESSION" status-left-length 40 >/dev/null
    tmx set-option -t "$TMUX_SESSION" status-right-length 120 >/dev/null
    tmx set-option -t "$TMUX_SESSION" status-left " demo $1 " >/dev/null
    tmx set-option -t "$TMUX_SESSION" status-right \
        " end: Ctrl-b : kill-session   leave running: Ctrl-b d " >/dev/null
    tmx select-pane -t "$TMUX_SESSION:0.0" -T "$2"
}
tmux_pane() {
    tmx split-window -t "$TMUX_SESSION" "bash -c '$2; exec bash'"
    tmx select-pane -t "$TMUX_SESSION" -T "$1"
    tmx select-layout -t "$TMUX_SESSION" tiled >/dev/null
}
# tmux_title_when FILE NAME: once FILE has its `listening on ADDR` line,
# titles the pane opened last "NAME ADDR", the address the program's log
# lines and the tracker's use (in the background; gives up after 60 s).
tmux_title_when() {
    local file=$1 name=$2 pane
    pane=$(tmx display-message -p -t "$TMUX_SESSION" '#{pane_id}') || return 0
    (
        wait_line "$file" '^listening on ' 60 || exit 0
        addr=$(grep -m1 '^listening on ' "$file" | sed 's/^listening on //')
        tmx select-pane -t "$pane" -T "$name $addr" 2>/dev/null || true
    ) &
}
# tmux_views [N] [SECS]: prints the pages in $RUN/views.txt, first waiting
# (up to SECS, 90) until there are N.
tmux_views() {
    local n=${1:-0} secs=${2:-90} line
    [ "$n" -gt 0 ] && wait_count "$RUN/views.txt" . "$n" "$secs" >/dev/null 2>&1
    [ -s "$RUN/views.txt" ] || return 0
    say "pages (open in a browser):"
    while read -r line; do
        printf '  %-22s %s\n' "${line% *}" "${line##* }"
    done <"$RUN/views.txt"
}
tmux_show() {
    local t
    t=$(tmux_cmd)
    tmx select-pane -t "$TMUX_SESSION:0.0"
    if [ -n "${TMUX:-}" ] && [ -z "${DETACH:-}" ] && [ -z "${PEERKIT_TMUX_SOCKET:-}" ]; then
        tmux_views
        tmx switch-client -t "$TMUX_SESSION"
    elif [ -t 0 ] && [ -t 1 ] && [ -z "${DETACH:-}" ]; then
        tmux_views
        tmx attach -t "$TMUX_SESSION"
    else
        tmux_views "${1:-0}"
        say "tmux session $TMUX_SESSION runs detached (no terminal here, or DETACH=1)"
        say "  watch it:  $t attach -t $TMUX_SESSION"
        say "  end it:    $t kill-session -t $TMUX_SESSION"
        say "folder: $RUN (removed when the session ends, unless KEEP=1)"
    fi
}
# tmux_abort WHAT: a layout could not start WHAT: ends its session, stops
# its daemons, keeps the run folder for inspection, exits 1.
tmux_abort() {
    say "demo failed: $1; logs kept in $RUN" >&2
    [ -n "$TMUX_SESSION" ] && tmx kill-session -t "$TMUX_SESSION" 2>/dev/null
    exit 1
}

# tmux_finish: after the session ended: stop the daemons, drop the folder.
tmux_finish() {
    cleanup
    if [ -z "${KEEP:-}" ] && [ ! -e "$RUN/failed" ]; then
        rm -rf "$RUN"
        rmdir "$ROOT/run" 2>/dev/null || true
    fi
}
tmux_keep() {
    if tmx has-session -t "$TMUX_SESSION" 2>/dev/null &&
        { [ -t 0 ] && [ -t 1 ] && [ -z "${DETACH:-}" ] && [ -z "${TMUX:-}" ]; } &&
        [ -z "${PEERKIT_TMUX_SOCKET:-}" ]; then
        # Back from an attach that left the session running (Ctrl-b d).
        say "the demo goes on; watch it: $(tmux_cmd) attach -t $TMUX_SESSION"
    fi
    if ! tmx has-session -t "$TMUX_SESSION" 2>/dev/null; then
        tmux_finish
        trap - EXIT
        return 0
    fi
    # The session outlives this script: a keeper of its own holds the
    # daemons until the session ends, then tidies up.
    (
        trap - EXIT
        trap '' HUP
        exec </dev/null >/dev/null 2>&1
        while tmx has-session -t "$TMUX_SESSION" 2>/dev/null; do
            sleep 1
        done
        tmux_finish
    ) &
    disown
    trap - EXIT
}
