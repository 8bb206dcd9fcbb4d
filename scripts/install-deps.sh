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
#   nap     python3-zeep for /usr/bin/python3 (nap-time's SOAP interop test),
#           nc (scripts/bench-nap.sh's reference transfer)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/lib.sh"

group_demo() {
    need tmux tmux
}

# apt_python MODULE PACKAGE: installs a Debian package if Debian's python3
# cannot import MODULE (tests call /usr/bin/python3, not whatever python3
# comes first on PATH).
apt_python() {
    if ! /usr/bin/python3 -c "import $1" >/dev/null 2>&1; then
        say "installing $2 (for /usr/bin/python3: import $1)" >&2
        if [ "$(id -u)" -eq 0 ]; then
            apt-get update -qq >/dev/null && apt-get install -y -qq "$2" >/dev/null
        else
            sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq "$2" >/dev/null
        fi
    fi
    /usr/bin/python3 -c "import $1" >/dev/null 2>&1
}

group_nap() {
    local ok=0
    apt_python zeep python3-zeep || ok=1
    need nc netcat-openbsd || ok=1
    return "$ok"
}

groups=("$@")
if [ ${#groups[@]} -eq 0 ]; then
    groups=(demo nap)
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
