#!/usr/bin/env bash
# The live views in a real browser: starts daemons with --http on
# 127.0.0.1, loads each page in headless Chromium through playwright-core
# (tests/browser/views.mjs) and checks it against its own state.json, with
# hostile names among the files. Screenshots go to run/browser-*/shots/.
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
start kvb kv-servent 0 "$RUN/b.kv" --bind 127.0.0.1 --http 127.0.0.1:0 || exit 1
start kvc kv-servent 0 "$RUN/c.kv" --bind 127.0.0.1 "$ADDR_kvb" || exit 1
start kva kv-servent 0 "$RUN/a.kv" --bind 127.0.0.1 "$ADDR_kvb" "$ADDR_kvc" || exit 1
wait_line "$RUN/kvb.out" '^view on ' 10 || exit 1
VIEW_flood=$(sed -n 's/^view on //p' "$RUN/kvb.out")
printf '%s\n' '?ssh' '?<img src=x onerror=alert(4)>' '?http' |
    kv-query "$ADDR_kva" --wait 1 >"$RUN/kvq.out" 2>&1 || true
wait_line "$RUN/kvb.out" 'seq 2 ' 10 || exit 1
wait_line "$RUN/kvb.out" '^duplicate ' 10 || exit 1

# Every /metrics, read by an independent parser (the Prometheus client's).
metrics_parse() {
    /usr/bin/python3 - "$@" <<'PY'
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
for view in sys.argv[1:]:
    text = urllib.request.urlopen(view + "metrics", timeout=10).read().decode()
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert all(n.startswith("peerkit_") for n in names), names
    assert any(n == "peerkit_connections_open" for n in names), names
    print(f"{view}metrics: {len(families)} families parse")
PY
}
if /usr/bin/python3 -c 'import prometheus_client' 2>/dev/null; then
    step "every /metrics parses with prometheus_client" \
        metrics_parse "$VIEW_index" "$VIEW_superd" "$VIEW_nap" "$VIEW_rdir" "$VIEW_flood" \
        "$VIEW_naplog" "$VIEW_naptime"
else
    skipped "the /metrics parse check" "no prometheus_client for /usr/bin/python3 (scripts/install-deps.sh browser)"
fi

step "every page passes in Chromium" \
    env CHROMIUM="$CHROMIUM" node "$BROWSER_DIR/views.mjs" "$RUN/shots" \
    "index=$VIEW_index" "superd=$VIEW_superd" "nap=$VIEW_nap" "rdir=$VIEW_rdir" "flood=$VIEW_flood" \
    "records=$VIEW_naplog" "records=$VIEW_naptime"
KEEP=${KEEP:-1} summary
