"""The C encoder (firmware_bridge/firmware/) against the Python codec, byte for byte.

The library is compiled once per session with the system C compiler, linked with the driver in
tests/c/vigil_frame_driver.c, and fed frame fields as text on stdin (one frame per line, wire
integers exactly as they travel). Each frame is also built as a Python dataclass from the same
integers and encoded with `firmware_bridge.codec.encode`; the hex must match. Frames come from a
seeded RNG (reproducible) plus hand-picked edge cases (COBS 254-byte blocks, maxima, wraps).

No compiler: skipped locally, a failure when CI=true.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cobs import cobs

from firmware_bridge.codec import DecodeError, Decoder, crc16, decode_frame, encode
from firmware_bridge.frames import (
    AckFrame,
    AckResult,
    Frame,
    FrameType,
    HelloFrame,
    PaceFrame,
    PingFrame,
    Sensor,
    SetRatesFrame,
    StatusFlag,
    StatusFrame,
    VitalsFrame,
    WaveformChannel,
    WaveformFrame,
)

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware_bridge" / "firmware"
DRIVER_C = Path(__file__).resolve().parent / "c" / "vigil_frame_driver.c"
HOST_DIR = Path(__file__).resolve().parent / "c"
SKETCH = FIRMWARE / "examples" / "send_vitals" / "send_vitals.ino"

WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
# Stricter than asked: implicit narrowing is where 16-bit-int targets (AVR) break.
PORTABILITY = ["-Wconversion", "-Wsign-conversion", "-Wshadow"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1"]

N_RANDOM = 400  # frames per type; one process handles them all
SEED = 20240607
MAX_SAMPLES = 504
MAX_PULSES = 255
BIG_CAP = 4096


def _compiler() -> str:
    name = os.environ.get("CC", "cc")
    cc = shutil.which(name)
    if cc is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no C compiler ({name}) on PATH, and CI=true requires the C encoder tests")
        pytest.skip(f"no C compiler ({name}) on PATH; the C encoder is not tested")
    return cc


def _build(cc: str, out: Path, extra: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            cc,
            *WARNINGS,
            *extra,
            f"-I{FIRMWARE}",
            str(FIRMWARE / "vigil_frame.c"),
            str(DRIVER_C),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = _compiler()
    exe = tmp_path_factory.mktemp("cdriver") / "vigil_frame_driver"
    result = _build(cc, exe, [*PORTABILITY, "-O2"])
    assert result.returncode == 0, f"C library does not compile cleanly:\n{result.stderr}"
    return exe


@pytest.fixture(scope="module")
def asan_driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = _compiler()
    exe = tmp_path_factory.mktemp("cdriver_asan") / "vigil_frame_driver_asan"
    result = _build(cc, exe, SANITIZE)
    if result.returncode != 0:
        pytest.skip(f"{cc} cannot build with -fsanitize=address,undefined: {result.stderr[:200]}")
    return exe


def run_driver(exe: Path, lines: list[str]) -> list[str]:
    """Feed the driver its commands; one answer line per command."""
    proc = subprocess.run(
        [str(exe)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"},
    )
    assert proc.returncode == 0, f"driver exited {proc.returncode}: {proc.stderr}"
    out = proc.stdout.splitlines()
    assert len(out) == len(lines), proc.stderr
    return out


# ---- the same frame, as driver text and as a Python dataclass -----------------------------


@dataclass(frozen=True)
class Case:
    """One frame: what the C driver is told (fields after op, cap) and the Python frame."""

    op: str
    fields: tuple[int, ...]
    frame: Frame

    def line(self, cap: int) -> str:
        return f"{self.op} {cap} " + " ".join(str(v) for v in self.fields)


def _u(rng: np.random.Generator, bits: int) -> int:
    """Uniform unsigned int, with the extremes over-represented (they find the bugs)."""
    top = (1 << bits) - 1
    pick = rng.integers(0, 10)
    if pick == 0:
        return 0
    if pick == 1:
        return top
    return int(rng.integers(0, top, endpoint=True))


def _i16(rng: np.random.Generator) -> int:
    pick = rng.integers(0, 10)
    if pick == 0:
        return -0x8000
    if pick == 1:
        return 0x7FFF
    return int(rng.integers(-0x8000, 0x7FFF, endpoint=True))


def hello_case(rng: np.random.Generator) -> Case:
    seq, ts = _u(rng, 16), _u(rng, 32)
    major, minor, patch = (_u(rng, 8) for _ in range(3))
    board, sensors = _u(rng, 32), _u(rng, 16)  # reserved sensor bits must be cleared by C
    rates = [_u(rng, 16) for _ in range(4)]
    frame = HelloFrame(
        seq=seq,
        timestamp_ms=ts,
        firmware_version=(major, minor, patch),
        board_id=board,
        sensors=Sensor(sensors & 0xFF),
        ecg_rate_hz=rates[0],
        ppg_rate_hz=rates[1],
        resp_rate_hz=rates[2],
        vitals_period_ms=rates[3],
    )
    return Case("H", (seq, ts, major, minor, patch, board, sensors, *rates), frame)


def vitals_case(rng: np.random.Generator) -> Case:
    seq, ts = _u(rng, 16), _u(rng, 32)
    valid = _u(rng, 8)  # bit 7 is reserved: C must clear it
    wire = [_u(rng, 16) for _ in range(6)]
    temp = _i16(rng)
    names = ("hr_bpm", "spo2_pct", "rr_per_min", "sbp_mmhg", "dbp_mmhg", "map_mmhg")
    # Physical value = wire / scale; the codec rounds half away from zero, which gives back
    # exactly the wire integer. Invalid values are random on the C side (must be sent as 0).
    values: dict[str, float | None] = {
        name: (w / 10 if valid & (1 << bit) else None)
        for bit, (name, w) in enumerate(zip(names, wire, strict=True))
    }
    values["temp_c"] = temp / 100 if valid & 0x40 else None
    frame = VitalsFrame(seq=seq, timestamp_ms=ts, **values)
    return Case("V", (seq, ts, valid, *wire, temp), frame)


def _gain_bits(rng: np.random.Generator) -> int:
    """Bit pattern of a positive finite float32, subnormals included."""
    pick = rng.integers(0, 4)
    if pick == 0:
        return int(np.float32(rng.uniform(1.0, 2000.0)).view(np.uint32))
    if pick == 1:
        return 1  # smallest subnormal
    return int(rng.integers(1, 0x7F800000))  # 0x7F800000 is +inf


def waveform_case(rng: np.random.Generator, n: int | None = None) -> Case:
    seq, ts = _u(rng, 16), _u(rng, 32)
    channel = int(rng.integers(1, 6, endpoint=True))
    rate = int(rng.integers(1, 0xFFFF, endpoint=True))
    bits = _gain_bits(rng)
    (gain,) = struct.unpack("<f", struct.pack("<I", bits))
    baseline, first = _i16(rng), _u(rng, 32)
    if n is None:
        n = (
            int(rng.choice([1, 2, 127, 253, MAX_SAMPLES]))
            if rng.integers(0, 4) == 0
            else int(rng.integers(1, MAX_SAMPLES, endpoint=True))
        )
    kind = rng.integers(0, 4)
    if kind == 0:  # no zero bytes at all: long COBS runs, full 254-byte blocks
        samples = rng.integers(1, 256, size=(n, 2)) @ np.array([1, 256]) - 0x8000
        samples = np.where(samples == 0, 0x0101, samples)
    elif kind == 1:  # mostly zeros: many 1-byte COBS blocks
        samples = np.where(rng.random(n) < 0.8, 0, rng.integers(-0x8000, 0x7FFF, size=n))
    else:
        samples = rng.integers(-0x8000, 0x7FFF, size=n, endpoint=True)
    sample_list = [int(s) for s in samples]
    frame = WaveformFrame(
        seq=seq,
        timestamp_ms=ts,
        channel=WaveformChannel(channel),
        rate_hz=rate,
        gain=gain,
        baseline=baseline,
        first_sample=first,
        samples=tuple(sample_list),
    )
    return Case("W", (seq, ts, channel, rate, bits, baseline, first, n, *sample_list), frame)


def pace_case(rng: np.random.Generator, n: int | None = None) -> Case:
    seq, ts = _u(rng, 16), _u(rng, 32)
    channel = int(rng.integers(1, 6, endpoint=True))
    if n is None:
        n = (
            int(rng.choice([1, 2, 63, 64, MAX_PULSES]))
            if rng.integers(0, 4) == 0
            else int(rng.integers(1, MAX_PULSES, endpoint=True))
        )
    if rng.integers(0, 4) == 0:  # small indices: many zero bytes, 1-byte COBS blocks
        indices = sorted(int(v) for v in rng.integers(0, 0x100, size=n))
    else:
        indices = sorted(_u(rng, 32) for _ in range(n))
    frame = PaceFrame(
        seq=seq, timestamp_ms=ts, channel=WaveformChannel(channel), samples=tuple(indices)
    )
    return Case("P", (seq, ts, channel, n, *indices), frame)


def status_case(rng: np.random.Generator) -> Case:
    seq, ts = _u(rng, 16), _u(rng, 32)
    flags = _u(rng, 16)  # reserved bits must be cleared by C
    battery = 255 if rng.integers(0, 4) == 0 else int(rng.integers(0, 100, endpoint=True))
    fault = _u(rng, 16)
    frame = StatusFrame(
        seq=seq,
        timestamp_ms=ts,
        flags=StatusFlag(flags & 0x7F),
        battery_pct=None if battery == 255 else battery,
        fault_code=fault,
    )
    return Case("S", (seq, ts, flags, battery, fault), frame)


def ack_case(rng: np.random.Generator) -> Case:
    seq, ts = _u(rng, 16), _u(rng, 32)
    acked_seq, nonce = _u(rng, 16), _u(rng, 32)
    acked_type = FrameType(int(rng.choice([FrameType.PING, FrameType.SET_RATES])))
    result = AckResult(int(rng.integers(0, 3, endpoint=True)))
    frame = AckFrame(
        seq=seq,
        timestamp_ms=ts,
        acked_seq=acked_seq,
        acked_type=acked_type,
        result=result,
        nonce=nonce,
    )
    return Case("A", (seq, ts, acked_seq, int(acked_type), int(result), nonce), frame)


MAKERS: dict[str, Callable[[np.random.Generator], Case]] = {
    "hello": hello_case,
    "vitals": vitals_case,
    "waveform": waveform_case,
    "pace": pace_case,
    "status": status_case,
    "ack": ack_case,
}


def random_cases(kind: str, count: int = N_RANDOM) -> Iterator[Case]:
    rng = np.random.default_rng([SEED, list(MAKERS).index(kind)])
    for _ in range(count):
        yield MAKERS[kind](rng)


def capacity_lines(case: Case) -> tuple[list[str], list[str]]:
    """Driver lines and expected answers: ample room, exactly enough, one byte short."""
    wire = encode(case.frame).hex()
    size = len(wire) // 2
    return (
        [case.line(BIG_CAP), case.line(size), case.line(size - 1)],
        [wire, wire, "ERR"],
    )


# ---- tests ---------------------------------------------------------------------------------


def test_protocol_example_and_crc_check_value(driver: Path) -> None:
    example = VitalsFrame(seq=7, timestamp_ms=1000, hr_bpm=72.0, spo2_pct=98.0)
    out = run_driver(driver, ["V 64 7 1000 3 720 980 0 0 0 0 0", "C " + b"123456789".hex(), "C -"])
    assert out == [encode(example).hex(), "29b1", "ffff"]


@pytest.mark.parametrize("kind", list(MAKERS))
def test_random_frames_match_python_codec(driver: Path, kind: str) -> None:
    lines: list[str] = []
    expected: list[str] = []
    for case in random_cases(kind):
        more_lines, more_expected = capacity_lines(case)
        lines += more_lines
        expected += more_expected
    out = run_driver(driver, lines)
    for i, (got, want) in enumerate(zip(out, expected, strict=True)):
        assert got == want, f"{kind} frame {i // 3}: {lines[i][:120]}"


def test_waveform_sizes_cover_every_cobs_block_boundary(driver: Path) -> None:
    """n from 1 to 504 with zero-free samples: every position of the 254-byte block edge."""
    rng = np.random.default_rng(SEED)
    cases: list[Case] = []
    for n in range(1, MAX_SAMPLES + 1):
        case = waveform_case(rng, n)
        cases.append(case)
    out = run_driver(driver, [c.line(BIG_CAP) for c in cases])
    assert out == [encode(c.frame).hex() for c in cases]


def test_pace_sizes_cover_every_cobs_block_boundary(driver: Path) -> None:
    """n from 1 to 255 with zero-free indices: the 254-byte block edge at every offset."""
    rng = np.random.default_rng(SEED + 4)
    cases: list[Case] = []
    for n in range(1, MAX_PULSES + 1):
        drawn = (int(v) for v in rng.integers(0x01010101, 0xFFFFFFFF, size=n))
        indices = sorted(v if 0 not in v.to_bytes(4, "little") else 0x01010101 for v in drawn)
        frame = PaceFrame(seq=n, timestamp_ms=n, samples=tuple(indices))
        cases.append(Case("P", (n, n, 1, n, *indices), frame))
    out = run_driver(driver, [c.line(BIG_CAP) for c in cases])
    assert out == [encode(c.frame).hex() for c in cases]


def test_cobs_matches_reference_library(driver: Path) -> None:
    """Raw COBS against the `cobs` package, which the Python codec uses."""
    rng = np.random.default_rng(SEED + 1)
    blobs: list[bytes] = [b"", b"\x00", b"\x00\x00", b"\x11" * 253, b"\x11" * 254, b"\x11" * 255]
    blobs += [b"\x11" * 254 + b"\x00", b"\x11" * 508, b"\x11" * 254 + b"\x00" + b"\x22" * 254]
    for length in [*range(1, 20), 252, 253, 254, 255, 256, 507, 508, 509, 1034]:
        zeros = rng.random(length) < rng.choice([0.0, 0.01, 0.5])
        data = np.where(zeros, 0, rng.integers(1, 256, size=length)).astype(np.uint8)
        blobs.append(data.tobytes())
    lines, expected = [], []
    for blob in blobs:
        want = cobs.encode(blob)
        hexed = blob.hex() or "-"
        lines += [f"K {BIG_CAP} {hexed}", f"K {len(want)} {hexed}", f"K {len(want) - 1} {hexed}"]
        expected += [want.hex(), want.hex(), "ERR"]
        lines.append(f"C {hexed}")
        expected.append(f"{crc16(blob):04x}")
    assert run_driver(driver, lines) == expected


def test_invalid_arguments_are_refused(driver: Path) -> None:
    """Whatever the Python codec refuses (or a receiver would drop), C refuses too."""
    nan, inf, one = 0x7FC00000, 0x7F800000, 0x3F800000
    bad = [
        f"W 4096 0 0 1 250 {one} 0 0 0",  # no samples
        f"W 4096 0 0 1 250 {one} 0 0 505 " + " ".join(["1"] * 505),  # too many samples
        f"W 4096 0 0 1 0 {one} 0 0 1 5",  # rate 0
        f"W 4096 0 0 0 250 {one} 0 0 1 5",  # channel 0
        f"W 4096 0 0 7 250 {one} 0 0 1 5",  # channel 7
        "W 4096 0 0 1 250 0 0 0 1 5",  # gain 0
        f"W 4096 0 0 1 250 {one | 0x80000000} 0 0 1 5",  # gain -1
        f"W 4096 0 0 1 250 {nan} 0 0 1 5",
        f"W 4096 0 0 1 250 {inf} 0 0 1 5",
        "P 4096 0 0 1 0",  # no pulses
        "P 4096 0 0 1 256 " + " ".join(["1"] * 256),  # too many pulses
        "P 4096 0 0 0 1 5",  # channel 0
        "P 4096 0 0 7 1 5",  # channel 7
        "S 4096 0 0 0 101 0",  # battery 101 %
        "S 4096 0 0 0 254 0",
        "A 4096 0 0 0 16 4 0",  # result 4
        "R 4096 0 0 3 " + "00" * 1025,  # payload over 1024 bytes
    ]
    assert run_driver(driver, bad) == ["ERR"] * len(bad)
    for frame in (
        WaveformFrame(samples=()),
        WaveformFrame(samples=(1,) * 505),
        WaveformFrame(rate_hz=0, samples=(5,)),
        WaveformFrame(gain=0.0, samples=(5,)),
        WaveformFrame(gain=float("nan"), samples=(5,)),
        PaceFrame(samples=()),
        PaceFrame(samples=(1,) * 256),
        StatusFrame(battery_pct=101),
    ):
        with pytest.raises(ValueError, match=r"."):
            encode(frame)


def test_sequence_number_advances_wraps_and_holds_on_error(driver: Path) -> None:
    lines = [
        "V 64 65535 0 0 0 0 0 0 0 0 0",  # sets next_seq to 65535, then encodes
        "N",
        "V 10 5 0 0 0 0 0 0 0 0 0",  # too small: no frame, seq stays 5
        "N",
        "S 64 9 0 0 101 0",  # invalid: seq stays 9
        "N",
    ]
    out = run_driver(driver, lines)
    assert out[1::2] == ["0", "5", "9"]


def test_raw_encoder_and_unknown_command_type(driver: Path) -> None:
    frame = PingFrame(seq=300, timestamp_ms=123456, nonce=0xCAFEF00D)
    out = run_driver(driver, [f"R 64 300 123456 16 {struct.pack('<I', 0xCAFEF00D).hex()}"])
    assert out == [encode(frame).hex()]
    # A CRC-good frame of a type the board does not know: header exposed so it can ACK it.
    unknown = run_driver(driver, ["R 64 77 42 18 0102"])[0]
    chunk = bytes.fromhex(unknown)[:-1]
    assert run_driver(driver, [f"D {chunk.hex()}"]) == ["U 18 77 42"]


def _command(rng: np.random.Generator) -> Frame:
    seq, ts = _u(rng, 16), _u(rng, 32)
    if rng.integers(0, 2):
        return PingFrame(seq=seq, timestamp_ms=ts, nonce=_u(rng, 32))
    return SetRatesFrame(
        seq=seq,
        timestamp_ms=ts,
        ecg_rate_hz=_u(rng, 16),
        ppg_rate_hz=_u(rng, 16),
        vitals_period_ms=_u(rng, 16),
    )


def _expected_command(frame: Frame) -> str:
    if isinstance(frame, PingFrame):
        return f"P {frame.seq} {frame.timestamp_ms} {frame.nonce}"
    assert isinstance(frame, SetRatesFrame)
    return (
        f"T {frame.seq} {frame.timestamp_ms} {frame.ecg_rate_hz} {frame.ppg_rate_hz} "
        f"{frame.vitals_period_ms}"
    )


def test_command_decoder_reads_python_encoded_commands(driver: Path) -> None:
    rng = np.random.default_rng(SEED + 2)
    frames = [_command(rng) for _ in range(N_RANDOM)]
    chunks = [encode(f)[:-1] for f in frames]
    assert run_driver(driver, [f"D {c.hex()}" for c in chunks]) == [
        _expected_command(f) for f in frames
    ]


def test_command_decoder_rejects_what_python_rejects(driver: Path) -> None:
    """Single-byte corruptions of valid commands: C accepts exactly when Python does."""
    rng = np.random.default_rng(SEED + 3)
    lines: list[str] = []
    chunks: list[bytes] = []
    for _ in range(N_RANDOM):
        mutable = bytearray(encode(_command(rng))[:-1])
        pos = int(rng.integers(0, len(mutable)))
        mutable[pos] ^= int(rng.integers(1, 256))
        if rng.integers(0, 8) == 0:
            del mutable[int(rng.integers(0, len(mutable))) :]
        chunks.append(bytes(mutable))
        lines.append(f"D {mutable.hex() or '-'}")
    for chunk, got in zip(chunks, run_driver(driver, lines), strict=True):
        try:
            frame = decode_frame(chunk)
        except DecodeError:
            assert got.startswith(("E", "U")), f"C accepted {chunk.hex()} as {got}"
        else:
            assert got == _expected_command(frame), chunk.hex()
    # Wrong version, wrong length, and non-commands are refused by code.
    body = bytearray(b"\x02\x10\x01\x00\x00\x00\x00\x00" + b"\x01\x02\x03\x04")
    body += struct.pack("<H", crc16(bytes(body)))
    short_ping = b"\x01\x10\x01\x00\x00\x00\x00\x00\x01\x02"
    short_ping += struct.pack("<H", crc16(short_ping))
    out = run_driver(
        driver,
        [f"D {cobs.encode(bytes(body)).hex()}", f"D {cobs.encode(short_ping).hex()}", "D 0100"],
    )
    assert out == ["E-6", "E-8", "E-3"]


def test_receiver_finds_commands_in_a_byte_stream(driver: Path) -> None:
    """Mid-stream start, garbage, empty frames and an oversize frame around real commands."""
    ping = PingFrame(seq=1, timestamp_ms=2, nonce=3)
    rates = SetRatesFrame(seq=2, timestamp_ms=4, ecg_rate_hz=500, vitals_period_ms=1000)
    joined_midway = b"\x11\x22" + encode(ping)  # dropped up to the first 0x00
    empty_frames = b"\x00\x00"  # ignored
    oversize = b"\x05" * 40 + b"\x00"  # longer than the receive buffer
    too_short = b"\x03\x01\x02\x00"  # valid COBS, far too short for a frame
    stream = joined_midway + encode(ping) + empty_frames + oversize + encode(rates) + too_short
    out = run_driver(driver, [f"X {stream.hex()}"])
    assert out == [f"{_expected_command(ping)} E-2 {_expected_command(rates)} E-4"]


def test_sanitizers_see_no_error(asan_driver: Path) -> None:
    """Every kind of line once more under AddressSanitizer + UBSan (aborts on any finding)."""
    lines, expected = [], []
    for kind in MAKERS:
        for case in random_cases(kind, 30):
            more_lines, more_expected = capacity_lines(case)
            lines += more_lines
            expected += more_expected
    lines += ["K 4096 " + "11" * 254, "C 00", "D 0100", "X 00" + encode(PingFrame()).hex()]
    expected += [cobs.encode(b"\x11" * 254).hex(), f"{crc16(bytes(1)):04x}", "E-3", "P 0 0 0"]
    assert run_driver(asan_driver, lines) == expected


@pytest.fixture(scope="module")
def sketch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = _compiler()
    cxx = shutil.which(os.environ.get("CXX", "c++"))
    if cxx is None:
        pytest.skip("no C++ compiler (c++) on PATH; the example sketch is not built")
    build = tmp_path_factory.mktemp("sketch")
    obj = build / "vigil_frame.o"
    exe = build / "send_vitals"
    steps = [
        [cc, *WARNINGS, "-c", f"-I{FIRMWARE}", str(FIRMWARE / "vigil_frame.c"), "-o", str(obj)],
        [
            cxx,
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{FIRMWARE}",
            f"-I{HOST_DIR}",
            "-include",
            "arduino_host.h",
            "-x",
            "c++",
            str(SKETCH),
            "-x",
            "none",
            str(HOST_DIR / "arduino_host.cpp"),
            str(obj),
            "-o",
            str(exe),
        ],
    ]
    for argv in steps:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{' '.join(argv)}\n{result.stderr}"
    return exe


def test_example_sketch_talks_to_the_python_decoder(sketch: Path) -> None:
    """The sketch on simulated time: boot 0x00, HELLO seq 0, VITALS each period, ACKs."""
    commands = (
        b"\x00"
        + encode(PingFrame(seq=5, nonce=0xDEADBEEF))
        + encode(SetRatesFrame(seq=6, vitals_period_ms=500))
        + encode(SetRatesFrame(seq=7, ecg_rate_hz=250))
    )
    wire = subprocess.run(
        [str(sketch), "3000"], input=commands, capture_output=True, check=True
    ).stdout
    assert wire[:1] == b"\x00"
    decoder = Decoder(synced=True)
    frames = decoder.feed(wire)
    assert decoder.stats.errors == 0
    assert decoder.stats.seq_gaps == decoder.stats.seq_resets == 0
    assert isinstance(frames[0], HelloFrame)
    assert frames[0].seq == 0
    acks = [f for f in frames if isinstance(f, AckFrame)]
    assert [(a.acked_seq, a.result, a.nonce) for a in acks] == [
        (5, AckResult.OK, 0xDEADBEEF),
        (6, AckResult.OK, 0),
        (7, AckResult.UNSUPPORTED, 0),
    ]
    vitals = [f for f in frames if isinstance(f, VitalsFrame)]
    assert [v.timestamp_ms for v in vitals] == list(range(500, 3001, 500))
    assert all(v.hr_bpm == 72.0 and v.sbp_mmhg is None for v in vitals)
