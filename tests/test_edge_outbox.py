"""Outbox (bounded, ordered, PUBACK-driven), payloads and the alert printer: pure parts."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from edge.alerts import AlertPrinter, format_alert
from edge.bedstate import BedState, VitalsRing, WaveformRing
from edge.ecg import EcgDetector
from edge.events import AlertEvent, EventType, Priority
from edge.outbox import Outbox
from edge.payloads import OFFLINE_PAYLOAD, alert_payload, iso_utc, vitals_payload
from firmware_bridge.frames import PaceFrame, VitalsFrame, WaveformChannel, WaveformFrame
from models.beats import BeatSpec, BeatStream

L, M, H = Priority.LOW, Priority.MEDIUM, Priority.HIGH


def _fill(box: Outbox, priorities: list[Priority]) -> None:
    for i, p in enumerate(priorities):
        box.push(p, "t", b"x", f"{p.label}{i}")


def test_outbox_hands_out_in_order_within_window_and_acks_by_mid() -> None:
    box = Outbox(100, window=3)
    _fill(box, [M, H, L, M, M])
    handed = []
    while (item := box.next_to_hand()) is not None:
        box.mark_handed(item, 100 + len(handed))
        handed.append(item.label)
    assert handed == ["medium0", "high1", "low2"]  # window of 3, push order
    assert box.ack(999) is None  # not ours (e.g. a status message)
    acked = box.ack(101)
    assert acked is not None
    assert acked.label == "high1"
    assert box.handed == 2
    item = box.next_to_hand()
    assert item is not None
    assert item.label == "medium3"
    assert len(box) == 4
    assert box.acked == 1


def test_outbox_drops_oldest_lowest_priority_waiting_first() -> None:
    box = Outbox(4, window=1)
    _fill(box, [L, H, L, M])
    first = box.next_to_hand()
    assert first is not None
    box.mark_handed(first, 1)  # low0 is in the client's hands: cannot be dropped
    victim = box.push(H, "t", b"x", "high4")
    assert victim is not None
    assert victim.label == "low2"
    assert box.waiting_labels() == ["low0", "high1", "medium3", "high4"]
    victim = box.push(M, "t", b"x", "medium5")
    assert victim is not None
    assert victim.label == "medium3"  # oldest medium among waiting + new
    victim = box.push(L, "t", b"x", "low6")
    assert victim is not None
    assert victim.label == "low6"  # the newcomer is the least important
    assert box.dropped == {L: 2, M: 1, H: 0}
    assert box.waiting_labels() == ["low0", "high1", "high4", "medium5"]


def test_outbox_rejects_silly_sizes() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Outbox(0)


def _event(**kw: object) -> AlertEvent:
    base: dict[str, object] = {
        "id": "3f2a1b2c-0000-4000-8000-000000000000",
        "seq": 0,
        "event": EventType.NEW,
        "bed": "bed1",
        "kind": "spo2_low",
        "priority": H,
        "message": "SpO2 84 % < 85 %",
        "model": "fixed-limits/1",
        "technical": False,
        "values": {"spo2_pct": 84.04},
        "thresholds": {"spo2_low_pct.high": 85.0},
        "time_s": 10.0,
        "started_s": 5.0,
    }
    base.update(kw)
    return AlertEvent(**base)  # type: ignore[arg-type]


def test_alert_payload_shape() -> None:
    data = json.loads(alert_payload("icu-1", _event(), 1_700_000_000.0, 1_699_999_995.0))
    assert data == {
        "id": "3f2a1b2c-0000-4000-8000-000000000000",
        "seq": 0,
        "event": "new",
        "time": "2023-11-14T22:13:20.000Z",
        "started": "2023-11-14T22:13:15.000Z",
        "device": "icu-1",
        "bed": "bed1",
        "priority": "high",
        "kind": "spo2_low",
        "technical": False,
        "message": "SpO2 84 % < 85 %",
        "values": {"spo2_pct": 84.0},
        "thresholds": {"spo2_low_pct.high": 85.0},
        "model": "fixed-limits/1",
        "scores": {},
        "votes": {},
        "reason": "",
        "acknowledged": False,
        "latched": False,
        "silenced_until": None,
        "explanation": "",
        "drivers": [],
    }
    paused = replace(_event(), event=EventType.UPDATE, reason="audio paused",
                     silenced_until_s=_event().time_s + 60.0)
    data = json.loads(alert_payload("icu-1", paused, 1_700_000_000.0, 1_699_999_995.0))
    assert data["silenced_until"] == "2023-11-14T22:14:20.000Z"  # 60 s after "time"
    assert data["reason"] == "audio paused"
    assert json.loads(OFFLINE_PAYLOAD) == {"state": "offline"}
    assert iso_utc(0.25) == "1970-01-01T00:00:00.250Z"


def test_vitals_payload_has_units_in_keys_and_null_for_invalid() -> None:
    ring = VitalsRing(4)
    ring.append(1.0, VitalsFrame(hr_bpm=72.04, spo2_pct=None, temp_c=36.987))
    sample = ring.latest()
    assert sample is not None
    data = json.loads(vitals_payload("icu-1", "bed1", sample, 0.0))
    assert data["values"] == {
        "hr_bpm": 72.0,
        "spo2_pct": None,
        "rr_per_min": None,
        "sbp_mmhg": None,
        "dbp_mmhg": None,
        "map_mmhg": None,
        "temp_c": 36.99,
    }


def test_vitals_ring_wraps_and_keeps_order() -> None:
    ring = VitalsRing(3)
    for t in range(5):
        ring.append(float(t), VitalsFrame(hr_bpm=60.0 + t))
    window = ring.window()
    assert window.shape == (3, 8)
    assert list(window[:, 0]) == [2.0, 3.0, 4.0]
    assert list(window[:, 1]) == [62.0, 63.0, 64.0]
    assert np.isnan(window[:, 2]).all()


def test_waveform_ring_converts_and_marks_gaps() -> None:
    ring = WaveformRing(WaveformChannel.ECG_II, rate_hz=4, seconds=2)  # 8 samples
    ring.append(WaveformFrame(rate_hz=4, gain=2.0, baseline=10, first_sample=0, samples=(12, 14)))
    ring.append(WaveformFrame(rate_hz=4, gain=2.0, baseline=10, first_sample=4, samples=(16,)))
    assert ring.samples_missed == 2
    out = ring.latest()
    assert out[:2].tolist() == [1.0, 2.0]
    assert np.isnan(out[2:4]).all()
    assert out[4] == 3.0
    ring.append(WaveformFrame(rate_hz=4, gain=1.0, first_sample=5, samples=tuple(range(20))))
    assert ring.latest().tolist() == [float(v) for v in range(12, 20)]


def test_pace_pulses_are_kept_as_ring_positions_across_gaps_and_counter_wrap() -> None:
    """edge/ecg.py rule 5 reads pulses by ring position: board sample indices map through
    gaps (NaN fill) and the u32 counter's wrap; a pulse before any sample, or not after the
    last one kept (repeated frame), is counted and dropped, never reordered."""
    bed = BedState("bed1", now=0.0, vitals_history_s=10, waveform_history_s=2)
    bed.apply(PaceFrame(samples=(3,)), 0.0)  # no ECG sample yet: nowhere to put it
    top = (1 << 32) - 4
    bed.apply(WaveformFrame(rate_hz=4, first_sample=top, samples=(0, 0, 0)), 0.1)
    ring = bed.waveforms[WaveformChannel.ECG_II]
    bed.apply(PaceFrame(samples=(top + 1,)), 0.1)
    bed.apply(WaveformFrame(rate_hz=4, first_sample=1, samples=(0, 0)), 0.2)  # wrapped, 2 lost
    bed.apply(PaceFrame(samples=(2,)), 0.2)
    bed.apply(PaceFrame(samples=(2, top + 3)), 0.3)  # repeated and older: dropped
    assert list(ring.pace) == [1, 6]
    assert ring.position_of(1) == 5
    assert ring.written == 7
    assert ring.pace_dropped == 2
    hits = ring.paced(np.array([2, 4, 7, 9], dtype=np.int64), before=1, after=1)
    assert hits.tolist() == [True, False, True, False]
    other = BedState("bed2", now=0.0, vitals_history_s=10, waveform_history_s=2)
    other.apply(PaceFrame(samples=(3,)), 0.0)
    assert other.waveforms == {}


def test_a_chest_lead_is_read_at_lead_ii_board_sample_indices() -> None:
    """edge/ecg.py rule 6: the chest lead's samples at the same board sample counter values
    as lead II's, whichever ring started first; NaN where not (yet) received."""
    bed = BedState("bed1", now=0.0, vitals_history_s=10, waveform_history_s=4)
    bed.apply(WaveformFrame(rate_hz=4, gain=1.0, first_sample=10, samples=(1, 2, 3, 4)), 0.0)
    bed.apply(WaveformFrame(channel=WaveformChannel.ECG_V, rate_hz=4, gain=1.0,
                            first_sample=12, samples=(30, 40)), 0.0)
    bed.apply(WaveformFrame(rate_hz=4, gain=1.0, first_sample=14, samples=(5, 6)), 0.1)
    lead_ii = bed.waveforms[WaveformChannel.ECG_II]
    chest = bed.waveforms[WaveformChannel.ECG_V]
    assert lead_ii.index_of(2) == 12
    stream = BeatStream(250.0, BeatSpec(leads=2))
    got = EcgDetector._second_lead(bed, lead_ii, stream, 1, 5)  # indices 11 to 15
    assert got is not None
    assert np.array_equal(got, [np.nan, 30.0, 40.0, np.nan, np.nan], equal_nan=True)
    assert np.array_equal(chest.between(0, 3), [30.0, 40.0, np.nan], equal_nan=True)
    assert np.isnan(chest.between(-5, 3)).all()
    assert EcgDetector._second_lead(bed, lead_ii, BeatStream(250.0), 1, 5) is None  # 1 lead


def test_bed_state_allocates_waveform_per_channel() -> None:
    bed = BedState("bed1", now=0.0, vitals_history_s=10, waveform_history_s=2)
    bed.apply(WaveformFrame(channel=WaveformChannel.PPG, rate_hz=50, samples=(1, 2, 3)), 1.0)
    assert bed.waveforms[WaveformChannel.PPG].capacity == 100
    assert bed.last_frame_s == 1.0
    assert bed.last_vitals_s is None
    assert bed.fresh_vitals(1.0, 3.0) is None


def test_printer_formats_dedups_and_reports_offline_once() -> None:
    printer = AlertPrinter()
    msg = alert_payload("icu-1", _event(), 1_700_000_000.0, 1_699_999_995.0)
    lines = printer.handle("vigil/icu-1/alert", msg)
    assert len(lines) == 1
    line = lines[0]
    for part in ("bed1", "HIGH", "NEW", "spo2_low", "SpO2 84 % < 85 %", "spo2_pct=84", "icu-1"):
        assert part in line
    assert printer.handle("vigil/icu-1/alert", msg) == []  # re-delivery
    assert printer.duplicates == 1
    end = alert_payload("icu-1", _event(seq=1, event=EventType.END), 1.0, 0.0)
    assert "END" in printer.handle("vigil/icu-1/alert", end)[0]
    assert printer.alerts == 2
    offline = printer.handle("vigil/icu-1/status", OFFLINE_PAYLOAD)
    assert len(offline) == 1
    assert "device icu-1 is OFFLINE" in offline[0]
    assert printer.handle("vigil/icu-1/status", OFFLINE_PAYLOAD) == []
    assert printer.handle("vigil/icu-1/alert", b"not json") == []
    assert printer.malformed == 1


def test_printer_json_lines() -> None:
    printer = AlertPrinter(as_json=True)
    msg = alert_payload("icu-1", _event(), 0.0, 0.0)
    (line,) = printer.handle("vigil/icu-1/alert", msg)
    assert json.loads(line) == json.loads(msg)
    (status,) = printer.handle("vigil/icu-1/status", OFFLINE_PAYLOAD)
    assert json.loads(status) == {"device": "icu-1", "state": "offline"}
    assert format_alert({}).count("?") >= 3  # tolerant of foreign payloads
