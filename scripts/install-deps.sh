#!/usr/bin/env bash
# Installs, on a fresh Debian machine, what the demos and the interop tests
# use beyond the Rust toolchain. Best effort: a package that cannot be
# installed is reported, and the tests that need it say so and are skipped.
#
#   scripts/install-deps.sh            every group
#   scripts/install-deps.sh GROUP...   the named groups
#
# Groups:
#   demo    tmux (the multi-pane demos)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/lib.sh"

group_demo() {
    need tmux tmux
}

groups=("$@")
if [ ${#groups[@]} -eq 0 ]; then
    groups=(demo)
fi
status=0
for g in "${groups[@]}"; do
    if ! declare -F "group_$g" >/dev/null; then
        say "scripts/install-deps.sh: no such group: $g" >&2
        exit 2
    fi
    if ! "group_$g"; then
        say "scripts/install-deps.sh: group $g is incomplete; tests that need it will say so" >&2
        status=1
    fi
done
exit "$status"
