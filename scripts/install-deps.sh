#!/usr/bin/env bash
# Installs, on a fresh Debian machine, what the demos and the interop tests
# use beyond the Rust toolchain. Best effort: a package that cannot be
# installed is reported, and the tests that need it say so and are skipped.
# Needs root (it runs apt-get and may start rpcbind): run it as root, or as a
# user who may use sudo.
#
#   scripts/install-deps.sh            every group
#   scripts/install-deps.sh GROUP...   the named groups
#
# Groups:
#   demo    tmux (the multi-pane demos), script (bsdutils: the shells'
#           pseudo-terminal tests)
#   rpc     gcc, rpcgen (rpcsvc-proto), libtirpc-dev and rpcbind for the rdir
#           C client built from rdir.x; starts `rpcbind -w` if none runs
#   nap     python3-zeep for /usr/bin/python3 (nap-time's SOAP interop test),
#           nc (scripts/bench-nap.sh's reference transfer)
#   hosts   what scripts/hosts.sh uses: ip, tc and ss (iproute2), unshare
#           and nsenter (util-linux), rpcbind and rpcinfo (each host's own
#           rpcbind; none is started here), nc (the benchmark's reference)
#   browser Debian's chromium, and playwright-core from npm in tests/browser
#           (scripts/browser-test.sh drives the live views with them);
#           python3-prometheus-client (its parser reads every /metrics)
#   bittorrent  aria2c, transmission-cli (transmission-show too), opentracker,
#           mktorrent and tshark (answering debconf's question about
#           non-root capture) for the BitTorrent interop tests
#   fuzz    what scripts/fuzz.sh uses: the nightly toolchain (rustup),
#           cargo-fuzz from crates.io, a C++ compiler for libFuzzer
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/lib.sh"

if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
    say "scripts/install-deps.sh needs root: it installs Debian packages (run it as root, or with sudo)" >&2
    exit 1
fi

# install_pkg PACKAGE WHAT: installs a Debian package, saying what for.
install_pkg() {
    say "installing $1 (for $2)" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq >/dev/null && apt-get install -y -qq "$1" >/dev/null
    else
        sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq "$1" >/dev/null
    fi
}

group_demo() {
    local ok=0
    need tmux tmux || ok=1
    # The shells' tests type at kv-query and nap-peer on a pseudo-terminal.
    need script bsdutils || ok=1
    return "$ok"
}

# need_file FILE PACKAGE: installs PACKAGE if FILE is missing.
need_file() {
    if [ ! -e "$1" ]; then
        install_pkg "$2" "$1"
    fi
    [ -e "$1" ]
}

rpcbind_path() {
    command -v rpcbind 2>/dev/null || ls /usr/sbin/rpcbind /sbin/rpcbind 2>/dev/null | head -n1
}

group_rpc() {
    local ok=0
    need gcc gcc || ok=1
    need rpcgen rpcsvc-proto || ok=1
    need pkg-config pkg-config || true
    need_file /usr/include/tirpc/rpc/rpc.h libtirpc-dev || ok=1
    if [ -z "$(rpcbind_path)" ]; then
        install_pkg rpcbind rpcbind || true
    fi
    local rpcbind
    rpcbind=$(rpcbind_path)
    if [ -z "$rpcbind" ]; then
        say "rpcbind could not be installed" >&2
        return 1
    fi
    # Running already? (rpcinfo comes with rpcbind.)
    if ! rpcinfo -p 127.0.0.1 >/dev/null 2>&1; then
        say "starting rpcbind -w" >&2
        if [ "$(id -u)" -eq 0 ]; then
            "$rpcbind" -w || ok=1
        else
            sudo "$rpcbind" -w || ok=1
        fi
    fi
    return "$ok"
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

group_hosts() {
    local ok=0 c
    need ip iproute2 || ok=1
    need tc iproute2 || ok=1
    need ss iproute2 || ok=1
    need unshare util-linux || ok=1
    need nsenter util-linux || ok=1
    if [ -z "$(rpcbind_path)" ]; then
        install_pkg rpcbind rpcbind || true
    fi
    [ -n "$(rpcbind_path)" ] || ok=1
    need nc netcat-openbsd || ok=1
    for c in ip tc ss unshare nsenter rpcinfo nc; do
        command -v "$c" >/dev/null 2>&1 || {
            say "$c is still missing" >&2
            ok=1
        }
    done
    return "$ok"
}

group_browser() {
    local ok=0
    need /usr/bin/chromium chromium || ok=1
    apt_python prometheus_client python3-prometheus-client || ok=1
    need node nodejs || ok=1
    need npm npm || true
    if command -v npm >/dev/null; then
        # The exact versions of package-lock.json; no browser download.
        (cd "$ROOT/tests/browser" &&
            PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund) || ok=1
    else
        ok=1
    fi
    return "$ok"
}

group_bittorrent() {
    local ok=0
    need aria2c aria2 || true
    need transmission-cli transmission-cli || true
    need opentracker opentracker || true
    need mktorrent mktorrent || true
    if ! command -v tshark >/dev/null 2>&1; then
        say "installing tshark (for the capture test)" >&2
        local sudo=
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        echo "wireshark-common wireshark-common/install-setuid boolean false" |
            $sudo debconf-set-selections
        $sudo apt-get update -qq >/dev/null &&
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null
    fi
    for c in aria2c transmission-cli transmission-show opentracker mktorrent tshark; do
        command -v "$c" >/dev/null 2>&1 || {
            say "$c is still missing" >&2
            ok=1
        }
    done
    return "$ok"
}

group_fuzz() {
    local ok=0
    need g++ g++ || ok=1
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        say "installing the nightly toolchain" >&2
        rustup toolchain install nightly --profile minimal >/dev/null || ok=1
    fi
    if ! command -v cargo-fuzz >/dev/null; then
        say "installing cargo-fuzz" >&2
        cargo install --locked --quiet cargo-fuzz || ok=1
    fi
    return "$ok"
}

groups=("$@")
if [ ${#groups[@]} -eq 0 ]; then
    groups=(demo rpc nap hosts browser bittorrent fuzz)
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
