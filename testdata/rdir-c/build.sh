#!/usr/bin/env bash
# Builds rls-c, the C client of rdir.x, into OUT (sources stay here):
#   testdata/rdir-c/build.sh OUT
# Needs rpcgen (rpcsvc-proto), gcc and libtirpc-dev: scripts/install-deps.sh rpc.
set -euo pipefail
SRC=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$SRC/../.." && pwd)
OUT=${1:?usage: build.sh OUT}
mkdir -p "$OUT"
cp "$ROOT/rdir.x" "$OUT/rdir.x"
cd "$OUT"
rm -f rdir.h rdir_xdr.c rdir_clnt.c
rpcgen -h rdir.x -o rdir.h
rpcgen -c rdir.x -o rdir_xdr.c
rpcgen -l rdir.x -o rdir_clnt.c
if pkg-config --exists libtirpc 2>/dev/null; then
    CFLAGS_TIRPC=$(pkg-config --cflags libtirpc)
    LIBS_TIRPC=$(pkg-config --libs libtirpc)
else
    CFLAGS_TIRPC=-I/usr/include/tirpc
    LIBS_TIRPC=-ltirpc
fi
# shellcheck disable=SC2086 # word splitting of the flags is intended
gcc -O2 -I. $CFLAGS_TIRPC -o rls-c "$SRC/rls.c" "$SRC/dirops.c" rdir_clnt.c rdir_xdr.c $LIBS_TIRPC
echo "$OUT/rls-c"
