#!/usr/bin/env bash
# The container image's build steps, one subcommand each. deploy/Dockerfile RUNs these and nothing
# else, and test/deploy-build.test.ts runs them on this machine (where no image can be built: there
# is no container daemon), so a step that breaks fails CI before anyone builds an image.
#
# Every step runs in the current directory, which must hold the files the Dockerfile COPYs (the
# build stage's WORKDIR, or the test's copy of them). Steps are idempotent: packages already
# installed, a user that exists and a wasm build that is current are left as they are.
#
#   toolchain            clang + lld for wasm/build.sh (it installs them itself when missing; a step
#                        of their own keeps them in a cached image layer when sources change)
#   deps                 npm ci --ignore-scripts (the `prepare` script would build before the sources
#                        are there; wasm and ts below are that build, step by step)
#   wasm                 wasm/build.sh: liblc3 from Debian's source package → wasm/lc3.wasm, verified
#   ts                   the TypeScript build of what the service runs (deploy/tsconfig.image.json)
#   assemble DEST        the runtime tree: package.json, the lockfile, bin/, dist/{src,workers,wasm},
#                        wasm/lc3.wasm, node_modules (DEST must not exist or be empty)
#   prune DEST           npm prune --omit=dev in DEST (only the runtime dependencies stay)
#   smoke DEST           DEST's launcher answers `serve --help` and the service module loads,
#                        from DEST alone (no build tree beside it)
#   runtime-packages     tini (PID 1, forwards SIGTERM) and libjemalloc2 (bin/lc3-pusher preloads it)
#   runtime-user [ROOT]  the non-root user lc3 (uid/gid 10001) and /data/{spool,store} owned by it;
#                        ROOT (default /) is a filesystem root, so tests can create it in a scratch tree
#
# Environment: BUILD_STEPS_CLEAN_APT=1 deletes apt's lists after installing (image layers only);
# BUILD_STEPS_LINK=1 makes `assemble` hard-link node_modules instead of copying it (tests: fast,
# and npm's prune only unlinks, so the source tree keeps every file; the one file npm rewrites in
# place, node_modules/.package-lock.json, is always copied).
set -euo pipefail

APP_UID=10001
APP_USER=lc3

die() { echo "build-steps.sh: $*" >&2; exit 1; }
log() { echo "build-steps.sh: $*" >&2; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# apt-get install of the packages not installed yet.
apt_install() {
  local missing=() p
  for p in "$@"; do installed "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then log "already installed: $*"; return 0; fi
  [ "$(id -u)" = 0 ] || die "need root to install ${missing[*]} (run: apt-get install -y ${missing[*]})"
  log "installing ${missing[*]}"
  apt-get update -qq || die "apt-get update failed; fix apt, then: apt-get install -y ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "could not install ${missing[*]}"
  if [ "${BUILD_STEPS_CLEAN_APT:-}" = 1 ]; then rm -rf /var/lib/apt/lists/*; fi
}

need_file() { [ -e "$1" ] || die "$2: $1 is missing (run in the directory holding the Dockerfile's COPYs${3:+; $3})"; }

tool() { # a tool from the local node_modules (after `deps`)
  local bin="node_modules/.bin/$1"
  [ -x "$bin" ] || die "$bin is missing: run \`$0 deps\` first"
  echo "$bin"
}

step_toolchain() { apt_install clang lld; }

step_deps() {
  need_file package-lock.json deps
  npm ci --ignore-scripts --no-audit --no-fund
}

step_wasm() {
  need_file wasm/build.sh wasm
  bash wasm/build.sh
}

step_ts() {
  need_file deploy/tsconfig.image.json ts
  "$(tool tsc)" -p deploy/tsconfig.image.json
  need_file dist/src/cli.js ts "the TypeScript build wrote no dist/src/cli.js"
}

step_assemble() {
  local dest="${1:-}"
  [ -n "$dest" ] || die "assemble: which directory? (assemble DEST)"
  if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then die "assemble: $dest is not empty"; fi
  local f
  for f in package.json package-lock.json bin dist/src dist/workers dist/wasm wasm/lc3.wasm node_modules; do
    need_file "$f" assemble "build it first: deps, wasm, ts"
  done
  mkdir -p "$dest/dist" "$dest/wasm"
  cp -a package.json package-lock.json bin "$dest/"
  cp -a dist/src dist/workers dist/wasm "$dest/dist/"
  cp -a wasm/lc3.wasm "$dest/wasm/"
  # The liblc3 version the wasm was built from (pusher_build_info{liblc3}).
  if [ -f wasm/.build/version ]; then mkdir -p "$dest/wasm/.build" && cp -a wasm/.build/version "$dest/wasm/.build/"; fi
  if [ "${BUILD_STEPS_LINK:-}" = 1 ]; then
    cp -al node_modules "$dest/"
    if [ -e node_modules/.package-lock.json ]; then
      rm -f "$dest/node_modules/.package-lock.json"
      cp -a node_modules/.package-lock.json "$dest/node_modules/"
    fi
  else
    cp -a node_modules "$dest/"
  fi
  # The launchers are run directly (ENTRYPOINT, Kubernetes command): they must be executable.
  chmod 0755 "$dest"/bin/*
  log "assembled $dest"
}

step_prune() {
  local dest="${1:-}"
  [ -n "$dest" ] && [ -f "$dest/package.json" ] || die "prune: ${dest:-(none)} has no package.json (prune DEST, after assemble)"
  (cd "$dest" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund >&2)
}

step_smoke() {
  local dest="${1:-}"
  [ -n "$dest" ] && [ -d "$dest/bin" ] || die "smoke: ${dest:-(none)} has no bin/ (smoke DEST, after assemble)"
  local launcher="$dest/bin/lc3-pusher"
  [ -x "$launcher" ] || launcher="$dest/bin/lc3-pusher.cjs"
  # A clean environment (no NODE_OPTIONS or LD_PRELOAD from the caller); glibc malloc, because the
  # build stage need not have jemalloc.
  env -i PATH="$PATH" HOME=/tmp LC3_PUSHER_ALLOCATOR=system "$launcher" serve --help >/dev/null \
    || die "smoke: $launcher serve --help failed"
  # `--help` loads little; importing the service module loads every runtime dependency the main
  # thread has (a package pruned as a devDependency fails here, not in production).
  (cd "$dest" && env -i PATH="$PATH" HOME=/tmp node --input-type=module -e "await import('./dist/src/serve.js')") \
    || die "smoke: $dest/dist/src/serve.js does not load (a runtime dependency missing after prune?)"
  log "smoke: $launcher answers and the service module loads"
}

step_runtime_packages() { apt_install tini libjemalloc2; }

step_runtime_user() {
  local root="${1:-/}" prefix=()
  [ "$root" = / ] || prefix=(--prefix "$root")
  if grep -q "^$APP_USER:" "$root/etc/passwd" 2>/dev/null; then
    log "user $APP_USER exists"
  else
    [ "$(id -u)" = 0 ] || die "need root to create user $APP_USER"
    groupadd "${prefix[@]}" --gid "$APP_UID" "$APP_USER"
    useradd "${prefix[@]}" --uid "$APP_UID" --gid "$APP_UID" --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin "$APP_USER"
  fi
  # The spool and the local store: volumes in the image, owned by the user so it can write there.
  mkdir -p "$root/data/spool" "$root/data/store"
  chown "$APP_UID:$APP_UID" "$root/data" "$root/data/spool" "$root/data/store"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  toolchain) step_toolchain ;;
  deps) step_deps ;;
  wasm) step_wasm ;;
  ts) step_ts ;;
  assemble) step_assemble "$@" ;;
  prune) step_prune "$@" ;;
  smoke) step_smoke "$@" ;;
  runtime-packages) step_runtime_packages ;;
  runtime-user) step_runtime_user "$@" ;;
  *) die "unknown step '${cmd}'; steps: toolchain deps wasm ts assemble prune smoke runtime-packages runtime-user" ;;
esac
