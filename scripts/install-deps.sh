#!/usr/bin/env bash
# Installs the Debian packages livedub needs to build, test and run.
# Idempotent: apt is only called when a package is missing.
set -euo pipefail

PACKAGES=(
  # build
  build-essential pkg-config cmake clang libclang-dev libssl-dev
  # media: GStreamer 1.22 + plugins (avenc_aac, flvmux, rtmp2sink, rtspsrc), ffmpeg/ffprobe
  ffmpeg gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  # speech: TTS (espeak-ng) and translation (Apertium English->Spanish)
  espeak-ng libespeak-ng-dev apertium apertium-eng-spa
  # tools used by scripts and tests
  python3-venv sox jq curl docker-compose
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "[install-deps] all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "[install-deps] installing ${#missing[@]} Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
echo "[install-deps] done"
