"""Sans-I/O codec for the Vigil board protocol (PROTOCOL.md is normative).

`encode(frame)` turns a typed frame into wire bytes; `Decoder.feed(data)` takes whatever bytes
the link delivered (any split, any garbage) and returns the frames that check out. Nothing here
touches a port, a thread or a clock, so the same code runs in the reader, the simulator, the
tests and the benchmarks.
"""

from __future__ import annotations

import binascii
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Final

from cobs import cobs

from firmware_bridge.frames import (
    PROTOCOL_VERSION,
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

__all__ = [
    "MAX_DECODED_LEN",
    "MAX_ENCODED_LEN",
    "MAX_PACE_PULSES",
    "MAX_PAYLOAD_LEN",
    "MAX_WAVEFORM_SAMPLES",
    "SYNC",
    "DecodeError",
    "Decoder",
    "DecoderStats",
    "EncodeError",
    "crc16",
    "decode_frame",
    "encode",
]


SYNC: Final = b"\x00"
"""The frame delimiter; a board sends one alone at boot (PROTOCOL.md section 1)."""

_HEADER = struct.Struct("<BBHI")
_CRC = struct.Struct("<H")
HEADER_LEN: Final = _HEADER.size
MAX_PAYLOAD_LEN: Final = 1024
MAX_DECODED_LEN: Final = HEADER_LEN + MAX_PAYLOAD_LEN + _CRC.size
# COBS adds one byte per started block of 254 bytes.
MAX_ENCODED_LEN: Final = MAX_DECODED_LEN + math.ceil(MAX_DECODED_LEN / 254)

_HELLO = struct.Struct("<BBBxIHHHHH")
_VITALS = struct.Struct("<BxHHHHHHh")
_WAVE_HEAD = struct.Struct("<BxHfhIH")
_STATUS = struct.Struct("<HBxH")
_ACK = struct.Struct("<HBBI")
_PING = struct.Struct("<I")
_SET_RATES = struct.Struct("<HHH")
_PACE_HEAD = struct.Struct("<BxH")

MAX_WAVEFORM_SAMPLES: Final = (MAX_PAYLOAD_LEN - _WAVE_HEAD.size) // 2
MAX_PACE_PULSES: Final = 255
"""Most pulse indices one PACE frame carries (PROTOCOL.md 0x06); a board splits longer lists."""

_KNOWN_TYPES: Final = {int(t): t for t in FrameType}
# Bits a sender may set; the rest are reserved: sent as 0, ignored on receipt (PROTOCOL.md 4).
_STATUS_BITS: Final = sum(int(f) for f in StatusFlag)
_SENSOR_BITS: Final = sum(int(f) for f in Sensor)
_SEQ_MOD: Final = 1 << 16
_SEQ_HALF: Final = 1 << 15
_BATTERY_UNKNOWN: Final = 0xFF

# Vitals wire scaling: (field, validity bit, scale, struct code of the wire integer).
_VITAL_FIELDS: Final = (
    ("hr_bpm", 0x01, 10, "H"),
    ("spo2_pct", 0x02, 10, "H"),
    ("rr_per_min", 0x04, 10, "H"),
    ("sbp_mmhg", 0x08, 10, "H"),
    ("dbp_mmhg", 0x10, 10, "H"),
    ("map_mmhg", 0x20, 10, "H"),
    ("temp_c", 0x40, 100, "h"),
)
_INT_RANGE: Final = {"H": (0, 0xFFFF), "h": (-0x8000, 0x7FFF)}


class EncodeError(ValueError):
    """A frame field cannot be represented on the wire (out of range, too many samples)."""


class DecodeError(ValueError):
    """A delimited chunk is not a valid frame; ``kind`` names the counter it belongs to."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), as PROTOCOL.md section 3 defines."""
    return binascii.crc_hqx(data, 0xFFFF)


def _check_int(name: str, value: int, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise EncodeError(f"{name}={value} is outside {lo}..{hi}")
    return value


def _scaled(name: str, value: float, scale: int, code: str) -> int:
    """Physical value -> wire integer, rounding half away from zero like the C encoder."""
    if not math.isfinite(value):
        raise EncodeError(f"{name}={value} is not a finite number")
    scaled = value * scale
    wire = math.floor(scaled + 0.5) if scaled >= 0 else -math.floor(-scaled + 0.5)
    lo, hi = _INT_RANGE[code]
    if not lo <= wire <= hi:
        raise EncodeError(
            f"{name}={value} is outside {lo / scale}..{hi / scale} representable on the wire"
        )
    return wire


def _vitals_payload(frame: VitalsFrame) -> bytes:
    flags = 0
    values = []
    for name, bit, scale, code in _VITAL_FIELDS:
        value = getattr(frame, name)
        if value is None:
            values.append(0)
        else:
            flags |= bit
            values.append(_scaled(name, value, scale, code))
    return _VITALS.pack(flags, *values)


def _waveform_payload(frame: WaveformFrame) -> bytes:
    n = len(frame.samples)
    _check_int("number of samples", n, 1, MAX_WAVEFORM_SAMPLES)
    _check_int("rate_hz", frame.rate_hz, 1, 0xFFFF)
    if not (math.isfinite(frame.gain) and frame.gain > 0):
        raise EncodeError(f"gain={frame.gain} must be a finite number > 0")
    _check_int("baseline", frame.baseline, -0x8000, 0x7FFF)
    _check_int("first_sample", frame.first_sample, 0, 0xFFFFFFFF)
    head = _WAVE_HEAD.pack(
        int(frame.channel), frame.rate_hz, frame.gain, frame.baseline, frame.first_sample, n
    )
    try:
        body = struct.pack(f"<{n}h", *frame.samples)
    except struct.error as exc:
        raise EncodeError(f"waveform samples must be int16: {exc}") from exc
    return head + body


def _pace_payload(frame: PaceFrame) -> bytes:
    n = len(frame.samples)
    _check_int("number of pace pulses", n, 1, MAX_PACE_PULSES)
    for index in frame.samples:
        _check_int("pace sample index", index, 0, 0xFFFFFFFF)
    return _PACE_HEAD.pack(int(frame.channel), n) + struct.pack(f"<{n}I", *frame.samples)


def _status_payload(frame: StatusFrame) -> bytes:
    battery = _BATTERY_UNKNOWN if frame.battery_pct is None else frame.battery_pct
    _check_int("battery_pct", battery, 0, 100 if frame.battery_pct is not None else 0xFF)
    _check_int("flags", int(frame.flags), 0, 0xFFFF)
    _check_int("fault_code", frame.fault_code, 0, 0xFFFF)
    return _STATUS.pack(int(frame.flags) & _STATUS_BITS, battery, frame.fault_code)


def _hello_payload(frame: HelloFrame) -> bytes:
    major, minor, patch = frame.firmware_version
    for name, value in (("firmware major", major), ("minor", minor), ("patch", patch)):
        _check_int(name, value, 0, 0xFF)
    _check_int("board_id", frame.board_id, 0, 0xFFFFFFFF)
    for name in ("ecg_rate_hz", "ppg_rate_hz", "resp_rate_hz", "vitals_period_ms"):
        _check_int(name, getattr(frame, name), 0, 0xFFFF)
    _check_int("sensors", int(frame.sensors), 0, 0xFFFF)
    return _HELLO.pack(
        major,
        minor,
        patch,
        frame.board_id,
        int(frame.sensors) & _SENSOR_BITS,
        frame.ecg_rate_hz,
        frame.ppg_rate_hz,
        frame.resp_rate_hz,
        frame.vitals_period_ms,
    )


def _ack_payload(frame: AckFrame) -> bytes:
    _check_int("acked_seq", frame.acked_seq, 0, 0xFFFF)
    _check_int("acked_type", int(frame.acked_type), 0, 0xFF)
    _check_int("nonce", frame.nonce, 0, 0xFFFFFFFF)
    return _ACK.pack(frame.acked_seq, int(frame.acked_type), int(frame.result), frame.nonce)


def _ping_payload(frame: PingFrame) -> bytes:
    _check_int("nonce", frame.nonce, 0, 0xFFFFFFFF)
    return _PING.pack(frame.nonce)


def _set_rates_payload(frame: SetRatesFrame) -> bytes:
    for name in ("ecg_rate_hz", "ppg_rate_hz", "vitals_period_ms"):
        _check_int(name, getattr(frame, name), 0, 0xFFFF)
    return _SET_RATES.pack(frame.ecg_rate_hz, frame.ppg_rate_hz, frame.vitals_period_ms)


_PAYLOAD_ENCODERS: Final[dict[type, Callable[[Any], bytes]]] = {
    VitalsFrame: _vitals_payload,
    WaveformFrame: _waveform_payload,
    PaceFrame: _pace_payload,
    StatusFrame: _status_payload,
    HelloFrame: _hello_payload,
    AckFrame: _ack_payload,
    PingFrame: _ping_payload,
    SetRatesFrame: _set_rates_payload,
}


def encode(frame: Frame) -> bytes:
    """Frame -> wire bytes: COBS(header | payload | crc16 LE) followed by the 0x00 delimiter.

    Raises EncodeError when a field does not fit its wire type, so a bad value is caught at the
    sender instead of arriving as a silently wrapped number.
    """
    _check_int("seq", frame.seq, 0, 0xFFFF)
    _check_int("timestamp_ms", frame.timestamp_ms, 0, 0xFFFFFFFF)
    payload_of = _PAYLOAD_ENCODERS.get(type(frame))
    if payload_of is None:
        raise EncodeError(f"not a frame: {type(frame).__name__}")
    body = _HEADER.pack(PROTOCOL_VERSION, int(frame.frame_type), frame.seq, frame.timestamp_ms)
    body += payload_of(frame)
    body += _CRC.pack(crc16(body))
    return bytes(cobs.encode(body)) + SYNC


def _expect_len(kind: FrameType, payload: bytes, size: int) -> None:
    if len(payload) != size:
        raise DecodeError("malformed", f"{kind.name} payload is {len(payload)} bytes, not {size}")


def _head(kind: FrameType, head: struct.Struct, payload: bytes) -> tuple[Any, ...]:
    """The fixed head of a variable-length payload, or malformed when it is cut short."""
    if len(payload) < head.size:
        raise DecodeError("malformed", f"{kind.name} payload is only {len(payload)} bytes")
    return head.unpack_from(payload)


def _channel(kind: FrameType, code: int) -> WaveformChannel:
    """The waveform channel ``code`` names, or malformed for a code this side does not know."""
    try:
        return WaveformChannel(code)
    except ValueError:
        raise DecodeError("malformed", f"unknown waveform channel {code} in {kind.name}"
                          ) from None


def _parse_waveform(seq: int, ts: int, payload: bytes) -> WaveformFrame:
    """WAVEFORM payload: 16-byte head (channel, rate, gain, baseline, first, n), n int16."""
    channel, rate, gain, baseline, first, n = _head(FrameType.WAVEFORM, _WAVE_HEAD, payload)
    _expect_len(FrameType.WAVEFORM, payload, _WAVE_HEAD.size + 2 * n)
    if n == 0 or rate == 0 or not (math.isfinite(gain) and gain > 0):
        raise DecodeError("malformed", f"WAVEFORM with n={n}, rate={rate}, gain={gain}")
    chan = _channel(FrameType.WAVEFORM, channel)
    samples = struct.unpack_from(f"<{n}h", payload, _WAVE_HEAD.size)
    return WaveformFrame(
        seq=seq,
        timestamp_ms=ts,
        channel=chan,
        rate_hz=rate,
        gain=gain,
        baseline=baseline,
        first_sample=first,
        samples=samples,
    )


def _parse_pace(seq: int, ts: int, payload: bytes) -> PaceFrame:
    """PACE payload: channel, reserved, u16 n (1..255), n u32 sample indices."""
    channel, n = _head(FrameType.PACE, _PACE_HEAD, payload)
    _expect_len(FrameType.PACE, payload, _PACE_HEAD.size + 4 * n)
    if not 1 <= n <= MAX_PACE_PULSES:
        raise DecodeError("malformed", f"PACE with n={n} (1..{MAX_PACE_PULSES})")
    chan = _channel(FrameType.PACE, channel)
    samples = struct.unpack_from(f"<{n}I", payload, _PACE_HEAD.size)
    return PaceFrame(seq=seq, timestamp_ms=ts, channel=chan, samples=samples)


def _parse(ftype: int, seq: int, ts: int, payload: bytes) -> Frame:  # noqa: PLR0911
    try:
        kind = FrameType(ftype)
    except ValueError:
        raise DecodeError("malformed", f"unknown frame type 0x{ftype:02x}") from None
    if kind is FrameType.VITALS:
        _expect_len(kind, payload, _VITALS.size)
        flags, *raw = _VITALS.unpack(payload)
        values: dict[str, float | None] = {}
        for (name, bit, scale, _code), wire in zip(_VITAL_FIELDS, raw, strict=True):
            values[name] = wire / scale if flags & bit else None
        return VitalsFrame(seq=seq, timestamp_ms=ts, **values)
    if kind is FrameType.WAVEFORM:
        return _parse_waveform(seq, ts, payload)
    if kind is FrameType.PACE:
        return _parse_pace(seq, ts, payload)
    if kind is FrameType.STATUS:
        _expect_len(kind, payload, _STATUS.size)
        flags, battery, fault = _STATUS.unpack(payload)
        return StatusFrame(
            seq=seq,
            timestamp_ms=ts,
            flags=StatusFlag(flags & _STATUS_BITS),
            battery_pct=None if battery == _BATTERY_UNKNOWN else min(battery, 100),
            fault_code=fault,
        )
    if kind is FrameType.HELLO:
        _expect_len(kind, payload, _HELLO.size)
        major, minor, patch, board, sensors, ecg, ppg, resp, period = _HELLO.unpack(payload)
        return HelloFrame(
            seq=seq,
            timestamp_ms=ts,
            firmware_version=(major, minor, patch),
            board_id=board,
            sensors=Sensor(sensors & _SENSOR_BITS),
            ecg_rate_hz=ecg,
            ppg_rate_hz=ppg,
            resp_rate_hz=resp,
            vitals_period_ms=period,
        )
    if kind is FrameType.ACK:
        _expect_len(kind, payload, _ACK.size)
        acked_seq, acked_type, result, nonce = _ACK.unpack(payload)
        try:
            ack_result = AckResult(result)
        except ValueError:
            raise DecodeError("malformed", f"ACK with unknown result {result}") from None
        return AckFrame(
            seq=seq,
            timestamp_ms=ts,
            acked_seq=acked_seq,
            acked_type=_KNOWN_TYPES.get(acked_type, acked_type),
            result=ack_result,
            nonce=nonce,
        )
    if kind is FrameType.PING:
        _expect_len(kind, payload, _PING.size)
        (nonce,) = _PING.unpack(payload)
        return PingFrame(seq=seq, timestamp_ms=ts, nonce=nonce)
    _expect_len(kind, payload, _SET_RATES.size)
    ecg, ppg, period = _SET_RATES.unpack(payload)
    return SetRatesFrame(
        seq=seq, timestamp_ms=ts, ecg_rate_hz=ecg, ppg_rate_hz=ppg, vitals_period_ms=period
    )


def decode_frame(chunk: bytes) -> Frame:
    """One delimited chunk (COBS-encoded, without the 0x00) -> frame, or DecodeError."""
    if len(chunk) > MAX_ENCODED_LEN:
        raise DecodeError("oversize", f"frame of {len(chunk)} encoded bytes")
    try:
        body = bytes(cobs.decode(chunk))
    except cobs.DecodeError as exc:
        raise DecodeError("malformed", f"COBS: {exc}") from None
    if len(body) < HEADER_LEN + _CRC.size:
        raise DecodeError("malformed", f"frame of {len(body)} bytes is shorter than a header")
    (crc_wire,) = _CRC.unpack_from(body, len(body) - _CRC.size)
    if crc16(body[: -_CRC.size]) != crc_wire:
        raise DecodeError("crc_errors", "CRC mismatch")
    version, ftype, seq, ts = _HEADER.unpack_from(body)
    if version != PROTOCOL_VERSION:
        raise DecodeError("malformed", f"unsupported protocol version {version}")
    return _parse(ftype, seq, ts, body[HEADER_LEN : -_CRC.size])


@dataclass(slots=True)
class DecoderStats:
    """Link health counters (PROTOCOL.md section 5). Monotonic; read them, do not reset."""

    frames: int = 0
    crc_errors: int = 0
    malformed: int = 0
    oversize: int = 0
    seq_gaps: int = 0
    frames_missed: int = 0
    seq_resets: int = 0
    bytes_dropped: int = 0

    @property
    def errors(self) -> int:
        """Frames discarded for any reason."""
        return self.crc_errors + self.malformed + self.oversize

    def as_dict(self) -> dict[str, int]:
        """Plain counters, for status messages and logs."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Decoder:
    """Incremental decoder: feed it bytes as they arrive, get back the valid frames.

    It never raises on input. A chunk that fails (COBS, CRC, length, type, version) is counted
    and dropped; decoding resumes at the next 0x00, so garbage costs at most the frame it ran
    into. Sequence numbers are tracked per decoder (one decoder per link direction).
    """

    def __init__(self, *, synced: bool = False) -> None:
        """``synced=False`` drops bytes up to the first delimiter (joining a stream midway)."""
        self.stats = DecoderStats()
        self.last_error: str | None = None
        self._buf = bytearray()
        self._synced = synced
        self._discarding = False
        self._expected_seq: int | None = None

    def reset(self, *, synced: bool = False) -> None:
        """Forget partial input and sequence tracking (after a reconnect); counters remain."""
        self._buf.clear()
        self._synced = synced
        self._discarding = False
        self._expected_seq = None

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data``; return the frames completed by it, in order."""
        out: list[Frame] = []
        start = 0
        end = len(data)
        while start < end:
            zero = data.find(0, start)
            if zero < 0:
                self._accumulate(data, start, end)
                break
            if not self._synced:
                self.stats.bytes_dropped += len(self._buf) + (zero - start)
                self._buf.clear()
                self._synced = True
            elif self._discarding:
                self.stats.bytes_dropped += zero - start
                self._discarding = False
            elif self._buf:
                self._buf += data[start:zero]
                self._chunk(bytes(self._buf), out)
                self._buf.clear()
            elif zero > start:
                self._chunk(data[start:zero], out)
            start = zero + 1
        return out

    def _accumulate(self, data: bytes, start: int, end: int) -> None:
        if not self._synced or self._discarding:
            self.stats.bytes_dropped += end - start
            return
        self._buf += data[start:end]
        if len(self._buf) > MAX_ENCODED_LEN:
            self.stats.oversize += 1
            self.stats.bytes_dropped += len(self._buf)
            self.last_error = f"no delimiter within {MAX_ENCODED_LEN} bytes"
            self._buf.clear()
            self._discarding = True

    def _chunk(self, chunk: bytes, out: list[Frame]) -> None:
        try:
            frame = decode_frame(chunk)
        except DecodeError as exc:
            setattr(self.stats, exc.kind, getattr(self.stats, exc.kind) + 1)
            self.stats.bytes_dropped += len(chunk)
            self.last_error = str(exc)
            return
        self._track_seq(frame)
        self.stats.frames += 1
        out.append(frame)

    def _track_seq(self, frame: Frame) -> None:
        expected = self._expected_seq
        self._expected_seq = (frame.seq + 1) % _SEQ_MOD
        if expected is None or frame.seq == expected:
            return
        ahead = (frame.seq - expected) % _SEQ_MOD
        if frame.seq == 0 or ahead >= _SEQ_HALF:
            self.stats.seq_resets += 1
        else:
            self.stats.seq_gaps += 1
            self.stats.frames_missed += ahead
