"""Frames decoded per second by the streaming codec on one core.

The stream mixes what a board sends: per second one VITALS, one STATUS and ten 100 ms WAVEFORM
chunks (ECG at 250 Hz and PPG at 125 Hz). It is fed in 256-byte reads, as a serial port delivers.
The baseline, measured in the same run, is the bare work no decoder can avoid: splitting at the
delimiters, COBS-decoding and CRC-checking each frame (C implementations). The ratio says how
much the typed, resynchronising decoder costs on top of that, independent of machine speed.

Run: .venv/bin/python benchmarks/codec_throughput.py [--seconds-of-signal N]
"""

from __future__ import annotations

import argparse
import binascii
import time

import numpy as np
from cobs import cobs

from firmware_bridge.codec import Decoder, encode
from firmware_bridge.frames import (
    Frame,
    StatusFrame,
    VitalsFrame,
    WaveformChannel,
    WaveformFrame,
)

READ_SIZE = 256


def board_stream(seconds: int) -> tuple[bytes, int]:
    rng = np.random.default_rng(0)
    frames: list[Frame] = []
    seq = 0
    for s in range(seconds):
        t = s * 1000
        frames.append(VitalsFrame(seq=seq, timestamp_ms=t, hr_bpm=72.0, spo2_pct=97.0,
                                  rr_per_min=14.0, sbp_mmhg=120.0, dbp_mmhg=80.0,
                                  map_mmhg=93.3, temp_c=36.8))
        seq += 1
        frames.append(StatusFrame(seq=seq, timestamp_ms=t, battery_pct=80))
        seq += 1
        for k in range(10):
            for chan, rate in ((WaveformChannel.ECG_II, 250), (WaveformChannel.PPG, 125)):
                n = rate // 10
                samples = tuple(int(v) for v in rng.integers(-2000, 2000, n))
                frames.append(WaveformFrame(seq=seq & 0xFFFF, timestamp_ms=t + 100 * k,
                                            channel=chan, rate_hz=rate, gain=200.0,
                                            first_sample=(s * 10 + k) * n, samples=samples))
                seq += 1
    return b"\x00" + b"".join(encode(f) for f in frames), len(frames)


def decode_stream(stream: bytes) -> int:
    dec = Decoder()
    n = 0
    for i in range(0, len(stream), READ_SIZE):
        n += len(dec.feed(stream[i : i + READ_SIZE]))
    if dec.stats.errors:
        raise RuntimeError(f"benchmark stream did not decode cleanly: {dec.stats}")
    return n


def baseline(stream: bytes) -> int:
    n = 0
    for chunk in stream.split(b"\x00"):
        if chunk:
            body = cobs.decode(chunk)
            if binascii.crc_hqx(body[:-2], 0xFFFF) == int.from_bytes(body[-2:], "little"):
                n += 1
    return n


def best_rate(fn, stream: bytes, expected: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        got = fn(stream)
        best = min(best, time.perf_counter() - t0)
        if got != expected:
            raise RuntimeError(f"{fn.__name__} decoded {got} of {expected} frames")
    return expected / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds-of-signal", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    stream, n = board_stream(args.seconds_of_signal)
    codec_fps = best_rate(decode_stream, stream, n, args.repeats)
    base_fps = best_rate(baseline, stream, n, args.repeats)
    mib = len(stream) / 2**20
    print(f"stream: {n} frames, {mib:.2f} MiB ({args.seconds_of_signal} s of board output)")
    print(f"codec decoder:          {codec_fps:12,.0f} frames/s  "
          f"({codec_fps / n * args.seconds_of_signal:,.0f}x one board's real-time rate)")
    print(f"baseline (split+COBS+CRC only): {base_fps:12,.0f} frames/s")
    print(f"ratio decoder/baseline: {codec_fps / base_fps:.2f}")


if __name__ == "__main__":
    main()
