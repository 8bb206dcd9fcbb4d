#!/usr/bin/env bash
# The live views in a real browser: starts daemons with --http on
# 127.0.0.1, loads each page in headless Chromium through playwright-core
# (tests/browser/views.mjs) and checks it against its own state.json, with
# hostile names among the files. Screenshots go to run/browser-*/shots/
# (SAVE_SHOTS=1 also copies one per page to tests/browser/screenshots/).
#
#   scripts/browser-test.sh            (scripts/install-deps.sh browser installs
#                                       chromium, node and playwright-core)
#
# Without Chromium, Node.js or playwright-core it prints SKIPPED and why,
# and exits 0.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

BROWSER_DIR="$ROOT/tests/browser"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
skip() {
    skipped "browser test" "$*"
    exit 0
}
[ -x "$CHROMIUM" ] || skip "no Chromium at $CHROMIUM (scripts/install-deps.sh browser)"
command -v node >/dev/null || skip "no Node.js (scripts/install-deps.sh browser)"
[ -d "$BROWSER_DIR/node_modules/playwright-core" ] ||
    skip "no playwright-core in tests/browser (scripts/install-deps.sh browser)"

demo_init browser
note "live views in Chromium, in $RUN"

# The DHT: an index with its view, two supernodes, a file whose name is markup.
mkdir -p "$RUN/r1" "$RUN/r2"
cp "$ROOT"/testdata/repo01/texto0{1,2,3}.txt "$RUN/r1/"
cp "$ROOT"/testdata/repo01/texto0{4,5,6}.txt "$RUN/r2/"
printf 'x\n' >"$RUN/r2/<img src=x onerror=alert(1)>.txt"
printf 'y\n' >"$RUN/r1/\"><script>alert(1)<script>.txt"
printf 'z\n' >"$RUN/r1/two"$'\n'"lines.txt"
start index p2p-index --listen 127.0.0.1:0 --http 127.0.0.1:0 || exit 1
wait_line "$RUN/index.out" '^view on ' 10 || exit 1
VIEW_index=$(sed -n 's/^view on //p' "$RUN/index.out")
start s1 p2p-superd "$RUN/r1" --index "$ADDR_index" --listen 127.0.0.1:0 --sync-interval 0.5 \
    --http 127.0.0.1:0 || exit 1
wait_line "$RUN/s1.out" '^view on ' 10 || exit 1
VIEW_superd=$(sed -n 's/^view on //p' "$RUN/s1.out")
start s2 p2p-superd "$RUN/r2" --index "$ADDR_index" --listen 127.0.0.1:0 --sync-interval 0.5 || exit 1
wait_line "$RUN/index.out" '^joined ' 10 || exit 1
wait_count "$RUN/index.out" '^joined ' 2 10 || exit 1
# Some lookups while the page is open come from the synchronizers anyway.

# The Napster-like directory: a server with its view, users with names
# that are markup, a published file, a connected and a disconnected user.
start naplog nap-log --listen 127.0.0.1:0 --http 127.0.0.1:0 || exit 1
wait_line "$RUN/naplog.out" '^view on ' 10 || exit 1
VIEW_naplog=$(sed -n 's/^view on //p' "$RUN/naplog.out")
start naptime nap-time --listen 127.0.0.1:0 --http 127.0.0.1:0 || exit 1
wait_line "$RUN/naptime.out" '^view on ' 10 || exit 1
VIEW_naptime=$(sed -n 's/^view on //p' "$RUN/naptime.out")
start nap nap-server --listen 127.0.0.1:0 --http 127.0.0.1:0 --log-rpc "$ADDR_naplog" || exit 1
wait_line "$RUN/nap.out" '^view on ' 10 || exit 1
VIEW_nap=$(sed -n 's/^view on //p' "$RUN/nap.out")
mkdir -p "$RUN/share"
printf 'notes\n' >"$RUN/share/notes.txt"
printf '%s\n' 'REGISTER "<img src=x onerror=alert(1)>"' 'CONNECT "<img src=x onerror=alert(1)>"' \
    'PUBLISH notes.txt "</script><script>alert(2)</script>"' 'REGISTER bo' 'LIST_USERS' |
    nap-peer -s 127.0.0.1 -p "$PORT_nap" --listen-ip 127.0.0.1 --share "$RUN/share" \
        --time-url "http://$ADDR_naptime/" \
        >"$RUN/peer.out" 2>"$RUN/peer.err" || true
wait_line "$RUN/nap.out" 'LIST_USERS FROM' 10 || exit 1
wait_line "$RUN/naplog.out" 'LIST_USERS' 10 || exit 1

# Remote directories, stateful: a client holding two handles open (one
# on a folder whose name is markup) while the page is looked at.
mkdir -p "$RUN/root/docs" "$RUN/root/<img src=x onerror=alert(3)>"
for i in 1 2 3 4 5 6; do
    : >"$RUN/root/docs/f$i"
    : >"$RUN/root/<img src=x onerror=alert(3)>/g$i"
done
start rdir rdird --mode stateful --root "$RUN/root" --listen 127.0.0.1:0 --http 127.0.0.1:0 || exit 1
wait_line "$RUN/rdir.out" '^view on ' 10 || exit 1
VIEW_rdir=$(sed -n 's/^view on //p' "$RUN/rdir.out")
rls --mode stateful --server 127.0.0.1 --port "$PORT_rdir" --mix --batch 1 --pause-ms 60000 \
    docs "<img src=x onerror=alert(3)>" >"$RUN/rls.out" 2>&1 &
PIDS+=($!)
wait_count "$RUN/rdir.out" ' -> 1 entries' 2 10 || exit 1

# Flooding: a triangle, the client at a, the view on b: every flood reaches
# b from a and, unless c forwarded it first, again from c, where it dies as
# a duplicate. A key that is
# markup among the queries.
printf 'ssh 22/tcp\n' >"$RUN/a.kv"
printf 'http 80/tcp\n' >"$RUN/b.kv"
printf 'ssh 22/tcp # also here\n' >"$RUN/c.kv"
# Every servent's view at its port + 1000, so any page can draw the overlay:
# ports below the ephemeral range (where an outgoing connection could hold
# port + 1000), each free with its + 1000 now.
kv_port() {
    /usr/bin/python3 - "$1" <<'PY'
import socket, sys
def free(p):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
            return True
        except OSError:
            return False
p = int(sys.argv[1])
while not (free(p) and free(p + 1000)):
    p += 1
print(p)
PY
}
kvport=$(kv_port $((20000 + $$ % 8000))) || exit 1
start kvb kv-servent "$kvport" "$RUN/b.kv" --bind 127.0.0.1 --http 127.0.0.1:+1000 || exit 1
kvport=$(kv_port $((kvport + 1))) || exit 1
start kvc kv-servent "$kvport" "$RUN/c.kv" --bind 127.0.0.1 --http 127.0.0.1:+1000 "$ADDR_kvb" || exit 1
kvport=$(kv_port $((kvport + 1))) || exit 1
start kva kv-servent "$kvport" "$RUN/a.kv" --bind 127.0.0.1 --http 127.0.0.1:+1000 "$ADDR_kvb" "$ADDR_kvc" || exit 1
wait_line "$RUN/kvb.out" '^view on ' 10 || exit 1
VIEW_flood=$(sed -n 's/^view on //p' "$RUN/kvb.out")
printf '%s\n' '?ssh' '?<img src=x onerror=alert(4)>' '?http' |
    kv-query "$ADDR_kva" --wait 1 >"$RUN/kvq.out" 2>&1 || true
# The three queries' floods (a client's sequence numbers start anywhere).
wait_count "$RUN/kvb.out" '^flood key ' 3 10 || exit 1
wait_line "$RUN/kvb.out" '^duplicate ' 10 || exit 1
VIEW_overlay=$(sed -n 's/^view on //p' "$RUN/kva.out")

# A Napster-like peer serving a file whose name is markup, with its view;
# another peer fetches it twice. Its commands come through a FIFO, closed
# (so it quits) when this script ends.
mkdir -p "$RUN/ana" "$RUN/bo"
head -c $((4 << 20)) /dev/urandom >"$RUN/ana/<img src=x onerror=alert(5)>.txt"
mkfifo "$RUN/ana.in"
nap-peer -s 127.0.0.1 -p "$PORT_nap" --listen-ip 127.0.0.1 --share "$RUN/ana" --http 127.0.0.1:0 \
    <"$RUN/ana.in" >"$RUN/ana.out" 2>"$RUN/ana.err" &
PIDS+=($!)
exec 7>"$RUN/ana.in"
printf '%s\n' 'REGISTER ana' 'CONNECT ana' 'PUBLISH "<img src=x onerror=alert(5)>.txt" a file' >&7
wait_line "$RUN/ana.out" '^PUBLISH OK' 10 || exit 1
VIEW_nappeer=$(sed -n 's/^view on //p' "$RUN/ana.out")
# bo fetches into its own folder (GET_FILE's local name is relative to the
# current one), not into the tree the test runs from.
printf '%s\n' 'REGISTER bo' 'CONNECT bo' 'GET_FILE ana "<img src=x onerror=alert(5)>.txt" one' \
    'GET_FILE ana "<img src=x onerror=alert(5)>.txt" two' 'QUIT' |
    (cd "$RUN/bo" && nap-peer -s 127.0.0.1 -p "$PORT_nap" --listen-ip 127.0.0.1 --share "$RUN/bo" \
        >"$RUN/bo.out" 2>"$RUN/bo.err") || true

# The swarm, last, so its pages are looked at while pieces move: a seed
# capped at 256 KiB/s, a file whose name is markup, two fetchers.
mkdir -p "$RUN/seed"
head -c $((3 << 20)) /dev/urandom >"$RUN/seed/<img src=x onerror=alert(6)>.bin"
start tracker bt-tracker --listen 127.0.0.1:0 --http 127.0.0.1:0 --ping-interval 1 || exit 1
wait_line "$RUN/tracker.out" '^view on ' 10 || exit 1
VIEW_tracker=$(sed -n 's/^view on //p' "$RUN/tracker.out")
start seed bt-peer share "$RUN/seed/<img src=x onerror=alert(6)>.bin" --tracker "$ADDR_tracker" \
    --listen 127.0.0.1:0 --piece-size 64K --upload-limit 256K --ping-interval 1 --http 127.0.0.1:0 || exit 1
wait_line "$RUN/seed.out" '^swarm ' 10 || exit 1
VIEW_seed=$(sed -n 's/^view on //p' "$RUN/seed.out")
for i in 1 2; do
    start "fetch$i" bt-peer fetch "<img src=x onerror=alert(6)>.bin" --tracker "$ADDR_tracker" \
        --listen 127.0.0.1:0 --out "$RUN/fetch$i" --ping-interval 1 --http 127.0.0.1:0 || exit 1
done
wait_line "$RUN/fetch1.out" '^view on ' 10 || exit 1
VIEW_fetch=$(sed -n 's/^view on //p' "$RUN/fetch1.out")

# Every /metrics, read by an independent parser (the Prometheus client's).
metrics_parse() {
    /usr/bin/python3 - "$@" <<'PY'
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
def scrape(view):
    text = urllib.request.urlopen(view + "metrics", timeout=10).read().decode()
    return list(text_string_to_metric_families(text))
def served(families):
    for f in families:
        if f.name == "peerkit_view_requests":
            for s in f.samples:
                if s.name.endswith("_total") and s.labels.get("path") == "/state.json":
                    return s.value
    raise AssertionError("no peerkit_view_requests_total{path=/state.json}")
for arg in sys.argv[1:]:
    # VIEW or VIEW!noserver: a view whose daemon has no server core of its own
    # (nap-peer's listener comes and goes with CONNECT).
    view, _, flag = arg.partition("!")
    families = scrape(view)
    names = [f.name for f in families]
    assert all(n.startswith("peerkit_") for n in names), names
    if flag != "noserver":
        assert any(n == "peerkit_connections_open" for n in names), names
    # A counter moves by exactly the requests made here.
    before = served(families)
    for _ in range(3):
        urllib.request.urlopen(view + "state.json", timeout=10).read()
    after = served(scrape(view))
    assert after == before + 3, (view, before, after)
    print(f"{view}metrics: {len(families)} families parse; 3 state.json asks counted as 3")
PY
}
if /usr/bin/python3 -c 'import prometheus_client' 2>/dev/null; then
    step "every /metrics parses with prometheus_client" \
        metrics_parse "$VIEW_index" "$VIEW_superd" "$VIEW_nap" "$VIEW_rdir" "$VIEW_flood" \
        "$VIEW_naplog" "$VIEW_naptime" "$VIEW_tracker" "$VIEW_seed" "$VIEW_fetch" \
        "$VIEW_nappeer!noserver"
else
    skipped "the /metrics parse check" "no prometheus_client for /usr/bin/python3 (scripts/install-deps.sh browser)"
fi

step "every page passes in Chromium" \
    env CHROMIUM="$CHROMIUM" node "$BROWSER_DIR/views.mjs" "$RUN/shots" \
    "tracker=$VIEW_tracker" "btpeer=$VIEW_fetch" "btpeer=$VIEW_seed" \
    "overlay=${VIEW_overlay}?overlay=1" "nappeer=$VIEW_nappeer" \
    "index=$VIEW_index" "superd=$VIEW_superd" "nap=$VIEW_nap" "rdir=$VIEW_rdir" "flood=$VIEW_flood" \
    "records=$VIEW_naplog" "records=$VIEW_naptime"
# SAVE_SHOTS=1: the first screenshot of each page becomes
# tests/browser/screenshots/NAME.png (the README shows them).
if [ -n "${SAVE_SHOTS:-}" ]; then
    mkdir -p "$BROWSER_DIR/screenshots"
    # In the order they were taken: a page's first one wins.
    for shot in $(ls -tr "$RUN"/shots/*.png 2>/dev/null); do
        name=$(basename "$shot" | sed 's/-[0-9]*\.png$//')
        [ -e "$BROWSER_DIR/screenshots/$name.png.new" ] ||
            cp "$shot" "$BROWSER_DIR/screenshots/$name.png.new"
    done
    for new in "$BROWSER_DIR"/screenshots/*.png.new; do
        [ -e "$new" ] && mv "$new" "${new%.new}"
    done
    say "screenshots saved in tests/browser/screenshots/"
fi
KEEP=${KEEP:-1} summary
