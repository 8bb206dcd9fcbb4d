#!/usr/bin/env bash
# Runs the toolkit's documented demos.
#
#   scripts/test.sh                 every demo, headless, with a summary
#   scripts/test.sh DEMO...         the named demos, headless
#   scripts/test.sh tmux DEMO       one demo laid out in tmux panes (attached on
#                                   a terminal; detached, with how to attach,
#                                   when there is none)
#   scripts/test.sh view DEMO       the tmux demo, detached, and the addresses of
#                                   its daemons' pages (--http) to open
#   scripts/test.sh hosts           the multi-host suite (scripts/hosts.sh)
#
# Demos live in scripts/demos/NAME.sh (headless, exit 0 only if every step
# matched) and tmux/NAME.sh (the pane layout of the same processes).
# Suites that take minutes (hosts: network namespaces, root) run only when
# named, so the default list stays quick.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/lib.sh"

available() {
    local f
    for f in "$ROOT"/scripts/demos/*.sh; do
        [ -e "$f" ] && basename "$f" .sh
    done
}

# Run only when named: scripts/NAME.sh.
SUITES=(hosts)

# script_of NAME: the script of a demo or of a suite run only when named.
script_of() {
    local s
    if [ -f "$ROOT/scripts/demos/$1.sh" ]; then
        echo "$ROOT/scripts/demos/$1.sh"
        return 0
    fi
    for s in "${SUITES[@]}"; do
        [ "$s" = "$1" ] && echo "$ROOT/scripts/$1.sh" && return 0
    done
    return 1
}

usage() {
    say "usage: scripts/test.sh [tmux|view] [DEMO...]"
    say "demos: $(available | tr '\n' ' ')"
    say "run only when named: ${SUITES[*]}"
}

mode=headless
if [ "${1:-}" = "tmux" ] || [ "${1:-}" = "view" ]; then
    mode=$1
    shift
fi
case "${1:-}" in -h | --help) usage; exit 0 ;; esac

if [ $# -eq 0 ]; then
    if [ "$mode" != headless ]; then
        usage >&2
        exit 2
    fi
    mapfile -t demos < <(available)
else
    demos=("$@")
fi

for d in "${demos[@]}"; do
    if ! script_of "$d" >/dev/null; then
        say "scripts/test.sh: no such demo: $d" >&2
        usage >&2
        exit 2
    fi
    if [ "$mode" != headless ] && [ ! -f "$ROOT/tmux/$d.sh" ]; then
        say "scripts/test.sh: $d has no tmux layout" >&2
        exit 2
    fi
done

build_release
export PEERKIT_SKIP_BUILD=1

if [ "$mode" != headless ]; then
    need tmux tmux
    [ "$mode" = view ] && export DETACH=1
    exec bash "$ROOT/tmux/${demos[0]}.sh"
fi

ok=()
bad=()
for d in "${demos[@]}"; do
    note "demo: $d"
    if bash "$(script_of "$d")"; then
        ok+=("$d")
    else
        bad+=("$d")
    fi
    say
done
note "demos: ${#ok[@]} passed (${ok[*]:-none}), ${#bad[@]} failed (${bad[*]:-none})"
[ "${#bad[@]}" -eq 0 ]
