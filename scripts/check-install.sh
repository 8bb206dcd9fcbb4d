#!/usr/bin/env bash
# Checks the README's install command where rustup's `rls` proxy is in the
# way: runs it into a temporary root whose bin/rls is a symlink to a fake
# `rustup`, as in ~/.cargo/bin, then checks that bin/rls is peerkit's, that
# the fake rustup is untouched, and that every program is installed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
command=$(sed -n 's/^\(cargo install .*\)$/\1/p' README.md | head -n1)
if [ -z "$command" ]; then
    echo "check-install: no 'cargo install' line in README.md" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
printf '#!/bin/sh\necho "fake rustup"\n' >"$tmp/bin/rustup"
chmod +x "$tmp/bin/rustup"
ln -s rustup "$tmp/bin/rls"
echo "check-install: $command --root $tmp (bin/rls -> rustup)"
# shellcheck disable=SC2086 # the README's command, split into words
$command --root "$tmp" --quiet
test ! -L "$tmp/bin/rls"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
test "$("$tmp/bin/rls" --version)" = "rls $version"
test "$("$tmp/bin/rustup")" = "fake rustup"
for f in src/bin/*.rs; do
    test -x "$tmp/bin/$(basename "$f" .rs)"
done
echo "check-install: ok: rls replaced the proxy link, rustup untouched, $(ls src/bin | wc -l) programs installed"
