#!/usr/bin/env bash
# The swarm demo: one tracker, one seed sharing a file, and 4 peers that
# fetch it rarest first from the seed and from each other, checking every
# piece, then keep seeding. The seed's upload is capped so the peers must
# trade pieces among themselves.
#
#   scripts/test.sh swarm          (headless; exits 0 only if all 4 peers end
#                                   with a file byte-identical to the original)
#   scripts/test.sh tmux swarm     (the same processes in tmux panes, slowed down)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

SIZE_MIB=${SIZE_MIB:-8}
SEED_LIMIT=${SEED_LIMIT:-4M}
PEERS=4
PERIODS=(--ping-interval 1 --report-interval 2)

demo_init swarm
note "swarm demo in $RUN"
mkdir -p "$RUN/seed"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$RUN/seed/movie.bin"

start tracker bt-tracker --listen 127.0.0.1:0 --cleanup-interval 3 || exit 2
say "tracker on $ADDR_tracker"
start seed bt-peer share "$RUN/seed/movie.bin" --tracker "$ADDR_tracker" \
    --listen 127.0.0.1:0 --upload-limit "$SEED_LIMIT" --piece-size 64K "${PERIODS[@]}" || exit 2
wait_line "$RUN/seed.out" '^swarm ' 30 || exit 2
say "seed on $ADDR_seed: $(grep -m1 '^sharing ' "$RUN/seed.out")"
say "$(grep -m1 '^swarm ' "$RUN/seed.out")"

for i in $(seq 1 $PEERS); do
    mkdir -p "$RUN/peer$i"
    start "peer$i" bt-peer fetch movie.bin --tracker "$ADDR_tracker" --out "$RUN/peer$i" \
        -v --listen 127.0.0.1:0 "${PERIODS[@]}" || exit 2
    addr_var="ADDR_peer$i"
    say "peer$i on ${!addr_var}"
done

for i in $(seq 1 $PEERS); do
    step "peer$i completes its download" wait_line "$RUN/peer$i.out" '^complete: ' 60
done
for i in $(seq 1 $PEERS); do
    step "peer$i holds a byte-identical copy" cmp -s "$RUN/seed/movie.bin" "$RUN/peer$i/movie.bin"
done

traded() {
    local total=0 i n
    for i in $(seq 1 $PEERS); do
        n=$(grep '^piece ' "$RUN/peer$i.out" | grep -vcF "from $ADDR_seed ")
        say "   peer$i: $(grep -c '^piece ' "$RUN/peer$i.out") pieces, $n of them from other peers"
        total=$((total + n))
    done
    [ "$total" -gt 0 ]
}
step "peers traded pieces among themselves" traded
step "the tracker registered the seed and all $PEERS peers" \
    test "$(grep -c '^registered ' "$RUN/tracker.out")" -ge $((PEERS + 1))
step "every piece was checked (no piece failed)" \
    bash -c "! grep -q 'failed its check' '$RUN'/peer*.out"

say "logs: $RUN/*.out, $RUN/*.err"
summary
