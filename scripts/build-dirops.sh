#!/usr/bin/env bash
# Builds the C client library of the remote directories, the course's
# dirops.h (r_opendir, r_readdir, r_closedir), once per rdird design:
#
#   scripts/build-dirops.sh OUT [stateful|stateless|rpc]...   (default: all)
#
#   OUT/include/dirops.h
#   OUT/stateful/libdirops.a    rdird --mode stateful
#   OUT/stateless/libdirops.a   rdird --mode stateless
#   OUT/rpc/libdirops.a         rdird --mode rpc (link with -ltirpc)
#
# and beside each library the course's examples linked against it
# (OUT/DESIGN/rls, OUT/DESIGN/rls_mix). A program of your own:
#
#   cc rls.c -I OUT/include OUT/stateless/libdirops.a -o rls
#   cc rls.c -I OUT/include OUT/rpc/libdirops.a -ltirpc -o rls
#   SERVIDOR=127.0.0.1 PUERTO=7654 ./rls docs
#
# Needs a C compiler; the RPC design also rpcgen and libtirpc-dev
# (scripts/install-deps.sh rpc). Sources: scripts/dirops/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=$ROOT/scripts/dirops
OUT=${1:?usage: scripts/build-dirops.sh OUT [stateful|stateless|rpc]...}
shift
designs=("$@")
[ ${#designs[@]} -gt 0 ] || designs=(stateful stateless rpc)
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g -Wall -Wextra}
command -v "$CC" >/dev/null || {
    echo "build-dirops: no C compiler ($CC): scripts/install-deps.sh rpc installs gcc" >&2
    exit 1
}
mkdir -p "$OUT/include"
OUT=$(cd "$OUT" && pwd)
cp "$SRC/dirops.h" "$OUT/include/dirops.h"

# library DESIGN EXTRA_CFLAGS OBJECT_SOURCES...: OUT/DESIGN/libdirops.a
library() {
    local design=$1 extra=$2 src obj objs=()
    shift 2
    mkdir -p "$OUT/$design/obj"
    for src in "$@"; do
        obj="$OUT/$design/obj/$(basename "$src" .c).o"
        # shellcheck disable=SC2086 # flags split on purpose
        "$CC" $CFLAGS $extra -I "$SRC" -I "$OUT/$design/obj" -c "$src" -o "$obj"
        objs+=("$obj")
    done
    rm -f "$OUT/$design/libdirops.a"
    ar rcs "$OUT/$design/libdirops.a" "${objs[@]}"
}

# examples DESIGN LIBS: the course's examples against OUT/DESIGN/libdirops.a
examples() {
    local design=$1 libs=$2 prog
    for prog in rls rls_mix; do
        # shellcheck disable=SC2086
        "$CC" $CFLAGS -I "$OUT/include" "$SRC/$prog.c" "$OUT/$design/libdirops.a" $libs \
            -o "$OUT/$design/$prog"
    done
}

status=0
for design in "${designs[@]}"; do
    case $design in
        stateful | stateless)
            library "$design" "" "$SRC/common.c" "$SRC/$design.c"
            examples "$design" ""
            ;;
        rpc)
            if ! command -v rpcgen >/dev/null || [ ! -e /usr/include/tirpc/rpc/rpc.h ]; then
                echo "build-dirops: rpc: needs rpcgen and libtirpc-dev (scripts/install-deps.sh rpc)" >&2
                status=1
                continue
            fi
            tirpc_cflags=$(pkg-config --cflags libtirpc 2>/dev/null || echo -I/usr/include/tirpc)
            tirpc_libs=$(pkg-config --libs libtirpc 2>/dev/null || echo -ltirpc)
            mkdir -p "$OUT/rpc/obj"
            # The stubs of the same rdir.x the server is built from.
            cp "$ROOT/rdir.x" "$OUT/rpc/obj/rdir.x"
            (cd "$OUT/rpc/obj" && rm -f rdir.h rdir_xdr.c rdir_clnt.c &&
                rpcgen -h rdir.x -o rdir.h && rpcgen -c rdir.x -o rdir_xdr.c &&
                rpcgen -l rdir.x -o rdir_clnt.c)
            # rpcgen's stubs carry unused variables: their warnings are not ours.
            CFLAGS="$CFLAGS -Wno-unused-variable -Wno-unused-parameter" \
                library rpc "$tirpc_cflags" "$SRC/common.c" "$SRC/rpc.c" \
                "$OUT/rpc/obj/rdir_xdr.c" "$OUT/rpc/obj/rdir_clnt.c"
            examples rpc "$tirpc_libs"
            ;;
        *)
            echo "build-dirops: no such design: $design (stateful, stateless, rpc)" >&2
            exit 2
            ;;
    esac
    echo "$OUT/$design/libdirops.a"
done
exit "$status"
