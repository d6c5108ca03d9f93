"""The wire codec: round trips, the spec's worked example, and hostile input."""

from __future__ import annotations

import binascii
import struct

import pytest
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.codec import (
    MAX_ENCODED_LEN,
    MAX_PACE_PULSES,
    SYNC,
    DecodeError,
    Decoder,
    EncodeError,
    crc16,
    decode_frame,
    encode,
)
from firmware_bridge.frames import (
    AckFrame,
    AckResult,
    Frame,
    HelloFrame,
    PaceFrame,
    StatusFlag,
    StatusFrame,
    VitalsFrame,
    WaveformChannel,
    WaveformFrame,
)
from tests import strategies as fs

_WAVE_HDR = bytes([1, 3, 0, 0, 0, 0, 0, 0])
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_all(data: bytes, *, synced: bool = True) -> tuple[list[Frame], Decoder]:
    dec = Decoder(synced=synced)
    return dec.feed(data), dec


def _reference_decode(stream: bytes) -> list[Frame]:
    """Non-streaming model of the receiver: split at 0x00 and keep the chunks whose CRC holds.

    It checks the CRC itself (not through the codec) so a decoder that let a bad CRC through
    would disagree with it.
    """
    out = []
    for chunk in stream.split(b"\x00")[:-1]:
        if not chunk or len(chunk) > MAX_ENCODED_LEN:
            continue
        try:
            body = cobs.decode(chunk)
        except cobs.DecodeError:
            continue
        if len(body) < 10 or binascii.crc_hqx(body[:-2], 0xFFFF) != struct.unpack(
            "<H", body[-2:]
        )[0]:
            continue
        try:
            out.append(decode_frame(chunk))
        except DecodeError:
            continue
    return out


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1


def test_protocol_md_worked_example() -> None:
    frame = VitalsFrame(seq=7, timestamp_ms=1000, hr_bpm=72.0, spo2_pct=98.0)
    header = bytes.fromhex("01 02 07 00 e8 03 00 00")
    payload = bytes.fromhex("03 00 d0 02 d4 03 00 00 00 00 00 00 00 00 00 00")
    body = header + payload + struct.pack("<H", crc16(header + payload))
    assert encode(frame) == cobs.encode(body) + b"\x00"


@_SETTINGS
@given(fs.frames)
def test_any_frame_round_trips(frame: Frame) -> None:
    wire = encode(frame)
    assert wire.endswith(SYNC)
    assert b"\x00" not in wire[:-1]
    assert len(wire) <= MAX_ENCODED_LEN + 1
    frames, dec = _decode_all(wire)
    assert frames == [frame]
    assert dec.stats.errors == 0


@_SETTINGS
@given(st.lists(fs.frames, min_size=1, max_size=8), st.data())
def test_concatenated_frames_survive_any_split(frames: list[Frame], data: st.DataObject) -> None:
    stream = SYNC + b"".join(encode(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    dec = Decoder()
    got: list[Frame] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got += dec.feed(stream[prev:cut])
        prev = cut
    assert got == frames
    assert dec.stats.errors == 0
    assert dec.stats.bytes_dropped == 0


@_SETTINGS
@given(st.binary(max_size=4096), st.data())
def test_garbage_never_raises_and_never_yields_a_bad_crc(
    garbage: bytes, data: st.DataObject
) -> None:
    chunk = data.draw(st.integers(1, 64))
    dec = Decoder(synced=True)
    got: list[Frame] = []
    for i in range(0, len(garbage), chunk):
        got += dec.feed(garbage[i : i + chunk])
    assert got == _reference_decode(garbage)


@_SETTINGS
@given(st.lists(fs.frames, min_size=2, max_size=6), st.binary(max_size=300), st.data())
def test_streaming_matches_reference_on_mixed_input(
    frames: list[Frame], garbage: bytes, data: st.DataObject
) -> None:
    parts = [encode(f) for f in frames]
    where = data.draw(st.integers(0, len(parts)))
    stream = b"".join(parts[:where]) + garbage + b"".join(parts[where:])
    got, _ = _decode_all(stream)
    assert got == _reference_decode(stream)
    # Garbage costs at most the frame it runs into: everything after that one decodes.
    tail = frames[where + 1 :]
    assert got[len(got) - len(tail) :] == tail


@_SETTINGS
@given(fs.frames, st.data())
def test_single_bit_flip_in_payload_is_rejected(frame: Frame, data: st.DataObject) -> None:
    wire = bytearray(encode(frame))
    body = cobs.decode(bytes(wire[:-1]))
    # Flip a bit of the decoded body and re-stuff it: CRC-16 detects every single-bit error.
    pos = data.draw(st.integers(0, len(body) * 8 - 1))
    corrupted = bytearray(body)
    corrupted[pos // 8] ^= 1 << (pos % 8)
    frames, dec = _decode_all(cobs.encode(bytes(corrupted)) + SYNC)
    assert frames == []
    assert dec.stats.crc_errors == 1


@_SETTINGS
@given(fs.frames, st.data())
def test_bit_flips_on_the_wire_never_yield_a_bad_frame(frame: Frame, data: st.DataObject) -> None:
    wire = bytearray(encode(frame))
    flips = data.draw(st.lists(st.integers(0, (len(wire) - 1) * 8 - 1), min_size=1, max_size=4))
    for pos in flips:
        wire[pos // 8] ^= 1 << (pos % 8)
    follower = encode(VitalsFrame(seq=1, hr_bpm=60.0))
    got, _ = _decode_all(bytes(wire) + follower)
    assert got == _reference_decode(bytes(wire) + follower)
    assert got[-1] == VitalsFrame(seq=1, hr_bpm=60.0)


@_SETTINGS
@given(fs.frames, st.data())
def test_truncated_frame_costs_at_most_itself(frame: Frame, data: st.DataObject) -> None:
    wire = encode(frame)
    cut = data.draw(st.integers(0, len(wire) - 2))
    nxt = VitalsFrame(seq=5, spo2_pct=97.0)
    after = VitalsFrame(seq=6, spo2_pct=96.0)
    got, dec = _decode_all(wire[:cut] + encode(nxt) + encode(after))
    assert got[-1] == after
    assert dec.stats.errors <= 1


def test_unsynced_decoder_drops_partial_start_without_error() -> None:
    wire = encode(VitalsFrame(seq=1, hr_bpm=80.0))
    dec = Decoder()
    assert dec.feed(wire[5:]) == []
    assert dec.stats.errors == 0
    assert dec.stats.bytes_dropped == len(wire) - 5 - 1
    assert dec.feed(encode(VitalsFrame(seq=2, hr_bpm=81.0))) == [VitalsFrame(seq=2, hr_bpm=81.0)]


def test_oversize_is_counted_and_resynchronises() -> None:
    dec = Decoder(synced=True)
    assert dec.feed(b"\x01" * (MAX_ENCODED_LEN + 10)) == []
    assert dec.stats.oversize == 1
    good = VitalsFrame(seq=3, rr_per_min=14.0)
    assert dec.feed(b"\x01" * 7 + SYNC + encode(good)) == [good]
    assert dec.stats.bytes_dropped == MAX_ENCODED_LEN + 17


def test_sequence_gaps_and_resets_are_counted() -> None:
    dec = Decoder(synced=True)
    seqs = [10, 11, 14, 15, 0, 1, 1, 2, 65535, 0]
    frames = [VitalsFrame(seq=s) for s in seqs]
    assert dec.feed(b"".join(encode(f) for f in frames)) == frames
    # 11->14 is a gap of 2 missed; 15->0 a reset; 1->1 a duplicate (reset); 2->65535 behind.
    assert dec.stats.seq_gaps == 1
    assert dec.stats.frames_missed == 2
    assert dec.stats.seq_resets == 3


def test_hello_after_wrap_is_not_a_reset() -> None:
    dec = Decoder(synced=True)
    dec.feed(encode(VitalsFrame(seq=65535)) + encode(HelloFrame(seq=0)))
    assert dec.stats.seq_resets == 0


@pytest.mark.parametrize(
    ("body", "counter"),
    [
        (bytes([2, 2, 0, 0, 0, 0, 0, 0]) + bytes(16), "malformed"),  # version 2
        (bytes([1, 0x7F, 0, 0, 0, 0, 0, 0]), "malformed"),  # unknown type
        (bytes([1, 2, 0, 0, 0, 0, 0, 0]) + bytes(15), "malformed"),  # VITALS one byte short
        (_WAVE_HDR + struct.pack("<BxHfhIH", 1, 250, 1.0, 0, 0, 3), "malformed"),  # no samples
        (_WAVE_HDR + struct.pack("<BxHfhIH", 9, 250, 1.0, 0, 0, 1) + bytes(2), "malformed"),
    ],
)
def test_malformed_frames_are_counted_and_skipped(body: bytes, counter: str) -> None:
    wire = cobs.encode(body + struct.pack("<H", crc16(body))) + SYNC
    good = StatusFrame(seq=1, flags=StatusFlag.PROBE_OFF, battery_pct=50)
    frames, dec = _decode_all(wire + encode(good))
    assert frames == [good]
    assert getattr(dec.stats, counter) == 1
    assert dec.last_error


@pytest.mark.parametrize(
    "frame",
    [
        VitalsFrame(hr_bpm=-1.0),
        VitalsFrame(spo2_pct=float("nan")),
        VitalsFrame(temp_c=400.0),
        VitalsFrame(seq=70000),
        WaveformFrame(samples=()),
        WaveformFrame(samples=(40000,)),
        WaveformFrame(samples=(1,), gain=0.0),
        StatusFrame(battery_pct=101),
    ],
)
def test_unrepresentable_values_are_refused_at_the_sender(frame: Frame) -> None:
    with pytest.raises(EncodeError):
        encode(frame)


def test_rounding_is_half_away_from_zero() -> None:
    # 722.5 and -12.5 are exact in binary, so this tests the rule, not float noise.
    frames, _ = _decode_all(encode(VitalsFrame(hr_bpm=72.25, temp_c=-0.125)))
    assert frames[0] == VitalsFrame(hr_bpm=72.3, temp_c=-0.13)


def test_reserved_bits_are_cleared_on_send_and_ignored_on_receipt() -> None:
    sent = StatusFrame(flags=StatusFlag(0x8000 | StatusFlag.LEAD_OFF))
    frames, _ = _decode_all(encode(sent))
    assert frames[0].flags == StatusFlag.LEAD_OFF  # type: ignore[union-attr]
    body = bytes([1, 4, 0, 0, 0, 0, 0, 0]) + struct.pack("<HBxH", 0xFF01, 50, 0)
    frames, dec = _decode_all(cobs.encode(body + struct.pack("<H", crc16(body))) + SYNC)
    assert frames == [StatusFrame(flags=StatusFlag.LEAD_OFF, battery_pct=50)]
    assert dec.stats.errors == 0


def test_ack_of_an_unknown_command_type_still_arrives() -> None:
    ack = AckFrame(acked_seq=9, acked_type=0x1F, result=AckResult.UNSUPPORTED)
    frames, dec = _decode_all(encode(ack))
    assert frames == [ack]
    assert dec.stats.errors == 0


# ---- PACE (0x06) ----------------------------------------------------------------------------

_PACE_HDR = bytes([1, 6, 0, 0, 0, 0, 0, 0])


def _wire(body: bytes) -> bytes:
    return cobs.encode(body + struct.pack("<H", crc16(body))) + SYNC


def test_pace_frame_exact_bytes() -> None:
    """PACE seq 7, 1000 ms, ECG lead II, pulses at samples 1000 and 1090, byte for byte."""
    frame = PaceFrame(seq=7, timestamp_ms=1000, samples=(1000, 1090))
    body = bytes.fromhex(
        "01 06 07 00 e8 03 00 00"  # header: version 1, type 0x06, seq 7, ts 1000
        "01 00 02 00"  # channel 1 (ECG II), reserved, n = 2
        "e8 03 00 00 42 04 00 00"  # sample indices 1000, 1090 (u32 LE)
    )
    assert crc16(body) == 0xD399
    wire = bytes.fromhex("04 01 06 07 03 e8 03 01 02 01 02 02 03 e8 03 01 03 42 04 01 03 99 d3 00")
    assert encode(frame) == wire == _wire(body)
    frames, dec = _decode_all(wire)
    assert frames == [frame]
    assert dec.stats.errors == 0


def test_pace_frame_round_trips_at_the_limits() -> None:
    frames = [
        PaceFrame(seq=1, samples=(0,)),
        PaceFrame(seq=2, channel=WaveformChannel.ECG_V, samples=(0xFFFFFFFE, 0xFFFFFFFF)),
        PaceFrame(seq=3, samples=tuple(range(MAX_PACE_PULSES))),
    ]
    got, dec = _decode_all(b"".join(encode(f) for f in frames))
    assert got == frames
    assert dec.stats.errors == 0
    assert isinstance(got[0], PaceFrame)
    assert got[0].frame_type == 0x06


@pytest.mark.parametrize(
    "frame",
    [
        PaceFrame(samples=()),
        PaceFrame(samples=tuple(range(MAX_PACE_PULSES + 1))),
        PaceFrame(samples=(-1,)),
        PaceFrame(samples=(1 << 32,)),
    ],
)
def test_pace_frame_unrepresentable_is_refused(frame: PaceFrame) -> None:
    with pytest.raises(EncodeError):
        encode(frame)


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # no head
        b"\x01\x00\x02",  # head one byte short
        struct.pack("<BxH", 1, 0),  # n = 0
        struct.pack("<BxH", 1, 2) + struct.pack("<I", 5),  # truncated: 1 index of 2
        struct.pack("<BxH", 1, 1) + struct.pack("<II", 5, 6),  # overlong: 2 indices for n = 1
        struct.pack("<BxH", 1, 1) + struct.pack("<I", 5)[:3],  # index cut short
        struct.pack("<BxH", 1, 256) + bytes(4 * 256),  # n = 256: 1028 bytes, over the limit
        struct.pack("<BxH", 9, 1) + struct.pack("<I", 5),  # unknown channel
    ],
)
def test_malformed_pace_frames_are_counted_and_skipped(payload: bytes) -> None:
    good = PaceFrame(seq=1, samples=(42,))
    frames, dec = _decode_all(_wire(_PACE_HDR + payload) + encode(good))
    assert frames == [good]
    assert dec.stats.malformed == 1
    assert dec.stats.frames == 1
    assert dec.last_error
