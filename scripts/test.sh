#!/usr/bin/env bash
# Runs the toolkit's documented demos.
#
#   scripts/test.sh                 every demo, headless, with a summary
#   scripts/test.sh DEMO...         the named demos, headless
#   scripts/test.sh tmux DEMO       one demo laid out in tmux panes
#
# Demos live in scripts/demos/NAME.sh (headless, exit 0 only if every step
# matched) and tmux/NAME.sh (the pane layout of the same processes).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/lib.sh"

available() {
    local f
    for f in "$ROOT"/scripts/demos/*.sh; do
        [ -e "$f" ] && basename "$f" .sh
    done
}

usage() {
    say "usage: scripts/test.sh [tmux] [DEMO...]"
    say "demos: $(available | tr '\n' ' ')"
}

mode=headless
if [ "${1:-}" = "tmux" ]; then
    mode=tmux
    shift
fi
case "${1:-}" in -h | --help) usage; exit 0 ;; esac

if [ $# -eq 0 ]; then
    if [ "$mode" = tmux ]; then
        usage >&2
        exit 2
    fi
    mapfile -t demos < <(available)
else
    demos=("$@")
fi

for d in "${demos[@]}"; do
    if [ ! -f "$ROOT/scripts/demos/$d.sh" ]; then
        say "scripts/test.sh: no such demo: $d" >&2
        usage >&2
        exit 2
    fi
done

build_release
export PEERKIT_SKIP_BUILD=1

if [ "$mode" = tmux ]; then
    need tmux tmux
    exec bash "$ROOT/tmux/${demos[0]}.sh"
fi

ok=()
bad=()
for d in "${demos[@]}"; do
    note "demo: $d"
    if bash "$ROOT/scripts/demos/$d.sh"; then
        ok+=("$d")
    else
        bad+=("$d")
    fi
    say
done
note "demos: ${#ok[@]} passed (${ok[*]:-none}), ${#bad[@]} failed (${bad[*]:-none})"
[ "${#bad[@]}" -eq 0 ]
