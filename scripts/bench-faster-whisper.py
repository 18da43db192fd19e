#!/usr/bin/env python3
"""faster-whisper baseline for sts-bench: transcribe the same WAVs with the same CT2 model
and settings (beam 5, int8, 2 threads, no timestamps, temperature 0, repetition penalty 1.1)
and print one JSON object: {"model":..., "times_s": [...], "texts": [...]}.

Usage: bench-faster-whisper.py MODEL_DIR LANGUAGE CHUNK_S WAV...
"""
import json
import sys
import time
import wave

import numpy as np
from faster_whisper import WhisperModel


def load(path):
    with wave.open(path, "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0


def main():
    model_dir, language, chunk_s, wavs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2, num_workers=1)
    times, texts = [], []
    # Warm-up (first call allocates): not timed, like the Rust side's model load.
    list(model.transcribe(load(wavs[0]), language=language, beam_size=5)[0])
    for p in wavs:
        audio = load(p)
        t = time.perf_counter()
        segments, _ = model.transcribe(
            audio, language=language, beam_size=5, temperature=0.0,
            without_timestamps=True, condition_on_previous_text=False,
            repetition_penalty=1.1, vad_filter=False, chunk_length=chunk_s,
        )
        text = " ".join(s.text.strip() for s in segments)
        times.append(time.perf_counter() - t)
        texts.append(text)
    print(json.dumps({"model": model_dir, "chunk_s": chunk_s, "times_s": times, "texts": texts}))


if __name__ == "__main__":
    main()
