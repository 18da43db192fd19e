#!/usr/bin/env bash
# Regenerates the e2e fixture tests/e2e/fixtures/test_streams/30s-counting-english.mp4
# (ARCHITECTURE.md §6):
#   - 30.0 s, H.264 1280x720 30 fps (no B-frames, 1 s GOP, SEI NAL units stripped so the
#     local media server does not split access units), AAC-LC 48 kHz stereo;
#   - English "one" .. "thirty" spoken by espeak-ng (en-us, 185 wpm); number n starts at
#     t = n-1 s, so the 6 s fragment k (0-based) holds exactly the numbers 6k+1 .. 6k+6.
# Each spoken word is trimmed of leading/trailing silence and must fit in its one-second
# slot; the script fails loudly when one does not (a change of espeak-ng voice data could
# do that) instead of writing a fixture whose fragments straddle numbers.
#
# Usage: scripts/make-fixture.sh [OUTPUT.mp4]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/tests/e2e/fixtures/test_streams/30s-counting-english.mp4}"
VOICE="${FIXTURE_VOICE:-en-us}"
WPM="${FIXTURE_WPM:-185}"

log() { printf '[make-fixture] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "missing tool '$1' (install: apt-get install $2)"; exit 2; }; }
need espeak-ng espeak-ng
need sox sox
need ffmpeg ffmpeg
need ffprobe ffmpeg

WORDS=(one two three four five six seven eight nine ten
       eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty
       twenty-one twenty-two twenty-three twenty-four twenty-five twenty-six twenty-seven
       twenty-eight twenty-nine thirty)

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

log "speaking ${#WORDS[@]} numbers with espeak-ng voice $VOICE at $WPM wpm"
slots=()
for i in "${!WORDS[@]}"; do
  n=$((i + 1))
  raw="$TMP/raw-$n.wav"
  slot="$TMP/slot-$(printf %02d "$n").wav"
  espeak-ng -v "$VOICE" -s "$WPM" -w "$raw" "${WORDS[$i]}"
  # Trim silence at both ends (reverse trick), resample to 48 kHz mono.
  sox "$raw" -r 48000 -c 1 -b 16 "$TMP/trim-$n.wav" \
    silence 1 0.005 0.5% reverse silence 1 0.005 0.5% reverse
  len=$(soxi -D "$TMP/trim-$n.wav")
  # 0.95 s leaves at least 50 ms of silence before the next number starts.
  if ! awk -v l="$len" 'BEGIN { exit !(l > 0.1 && l < 0.95) }'; then
    log "number $n ('${WORDS[$i]}') lasts ${len}s once trimmed; it must fit 0.1..0.95 s of its 1 s slot"
    exit 1
  fi
  # Pad to exactly one second (48000 samples): the word starts at the slot's start.
  rest=$((48000 - $(soxi -s "$TMP/trim-$n.wav")))
  sox "$TMP/trim-$n.wav" "$slot" pad 0 "${rest}s"
  slots+=("$slot")
done

sox "${slots[@]}" "$TMP/speech.wav"
samples=$(soxi -s "$TMP/speech.wav")
if [ "$samples" -ne 1440000 ]; then
  log "speech track has $samples samples, expected 1440000 (30.0 s at 48 kHz)"
  exit 1
fi
# Stereo: the same speech on both channels.
sox "$TMP/speech.wav" -c 2 "$TMP/speech-stereo.wav"

log "encoding H.264 1280x720 30 fps + AAC 48 kHz stereo"
mkdir -p "$(dirname "$OUT")"
# testsrc2 with a burnt-in clock keeps the video cheap to encode yet makes frozen video
# visible; -bf 0 and a fixed 1 s GOP keep PTS == DTS and let a late reader start quickly.
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=1280x720:rate=30,format=yuv420p" \
  -i "$TMP/speech-stereo.wav" \
  -t 30 \
  -map 0:v:0 -map 1:a:0 \
  -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -bf 0 \
  -g 30 -keyint_min 30 -sc_threshold 0 -b:v 600k -maxrate 800k -bufsize 1200k \
  -x264-params "threads=1" \
  -c:a aac -b:a 96k -ar 48000 -ac 2 \
  -movflags +faststart \
  "$TMP/with-sei.mp4"
# x264 writes its settings as an SEI NAL unit; xiu treats every NAL as an access unit, so
# strip SEI (NAL type 6) from the bitstream (PLATFORM-NOTES: Media).
ffmpeg -hide_banner -loglevel error -y -i "$TMP/with-sei.mp4" -map 0 -c copy \
  -bsf:v filter_units=remove_types=6 -movflags +faststart "$OUT.partial.mp4"
mv "$OUT.partial.mp4" "$OUT"

dur=$(ffprobe -v error -show_entries format=duration -of default=nw=1:nk=1 "$OUT")
log "wrote $OUT ($(stat -c %s "$OUT") bytes, ${dur}s)"
