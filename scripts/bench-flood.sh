#!/usr/bin/env bash
# Flooding benchmark: N servents (100) on loopback in a random connected
# overlay of average degree about 4, every key held by exactly one servent,
# Q queries (1,000) with a TTL that reaches every servent.
#
#   scripts/bench-flood.sh [SERVENTS] [QUERIES] [SEED]
#
# Prints:
#   - time to the first answer, p50 / p90 / p99 / max (goal: p99 < 20 ms);
#   - answers per query: missing and duplicate answers (goal: none);
#   - flood messages sent per query, summed over the servents' stats lines,
#     against the number of links (each servent forwards a query once, so a
#     query costs 2*links - (servents - 1) messages when the TTL outlasts
#     every path, and never more than 2*links);
#   - servents' resident memory after the first 10% of the queries and at
#     the end, and their peak (VmHWM) (goal: flat).
#
# The query driver is python3 speaking the wire protocol directly (clients
# listen for answers, send ID and KEYREQ, time the first RESP).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-100}
Q=${2:-1000}
SEED=${3:-7}
demo_init bench-flood
need python3 python3

note "overlay: $N servents, seed $SEED"
python3 - "$N" "$SEED" "$RUN" <<'PY'
import json, random, sys
from collections import deque
n, seed, run = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rnd = random.Random(seed)
edges = set()
for j in range(1, n):                       # a random spanning tree: connected
    edges.add((rnd.randrange(j), j))
while len(edges) < min(2 * n, n * (n - 1) // 2):   # then up to degree ~4
    i, j = sorted(rnd.sample(range(n), 2))
    edges.add((i, j))
adj = {i: [] for i in range(n)}
for i, j in edges:
    adj[i].append(j)
    adj[j].append(i)
def ecc(s):
    dist = {s: 0}
    q = deque([s])
    while q:
        u = q.popleft()
        for v in adj[u]:
            if v not in dist:
                dist[v] = dist[u] + 1
                q.append(v)
    assert len(dist) == n
    return max(dist.values())
diameter = max(ecc(s) for s in range(n))
keys_per = 10
for i in range(n):
    with open(f"{run}/s{i}.kv", "w") as f:
        f.write(f"# servent s{i} of the benchmark overlay\n")
        for k in range(keys_per):
            key = f"k{i * keys_per + k:05d}"
            f.write(f"{key} value-of-{key}-on-s{i}\n")
with open(f"{run}/plan", "w") as f:     # name, neighbours started before it
    for j in range(n):
        f.write(" ".join([f"s{j}"] + [f"s{i}" for i, jj in sorted(edges) if jj == j]) + "\n")
json.dump({"n": n, "links": len(edges), "diameter": diameter,
           "keys": n * keys_per, "incoming": {f"s{i}": sum(1 for a, b in edges if a == i) for i in range(n)}},
          open(f"{run}/overlay.json", "w"))
print(f"links {len(edges)} (average degree {2 * len(edges) / n:.1f}), diameter {diameter}")
PY
LINKS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["links"])' "$RUN/overlay.json")
DIAM=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["diameter"])' "$RUN/overlay.json")
# The diameter reaches everyone, but a servent's first copy may come along a
# longer path with less TTL left; a TTL of N outlasts any path, so every
# servent forwards each query exactly once and the message count is exact.
TTL=$N

note "starting $N servents (TTL $TTL; diameter $DIAM)"
: >"$RUN/pids"
while read -r name neighbours; do
    addrs=()
    for n in $neighbours; do
        v="ADDR_$n"
        addrs+=("${!v}")
    done
    start "$name" kv-servent --quiet --ttl "$TTL" --bind 127.0.0.1 0 "$RUN/$name.kv" "${addrs[@]}" || exit 1
    v="PID_$name"
    v2="ADDR_$name"
    echo "$name ${!v} ${!v2}" >>"$RUN/pids"
done <"$RUN/plan"
# Wait until every servent has registered the links its later neighbours opened.
python3 - "$RUN" <<'PY' || exit 1
import json, sys, time
run = sys.argv[1]
want = json.load(open(f"{run}/overlay.json"))["incoming"]
deadline = time.time() + 60
for name, k in want.items():
    while sum(1 for l in open(f"{run}/{name}.out") if l.startswith("link in ")) < k:
        if time.time() > deadline:
            sys.exit(f"{name}: links not up")
        time.sleep(0.02)
PY
say "all $LINKS links up"

note "driving $Q queries"
python3 - "$RUN" "$Q" "$SEED" <<'PY'
import json, random, socket, statistics, struct, sys, threading, time
run, total, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
overlay = json.load(open(f"{run}/overlay.json"))
servents = [l.split() for l in open(f"{run}/pids")]
rnd = random.Random(seed * 31 + 1)
CLIENTS = 10

def memory():
    rss, hwm = [], []
    for _, pid, _ in servents:
        f = {}
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            f[k] = v.split()
        rss.append(int(f["VmRSS"][0]))
        hwm.append(int(f["VmHWM"][0]))
    return rss, hwm

class Client:
    """Listens for answers, holds a link to one servent."""
    def __init__(self, servent):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        host, port = servent.rsplit(":", 1)
        self.link = socket.create_connection((host, int(port)))
        self.link.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.link.sendall(struct.pack(">HH", 4, self.port))
        self.seq = 0
        self.answers = {}          # seq -> [arrival times]
        self.cond = threading.Condition()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            conn, _ = self.lsock.accept()
            data = b""
            conn.settimeout(10)
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            now = time.perf_counter()
            conn.close()
            while len(data) >= 8:
                kind, seq, size = struct.unpack(">HIH", data[:8])
                if kind == 4:                      # optional ID first
                    data = data[4:]
                    continue
                if kind != 9:
                    print(f"unexpected message type {kind}", file=sys.stderr)
                    break
                with self.cond:
                    self.answers.setdefault(seq, []).append(now)
                    self.cond.notify_all()
                data = data[8 + size:]

    def ask(self, key, timeout=2.0):
        seq = self.seq
        self.seq += 1
        k = key.encode()
        t0 = time.perf_counter()
        self.link.sendall(struct.pack(">HIH", 5, seq, len(k)) + k)
        with self.cond:
            self.cond.wait_for(lambda: seq in self.answers, timeout)
            got = self.answers.get(seq)
        return seq, t0, (got[0] - t0) if got else None

entries = rnd.sample([addr for _, _, addr in servents], CLIENTS)
clients = [Client(e) for e in entries]
latencies, lost, early = [], 0, None
start = time.perf_counter()
for i in range(total):
    c = clients[i % CLIENTS]
    key = f"k{rnd.randrange(overlay['keys']):05d}"
    _, _, lat = c.ask(key)
    if lat is None:
        lost += 1
    else:
        latencies.append(lat * 1000)
    if i + 1 == max(1, total // 10):
        early = memory()
elapsed = time.perf_counter() - start
time.sleep(1.0)                          # let any duplicate answer arrive
late = memory()

answers = [len(v) for c in clients for v in c.answers.values()]
dups = sum(a - 1 for a in answers if a > 1)
latencies.sort()
def pct(p):
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]
print(f"queries {total} in {elapsed:.1f} s from {CLIENTS} clients on random servents")
if latencies:
    print(f"first answer: p50 {pct(50):.2f} ms, p90 {pct(90):.2f} ms, p99 {pct(99):.2f} ms, "
          f"max {latencies[-1]:.2f} ms  (goal p99 < 20 ms: {'met' if pct(99) < 20 else 'MISSED'})")
print(f"answers: {len(answers)} queries answered, {lost} unanswered, {dups} duplicate answers "
      f"(goal none: {'met' if dups == 0 and lost == 0 else 'MISSED'})")
def kib(v):
    v = sorted(v)
    return f"median {v[len(v) // 2] / 1024:.1f} MiB, max {v[-1] / 1024:.1f} MiB"
print(f"memory after {max(1, total // 10)} queries: RSS {kib(early[0])}")
print(f"memory after {total} queries: RSS {kib(late[0])}; peak (VmHWM) {kib(late[1])}")
growth = max(l - e for l, e in zip(late[0], early[0]))
print(f"largest RSS growth of one servent between the two: {growth} KiB "
      f"(goal flat: {'met' if growth < 1024 else 'MISSED'})")
with open(f"{run}/queries", "w") as f:
    f.write(f"{total}\n")
PY
rc=$?

note "servent counters"
while read -r name pid _; do kill -TERM "$pid" 2>/dev/null; done <"$RUN/pids"
while read -r name pid _; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
done <"$RUN/pids"
python3 - "$RUN" "$LINKS" "$N" <<'PY'
import glob, re, sys
run, links, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
queries = int(open(f"{run}/queries").read())
tot = {}
for path in glob.glob(f"{run}/s*.out"):
    for line in open(path):
        if line.startswith("stats "):
            for k, v in re.findall(r"(\w+)=(\d+)", line):
                tot[k] = tot.get(k, 0) + int(v)
sent = tot.get("sent", 0)
print(f"flood messages sent: {sent} for {queries} queries = {sent / queries:.1f} per query")
print(f"links {links}: 2*links = {2 * links}, one forward per servent = "
      f"2*links - (servents - 1) = {2 * links - (n - 1)}")
print(f"duplicates dropped by servents: {tot.get('duplicates', 0) / queries:.1f} per query; "
      f"answers sent {tot.get('answers', 0)}; dropped {tot.get('dropped', 0)}")
ok = sent == queries * (2 * links - (n - 1)) and tot.get("dropped", 0) == 0
print(f"messages per query (goal: each servent forwards once): {'met' if ok else 'MISSED'}")
PY
exit "$rc"
