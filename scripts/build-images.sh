#!/usr/bin/env bash
# Builds the images of the two e2e compositions WITHOUT a container registry (`make images`):
#
#   livedub/base:<role>-<hash>            Debian bookworm from Debian's archive: mmdebstrap
#                                         (mirror = this host's apt sources) | docker import
#   livedub/sts-service:local-<hash>      base + the host-built sts-service + the Whisper models
#   livedub/media-service:local-<hash>    base + the host-built media-service (GStreamer runtime)
#   livedub/mediamtx-local:<hash>         base + xiu-lite: the MediaMTX stand-in (same ports,
#                                         same /v3/paths/list API, same wget healthcheck)
#
# Every tag is a content hash (package list + apt sources for a base; base + binary + models +
# Dockerfile for a service image), so an unchanged tree builds nothing (~2 s). The base root
# file systems are also kept as tarballs in $LIVEDUB_CACHE/images, so an engine that starts
# empty (a fresh machine with a warm cache) re-imports them instead of running mmdebstrap.
#
# The result is written to $LIVEDUB_CACHE/images.env (STS_IMAGE, MEDIA_IMAGE, MEDIAMTX_IMAGE),
# the variables the compose files read; `make test-compose` loads it. Hosts with a registry
# use the production path instead: `docker compose -f apps/<svc>/docker-compose.e2e.yml build`.
#
# Binaries: $STS_SERVICE_BIN, $MEDIA_SERVICE_BIN, $XIU_LITE_BIN (the Makefile sets them to the
# builds the native suite runs). Models: $MODEL_DIR/<name> for each name in $IMAGE_MODELS.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${LIVEDUB_CACHE:-/var/cache/livedub}"
TARGET="${CARGO_TARGET_DIR:-$CACHE/target}"
STS_BIN="${STS_SERVICE_BIN:-$TARGET/debug/sts-service}"
MEDIA_BIN="${MEDIA_SERVICE_BIN:-$TARGET/debug/media-service}"
XIU_BIN="${XIU_LITE_BIN:-$CACHE/bin/xiu-lite}"
MODELS="${MODEL_DIR:-$CACHE/models}"
IMAGE_MODELS="${IMAGE_MODELS:-whisper-tiny.en}"
IMG_CACHE="$CACHE/images"
ENV_OUT="$CACHE/images.env"
# Bump when the way a base is made changes (not its package list, which is hashed).
BASE_RECIPE=1

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

command -v docker >/dev/null || die "docker not found: this target needs a Docker Engine (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer \`docker info\`: start it (systemctl start docker) or run the native suite (make test)"
for bin in "$STS_BIN" "$MEDIA_BIN" "$XIU_BIN"; do
  [ -x "$bin" ] || die "$bin not found: run \`make build media-server\` first (or set STS_SERVICE_BIN/MEDIA_SERVICE_BIN/XIU_LITE_BIN)"
done
for m in $IMAGE_MODELS; do
  [ -s "$MODELS/$m/model.bin" ] || die "model $m not in $MODELS: run \`make models\` first"
done
mkdir -p "$IMG_CACHE"

# ---- the Debian mirror: this host's apt sources for bookworm, never a hard-coded host ----
apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    grep -Eq '^[[:space:]]*(deb[[:space:]].*bookworm|Suites:.*bookworm)' "$f" && echo "$f"
  done
  return 0
}
mapfile -t SOURCES < <(apt_sources)
[ ${#SOURCES[@]} -gt 0 ] || die "no bookworm entry in this host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d): mmdebstrap needs a Debian mirror"

ensure_mmdebstrap() {
  command -v mmdebstrap >/dev/null && return
  log "installing mmdebstrap (Debian package)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mmdebstrap >/dev/null \
    || { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mmdebstrap >/dev/null; }
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Debian packages that hold the shared libraries a binary links (so the base always has them).
packages_for_libs() {
  local bin=$1 lib real
  ldd "$bin" | awk '/=> \// { print $3 }' | while read -r lib; do
    real=$(readlink -f "$lib")
    dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || true
  done | cut -d: -f1 | sort -u
}

# base ROLE PACKAGE... -> prints the image tag
base_image() {
  local role=$1; shift
  local pkgs; pkgs=$(printf '%s\n' "$@" | sort -u | paste -sd, -)
  local hash; hash=$( { echo "recipe=$BASE_RECIPE role=$role"; echo "$pkgs"; cat "${SOURCES[@]}"; } | sha256sum | cut -c1-16)
  local tag="livedub/base:$role-$hash" tarball="$IMG_CACHE/base-$role-$hash.tar"
  if image_exists "$tag"; then
    log "base $role: $tag present"
  else
    if [ ! -s "$tarball" ]; then
      ensure_mmdebstrap
      log "base $role: mmdebstrap bookworm ($(echo "$pkgs" | tr ',' ' ' | wc -w) packages requested, mirror from ${SOURCES[*]}); about a minute"
      local start=$SECONDS
      mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
        --aptopt='Apt::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --include="$pkgs" bookworm "$tarball.partial" "${SOURCES[@]}" >&2
      mv "$tarball.partial" "$tarball"
      log "base $role: root file system made in $((SECONDS - start)) s"
    fi
    docker import --change 'CMD ["/bin/bash"]' "$tarball" "$tag" >/dev/null
    log "base $role: imported $tag"
  fi
  # Older bases of this role are just disk space.
  ls -1t "$IMG_CACHE"/base-"$role"-*.tar 2>/dev/null | tail -n +2 | xargs -r rm -f
  echo "$tag"
}

# service NAME DOCKERFILE BASE CONTEXT_DIR -> builds livedub/NAME:<hash> from a staged context
service_image() {
  local name=$1 dockerfile=$2 base=$3 ctx=$4 prefix=${5-local-}
  cp "$dockerfile" "$ctx/Dockerfile"
  local base_id; base_id=$(docker image inspect -f '{{.Id}}' "$base")
  local hash; hash=$( { echo "$base_id"; (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum); } | sha256sum | cut -c1-16)
  local tag="livedub/$name:$prefix$hash"
  if image_exists "$tag"; then
    log "$name: $tag present"
  else
    log "$name: building $tag"
    local start=$SECONDS
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$base" -t "$tag" "$ctx" >/dev/null 2>"$ctx.err" \
      || { cat "$ctx.err" >&2; die "docker build of $name failed"; }
    log "$name: built in $((SECONDS - start)) s"
  fi
  echo "$tag"
}

# check IMAGE ENTRY_BINARY: every shared library resolves inside the image.
check_libs() {
  local img=$1 bin=$2 missing
  missing=$(docker run --rm --network none --entrypoint /bin/sh "$img" -c "ldd $bin | grep 'not found' || true")
  [ -z "$missing" ] || die "$img: $bin misses shared libraries inside the image:\n$missing"
}

stage() { # stage NAME -> an empty context folder
  local dir="$IMG_CACHE/ctx-$1"
  rm -rf "$dir" "$dir.err"; mkdir -p "$dir"; echo "$dir"
}

total_start=$SECONDS

# ---- bases --------------------------------------------------------------------------------
STS_PKGS=(ca-certificates curl libssl3 libgomp1 libstdc++6 espeak-ng-data libespeak-ng1 apertium apertium-eng-spa)
MEDIA_PKGS=(ca-certificates curl libssl3 libgstreamer1.0-0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
            gstreamer1.0-plugins-bad gstreamer1.0-libav)
MTX_PKGS=(ca-certificates wget)
mapfile -t sts_libs < <(packages_for_libs "$STS_BIN")
mapfile -t media_libs < <(packages_for_libs "$MEDIA_BIN")
mapfile -t xiu_libs < <(packages_for_libs "$XIU_BIN")
sts_base=$(base_image sts "${STS_PKGS[@]}" "${sts_libs[@]}")
media_base=$(base_image media "${MEDIA_PKGS[@]}" "${media_libs[@]}")
mtx_base=$(base_image mediamtx "${MTX_PKGS[@]}" "${xiu_libs[@]}")

# ---- service images -----------------------------------------------------------------------
ctx=$(stage sts-service)
strip --strip-debug -o "$ctx/sts-service" "$STS_BIN"
mkdir -p "$ctx/models"
for m in $IMAGE_MODELS; do cp -r "$MODELS/$m" "$ctx/models/$m"; done
sts_image=$(service_image sts-service "$ROOT/apps/sts-service/deploy/Dockerfile.local" "$sts_base" "$ctx")
check_libs "$sts_image" /usr/local/bin/sts-service

ctx=$(stage media-service)
strip --strip-debug -o "$ctx/media-service" "$MEDIA_BIN"
media_image=$(service_image media-service "$ROOT/apps/media-service/deploy/Dockerfile.local" "$media_base" "$ctx")
check_libs "$media_image" /usr/local/bin/media-service

ctx=$(stage mediamtx-local)
strip --strip-debug -o "$ctx/xiu-lite" "$XIU_BIN"
cp "$ROOT/tools/xiu-lite/deploy/mediamtx-entrypoint.sh" "$ctx/"
mtx_image=$(service_image mediamtx-local "$ROOT/tools/xiu-lite/deploy/Dockerfile.mediamtx" "$mtx_base" "$ctx" "")
check_libs "$mtx_image" /usr/local/bin/xiu-lite

cat >"$ENV_OUT.partial" <<EOF
# Written by scripts/build-images.sh: the offline images of the two compositions.
STS_IMAGE=$sts_image
MEDIA_IMAGE=$media_image
MEDIAMTX_IMAGE=$mtx_image
EOF
mv "$ENV_OUT.partial" "$ENV_OUT"

size() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }
log "ready in $((SECONDS - total_start)) s ($ENV_OUT):"
log "  STS_IMAGE=$sts_image ($(size "$sts_image"))"
log "  MEDIA_IMAGE=$media_image ($(size "$media_image"))"
log "  MEDIAMTX_IMAGE=$mtx_image ($(size "$mtx_image"))"
# Images of earlier builds are just disk space: keep the current tag of each repository
# (an image still used by a container is kept by the engine).
prune_older() { # prune_older REPOSITORY CURRENT_TAG...
  local repo=$1; shift
  docker image ls --format '{{.Repository}}:{{.Tag}}' "$repo" | while read -r ref; do
    case " $* " in *" $ref "*) ;; *) docker rmi "$ref" >/dev/null 2>&1 && log "removed the older $ref" || true ;; esac
  done
}
prune_older livedub/base "$sts_base" "$media_base" "$mtx_base"
prune_older livedub/sts-service "$sts_image" livedub/sts-service:e2e
prune_older livedub/media-service "$media_image" livedub/media-service:e2e
prune_older livedub/mediamtx-local "$mtx_image"
