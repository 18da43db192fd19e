#!/usr/bin/env bash
# Builds the local media server (tools/xiu-lite: xiu's RTSP/RTMP engine + a MediaMTX-style
# /v3/paths/list) and caches the binary, for the native e2e backend and `make demo` on
# machines where MediaMTX cannot run.
#
#   ${LIVEDUB_CACHE:-/var/cache/livedub}/bin/xiu-lite-<hash>   the cached build
#   ${LIVEDUB_CACHE:-/var/cache/livedub}/bin/xiu-lite          stable symlink to it
#
# <hash> covers tools/xiu-lite's Cargo.toml, Cargo.lock, src/ and patches/, so an edit to the tool
# rebuilds it and an unchanged tree reuses the cached binary (idempotent, ~0 s).
# The build uses its own target dir (${LIVEDUB_CACHE}/xiu-lite-target) and --locked, so the
# workspace's builds are not slowed down by its dependency tree. Prints the binary's path
# on stdout as its last line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tools/xiu-lite"
CACHE="${LIVEDUB_CACHE:-/var/cache/livedub}"
BIN_DIR="$CACHE/bin"
TARGET_DIR="$CACHE/xiu-lite-target"

log() { printf '[install-media-server] %s\n' "$*" >&2; }

command -v cargo >/dev/null || { log "cargo not found: install Rust (https://rustup.rs) first"; exit 2; }
[ -f "$SRC/Cargo.lock" ] || { log "missing $SRC/Cargo.lock (it must be committed)"; exit 2; }

hash=$(cd "$SRC" && { cat Cargo.toml Cargo.lock; find src patches -type f -print0 | sort -z | xargs -0 sha256sum; } \
  | sha256sum | cut -c1-16)
cached="$BIN_DIR/xiu-lite-$hash"
mkdir -p "$BIN_DIR"

if [ -x "$cached" ]; then
  log "xiu-lite $hash already built: $cached"
else
  log "building xiu-lite $hash (release; cold build takes about 4-5 minutes on 2 cores)"
  start=$(date +%s)
  (cd "$SRC" && CARGO_TARGET_DIR="$TARGET_DIR" nice cargo build --release --locked)
  log "built in $(( $(date +%s) - start )) s"
  cp "$TARGET_DIR/release/xiu-lite" "$cached.partial"
  mv "$cached.partial" "$cached"
fi

ln -sfn "$(basename "$cached")" "$BIN_DIR/xiu-lite.partial"
mv -T "$BIN_DIR/xiu-lite.partial" "$BIN_DIR/xiu-lite"
# Keep the current build and the previous one; older builds are just disk space.
ls -1t "$BIN_DIR"/xiu-lite-* 2>/dev/null | tail -n +3 | xargs -r rm -f
"$BIN_DIR/xiu-lite" --version >/dev/null
log "ready: $BIN_DIR/xiu-lite -> $(basename "$cached")"
echo "$BIN_DIR/xiu-lite"
