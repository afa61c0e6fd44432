#!/usr/bin/env bash
# Builds wasm/lc3.wasm from Debian's liblc3 source package (DESIGN §4).
#
# Nothing third-party is committed: the source tarball is fetched with an isolated apt state
# (its own lists and cache under wasm/.build, so the machine's apt state is untouched), verified
# against the signed Sources index by apt itself, and compiled with clang/lld for wasm32.
# Idempotent: a stamp over (this script, the glue, the tarball hash) skips work when current.
#
# Environment:
#   LC3_DEBIAN_SUITE   suite to take liblc3 from (default: trixie, which has 1.1.3+dfsg)
#   LC3_DEBIAN_MIRROR  archive URI (default: the first non-security Debian URI of this machine's apt)
#   LC3_WASM_FORCE=1   rebuild even if current
#   LC3_CLANG          the C compiler (default: clang; e.g. clang-19 — every version gives the same bytes of audio)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="$here/.build"
out="$here/lc3.wasm"
suite="${LC3_DEBIAN_SUITE:-trixie}"

die() { echo "wasm/build.sh: $*" >&2; exit 1; }
log() { echo "wasm/build.sh: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@";
  elif command -v sudo >/dev/null 2>&1; then sudo "$@";
  else die "need root to run: $* (run it by hand, then npm run build)"; fi
}

# 1. Toolchain: clang + wasm-ld (lld), from Debian where missing; and jemalloc, which the
#    launcher (bin/lc3-pusher) preloads: glibc's malloc fragments under the service's threads
#    (issue 13). Not a build tool, but this is the step `npm install` runs as root.
need_pkgs=()
command -v clang >/dev/null 2>&1 || need_pkgs+=(clang)
command -v wasm-ld >/dev/null 2>&1 || need_pkgs+=(lld)
[ -f "/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2" ] || { command -v dpkg >/dev/null 2>&1 && dpkg -s libjemalloc2 >/dev/null 2>&1; } \
  || need_pkgs+=(libjemalloc2)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]} from Debian"
  as_root apt-get update -qq || die "apt-get update failed; fix apt, then: apt-get install -y ${need_pkgs[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
    || die "could not install ${need_pkgs[*]}; run: apt-get install -y ${need_pkgs[*]}"
fi

# 2. The liblc3 source tarball, through an isolated apt state.
mirror="${LC3_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  # deb822 files (URIs: a b) and one-line files (deb [opts] URI suite comp); skip security archives.
  mirror="$( { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {for (i=2;i<=NF;i++) print $i}';
               cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
                 | sed -E 's/\[[^]]*\]//' | awk '$1=="deb"||$1=="deb-src" {print $2}'; } \
             | grep -E '/debian/?$' | grep -v security | head -n1 || true)"
fi
[ -n "$mirror" ] || die "no Debian archive found in /etc/apt; set LC3_DEBIAN_MIRROR=<archive URI>"

apt_dir="$build/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts" "$apt_dir/prefs"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || die "missing $keyring; run: apt-get install -y debian-archive-keyring"
echo "deb-src [signed-by=$keyring] $mirror $suite main" > "$apt_dir/sources.list"
apt_opts=(-o "Dir::State=$apt_dir" -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::State::status=/dev/null"
          -o "Dir::Cache=$apt_dir/cache" -o "Dir::Etc::SourceList=$apt_dir/sources.list"
          -o "Dir::Etc::SourceParts=$apt_dir/parts" -o "Dir::Etc::PreferencesParts=$apt_dir/prefs"
          -o "Dir::Etc::Preferences=/dev/null" -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")

uris="$apt_dir/uris"
if [ ! -s "$uris" ] || [ -n "$(find "$uris" -mmin +1440 2>/dev/null)" ]; then
  log "reading liblc3 source index from $mirror ($suite)"
  apt-get "${apt_opts[@]}" -qq update \
    || die "could not read $mirror $suite Sources; check the network or set LC3_DEBIAN_MIRROR / LC3_DEBIAN_SUITE"
  # --print-uris verifies nothing by itself; the hashes it prints come from the signed index.
  (cd "$apt_dir" && apt-get "${apt_opts[@]}" -qq source --print-uris liblc3) > "$uris.tmp" \
    || die "no liblc3 source package in $suite"
  mv "$uris.tmp" "$uris"
fi
orig_line="$(grep -E "\.orig\.tar\.[a-z]+' " "$uris" | head -n1)"
[ -n "$orig_line" ] || die "no liblc3 orig tarball listed in $uris"
read -r orig_uri orig_name _orig_size orig_hash <<<"$orig_line"
orig_uri="${orig_uri//\'/}"
version="$(sed -E 's/^liblc3_([^+]*)(\+dfsg)?\.orig.*/\1/' <<<"$orig_name")"
dpkg --compare-versions "$version" ge 1.1 || die "liblc3 $version in $suite is older than 1.1 (need the wasm/ headers); set LC3_DEBIAN_SUITE"

tarball="$build/$orig_name"
if [ ! -f "$tarball" ]; then
  log "downloading $orig_name"
  # apt's own downloader checks the hash from the signed index.
  /usr/lib/apt/apt-helper download-file "$orig_uri" "$tarball.part" "$orig_hash" >/dev/null \
    || die "download of $orig_uri failed"
  mv "$tarball.part" "$tarball"
fi

stamp="$build/stamp"
want="$(cat "${BASH_SOURCE[0]}" "$here/glue.c" "$here/check.mjs" | sha256sum | cut -c1-16) $orig_hash ${LC3_CLANG:-clang}"
if [ -z "${LC3_WASM_FORCE:-}" ] && [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  log "lc3.wasm is current (liblc3 $version)"
  exit 0
fi

src="$build/liblc3-$version"
rm -rf "$src" && mkdir -p "$src"
tar -xf "$tarball" -C "$src" --strip-components=1
[ -f "$src/wasm/math.h" ] || die "liblc3 $version has no wasm/ headers"

# 3. Compile, then link with wasm-ld directly. Not through the clang driver: when binaryen is
#    installed, clang runs `wasm-opt` on its output by itself, without the feature flags (clang 14
#    then fails to link a SIMD build, and other versions would change the code behind our back).
#
#    Float semantics: strict IEEE-754, no -ffast-math. With -ffast-math clang may reassociate
#    liblc3's fast_exp2f (x + 0x1.8p20f − 0x1.8p20f) and decoded audio is off by hundreds of LSB:
#    clang 14 unless -fno-finite-math-only is given, clang 16, 19 and 22 even then (measured). Without
#    it, clang computes every float operation in source order, exactly as gcc does natively: the
#    wasm decodes and encodes bit-identically to native liblc3 built from the same source
#    (scripts/build-native.sh), and no clang version can miscompile fast_exp2f. It costs ~1 % in
#    decoding and ~3 % in encoding (measured against the -ffast-math build). -fno-finite-math-only
#    stays as the guard should -ffast-math come back.
#
#    No -msimd128: clang's auto-vectorised loops make decoding 4-7 % slower under V8 with clang 14
#    and 16, for ~1 % faster encoding (clang 19: decoding even, encoding ~7 % faster). Also measured and not worth it:
#    -O2 and -Os (same or slower), -fno-unroll-loops (3 % slower), -flto (encoding 15 % slower),
#    wasm-opt -O3/-O4 (decoding ±2 %, encoding 5-13 % slower), -mnontrapping-fptoint and
#    -msign-ext (within noise; the former would also make float→int overflow saturate where
#    native x86 gives INT_MIN). clang 16, 19 and 22 (LC3_CLANG=clang-19 …) are within ±3 % of 14.
cc="${LC3_CLANG:-clang}"
cflags=(--target=wasm32 -std=c11 -O3 -fno-math-errno -fno-finite-math-only -mbulk-memory)
log "compiling liblc3 $version to wasm32 ($("$cc" --version | head -n1))"
objs="$build/obj"
rm -rf "$objs" && mkdir -p "$objs"
pids=()
for c in "$src"/src/*.c "$here/glue.c"; do
  "$cc" "${cflags[@]}" -I"$src/wasm" -I"$src/include" -c "$c" -o "$objs/$(basename "$c" .c).o" & pids+=($!)
done
for p in "${pids[@]}"; do
  wait "$p" || die "$cc failed; run: apt-get install -y clang lld, then LC3_WASM_FORCE=1 npm run build:wasm"
done
"$("$cc" -print-prog-name=wasm-ld)" --no-entry --export-dynamic --export=__heap_base --strip-all \
  "$objs"/*.o -o "$out.tmp" || die "wasm-ld failed; run: apt-get install -y lld"

# 4. Verify: no imports, every export the loader needs, and a known-answer test: 240 frames of
#    four configurations encoded and decoded (with packet-loss concealment) must hash to what
#    native liblc3 of the same version computes (wasm/check.mjs).
node "$here/check.mjs" "$out.tmp" "$version" || die "verification of lc3.wasm failed"
mv "$out.tmp" "$out"
echo "$want" > "$stamp"
echo "$version" > "$build/version"
echo "$cc ${cflags[*]}" > "$build/cflags"
log "built $out ($(stat -c %s "$out") bytes, liblc3 $version)"
