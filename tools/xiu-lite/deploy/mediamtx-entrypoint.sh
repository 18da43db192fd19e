#!/bin/sh
# Maps MediaMTX's address variables (":PORT" or "HOST:PORT") onto xiu-lite's port flags.
set -eu
port() { # port VAR_NAME VALUE DEFAULT
  p="${2:-:$3}"; p="${p##*:}"
  case "$p" in
    ''|*[!0-9]*) echo "mediamtx stand-in: $1=$2 has no port; accepted: \":PORT\" or \"HOST:PORT\"" >&2; exit 2 ;;
  esac
  echo "$p"
}
rtsp=$(port MTX_RTSPADDRESS "${MTX_RTSPADDRESS:-}" 8554)
rtmp=$(port MTX_RTMPADDRESS "${MTX_RTMPADDRESS:-}" 1935)
api=$(port MTX_APIADDRESS "${MTX_APIADDRESS:-}" 9997)
exec /usr/local/bin/xiu-lite --rtsp-port "$rtsp" --rtmp-port "$rtmp" --api-port "$api" "$@"
