#!/usr/bin/env bash
# Fuzzes every parser that reads bytes from a peer (fuzz/fuzz_targets/),
# with cargo-fuzz on the nightly toolchain.
#
#   scripts/fuzz.sh                  every target for $FUZZ_SECS seconds (20)
#   scripts/fuzz.sh --secs N [T...]  the named targets (all without one) for N s
#   scripts/fuzz.sh --seeds          only (re)write the seed corpora
#
# Seeds: the unit tests' golden bytes and round-trip cases (written by
# `cargo test --lib` with PEERKIT_FUZZ_SEEDS set) and testdata's key-value
# files, in fuzz/corpus/TARGET (not committed; the fuzzers grow it).
# Regression inputs, every crash found once, live in fuzz/regressions/TARGET
# and are replayed first. A crash fails the run; its input is in
# fuzz/artifacts/TARGET. Prints, per target: executions, seconds, crashes.
# Says SKIPPED and passes where nightly or cargo-fuzz cannot be had.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/lib.sh"
cd "$ROOT"

SECS=${FUZZ_SECS:-20}
SEEDS_ONLY=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
    --secs) SECS=$2; shift 2 ;;
    --seeds) SEEDS_ONLY=1; shift ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) say "scripts/fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
    esac
done

write_seeds() {
    note "seed corpora from the unit tests' golden bytes"
    mkdir -p fuzz/corpus
    PEERKIT_FUZZ_SEEDS="$ROOT/fuzz/corpus" cargo test --lib --quiet >/dev/null 2>&1
    mkdir -p fuzz/corpus/kv_file
    find testdata -name '*.kv' -exec cp {} fuzz/corpus/kv_file/ \;
    for d in fuzz/corpus/*/; do
        say "  $(basename "$d"): $(find "$d" -type f | wc -l) seeds"
    done
}

if [ "$SEEDS_ONLY" = 1 ]; then
    write_seeds
    exit 0
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1 ||
    ! { command -v cargo-fuzz >/dev/null || "$ROOT/scripts/install-deps.sh" fuzz; } ||
    ! command -v cargo-fuzz >/dev/null; then
    say "SKIPPED: fuzzing needs the nightly toolchain and cargo-fuzz (scripts/install-deps.sh fuzz)"
    exit 0
fi

write_seeds
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi
note "building ${#targets[@]} fuzz targets"
(cd fuzz && cargo +nightly fuzz build)
# Run the built binaries themselves: `cargo fuzz run` would rebuild.
BIN=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release

LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT
failed=()
printf '%-16s %12s %8s %8s\n' target executions seconds crashes >"$LOG/table"
for t in "${targets[@]}"; do
    note "$t: ${SECS} s"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    crashes=0
    if [ -d "fuzz/regressions/$t" ]; then
        # Every input that once crashed, replayed.
        if ! "$BIN/$t" -runs=0 "fuzz/regressions/$t" >"$LOG/$t.reg" 2>&1; then
            tail -n 30 "$LOG/$t.reg"
            crashes=$((crashes + 1))
        fi
    fi
    # 64 MiB for one allocation and 512 MiB in all: the targets check a
    # tighter bound themselves (see fuzz/src/lib.rs).
    if ! "$BIN/$t" -max_total_time="$SECS" -malloc_limit_mb=64 -rss_limit_mb=512 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
        "fuzz/corpus/$t" >"$LOG/$t.out" 2>&1; then
        tail -n 40 "$LOG/$t.out"
        crashes=$((crashes + 1))
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG/$t.out" | tail -n1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$LOG/$t.out" | tail -n1)
    printf '%-16s %12s %8s %8s\n' "$t" "${runs:-?}" "${took:-?}" "$crashes" >>"$LOG/table"
    [ "$crashes" -eq 0 ] || failed+=("$t")
done
note "fuzzing: ${SECS} s per target"
cat "$LOG/table"
if [ ${#failed[@]} -gt 0 ]; then
    say "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
