#!/usr/bin/env bash
# Everything the tests need beyond `npm install`: Debian's liblc3-tools (reference codec),
# espeak-ng + sox (test speech), libjemalloc2 (the launcher's allocator), redis-server (the Redis settings tests start their own), the wasm build, and the exact-version native reference tools.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
missing=()
command -v dlc3 >/dev/null 2>&1 || missing+=(liblc3-tools)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The launcher's allocator (wasm/build.sh installs it too; the launcher and chaos tests expect it).
[ -f "/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2" ] || dpkg -s libjemalloc2 >/dev/null 2>&1 || missing+=(libjemalloc2)
if [ ${#missing[@]} -gt 0 ]; then
  run=(); [ "$(id -u)" = 0 ] || run=(sudo)
  echo "test-deps: installing ${missing[*]} from Debian" >&2
  "${run[@]}" apt-get update -qq
  "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || { echo "test-deps: run: apt-get install -y ${missing[*]}" >&2; exit 1; }
fi
bash "$root/scripts/build-native.sh"
