#!/usr/bin/env bash
# Builds liblc3's own elc3/dlc3 natively (gcc -O3) from the same Debian source package that
# wasm/build.sh compiled to WebAssembly, into wasm/.build/native/. These are the exact-version
# references for the tests (Debian bookworm's liblc3-tools is 1.0.1, which differs from 1.1.x by
# up to a few LSB on rare samples) and the native baselines of scripts/bench-codec.ts.
#
# Float semantics: the tools and bench-codec are built without -ffast-math, i.e. with the same
# IEEE-754 float semantics as wasm/lc3.wasm (no reassociation), and wasm and native then produce
# bit-identical PCM and LC3 bytes. bench-codec-fastmath uses liblc3's own release flags
# (-O3 -ffast-math, as its Makefile and meson build it) for the speed comparison only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/wasm/build.sh"
version="$(cat "$root/wasm/.build/version")"
src="$root/wasm/.build/liblc3-$version"
out="$root/wasm/.build/native"
stamp="$out/stamp"
want="$(cat "${BASH_SOURCE[0]}" "$root/scripts/bench-codec-native.c" | sha256sum | cut -c1-16) $version"
if [ -x "$out/dlc3" ] && [ -x "$out/bench-codec-fastmath" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then exit 0; fi
command -v gcc >/dev/null || { echo "scripts/build-native.sh: gcc missing; run: apt-get install -y gcc" >&2; exit 1; }
mkdir -p "$out"
cflags=(-std=gnu11 -O3 -I"$src/include" -I"$src/tools")
# -ffp-contract=off: no fused multiply-add where the CPU has one by default (arm64); wasm has none.
strict=(-ffp-contract=off)
gcc "${cflags[@]}" "${strict[@]}" "$src"/src/*.c "$src"/tools/elc3.c "$src"/tools/lc3bin.c "$src"/tools/wave.c -lm -o "$out/elc3"
gcc "${cflags[@]}" "${strict[@]}" "$src"/src/*.c "$src"/tools/dlc3.c "$src"/tools/lc3bin.c "$src"/tools/wave.c -lm -o "$out/dlc3"
gcc "${cflags[@]}" "${strict[@]}" "$src"/src/*.c "$root/scripts/bench-codec-native.c" -lm -o "$out/bench-codec"
gcc "${cflags[@]}" -ffast-math "$src"/src/*.c "$root/scripts/bench-codec-native.c" -lm -o "$out/bench-codec-fastmath"
echo "$want" > "$stamp"
echo "scripts/build-native.sh: built elc3, dlc3, bench-codec, bench-codec-fastmath (liblc3 $version) in $out" >&2
