"""Running a simulated board for tests: its frames over a span, with a SET_RATES on the way."""

from __future__ import annotations

from firmware_bridge.codec import Decoder, encode
from firmware_bridge.frames import Frame, SetRatesFrame
from firmware_bridge.sim.board import Board


def board_frames(board: Board, end_ms: int, step_ms: int, *,
                 ecg_rate_at: tuple[int, int] | None = None) -> list[Frame]:
    """Every frame ``board`` sends from 0 to ``end_ms`` (read every ``step_ms``), decoded
    without error; ``ecg_rate_at`` (ms, Hz) sends a SET_RATES of the ECG rate at that time."""
    dec = Decoder()
    frames: list[Frame] = []
    for t in range(0, end_ms + 1, step_ms):
        frames += dec.feed(board.advance(t))
        if ecg_rate_at is not None and t == ecg_rate_at[0]:
            board.receive(encode(SetRatesFrame(seq=1, ecg_rate_hz=ecg_rate_at[1])))
    assert dec.stats.errors == 0
    return frames
