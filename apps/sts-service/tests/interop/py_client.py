#!/usr/bin/env python3
"""Standard python-socketio client against the sts-service (interoperability check).

Usage: py_client.py URL WAV [--token T]
Sends the WAV (16-bit PCM, any rate/channels) as one fragment of one stream, waits for
fragment:processed and stream:complete, and prints one JSON line with what it got.
Exit status 0 only if the exchange followed the protocol.
"""
import base64
import json
import sys
import threading
import wave

import socketio


def main():
    url, wav_path = sys.argv[1], sys.argv[2]
    token = sys.argv[sys.argv.index("--token") + 1] if "--token" in sys.argv else None
    with wave.open(wav_path, "rb") as w:
        rate, ch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        frames = w.getnframes()
        data = w.readframes(frames)
    assert width == 2, "16-bit WAV expected"
    duration_ms = round(frames * 1000 / rate)

    sio = socketio.Client(reconnection=False)
    got = {"processed": None, "complete": None, "errors": [], "backpressure": []}
    done = threading.Event()

    @sio.on("fragment:processed")
    def on_processed(msg):
        got["processed"] = msg

    @sio.on("stream:complete")
    def on_complete(msg):
        got["complete"] = msg
        done.set()

    @sio.on("error")
    def on_error(msg):
        got["errors"].append(msg)

    @sio.on("backpressure")
    def on_bp(msg):
        got["backpressure"].append(msg)

    sio.connect(url, auth={"token": token} if token else None, transports=["websocket"], wait_timeout=10)
    stream_id = "py-interop-1"
    ack = sio.call("stream:init", {
        "stream_id": stream_id, "source_language": "en", "target_language": "es",
        "fragment_duration_ms": duration_ms,
        "audio": {"format": "pcm_s16le", "sample_rate_hz": rate, "channels": ch},
    }, timeout=30)
    if ack.get("status") != "ready":
        print(json.dumps({"ok": False, "init_ack": ack}))
        return 1
    # Malformed payload: must produce an error event and leave the connection usable.
    sio.emit("fragment:data", "{not json")
    fack = sio.call("fragment:data", {
        "fragment_id": "py-0", "stream_id": stream_id, "sequence_number": 0, "pts_ms": 0,
        "duration_ms": duration_ms,
        "audio": {"format": "pcm_s16le", "sample_rate_hz": rate, "channels": ch,
                  "data": base64.b64encode(data).decode()},
    }, timeout=30)
    end_ack = sio.call("stream:end", {"stream_id": stream_id}, timeout=30)
    done.wait(120)
    sio.disconnect()
    p = got["processed"] or {}
    dubbed = p.get("dubbed_audio") or {}
    dubbed_bytes = len(base64.b64decode(dubbed.get("data", ""))) if dubbed else 0
    out = {
        "ok": fack.get("status") == "accepted" and p.get("status") in ("success", "partial")
              and got["complete"] is not None,
        "init_ack": ack, "fragment_ack": fack, "end_ack": end_ack,
        "status": p.get("status"), "transcript": p.get("transcript"),
        "translated_text": p.get("translated_text"), "stage_ms": p.get("stage_ms"),
        "dubbed_rate": dubbed.get("sample_rate_hz"), "dubbed_channels": dubbed.get("channels"),
        "dubbed_bytes": dubbed_bytes, "expected_bytes": len(data),
        "complete": got["complete"], "error_codes": [e.get("code") for e in got["errors"]],
    }
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
