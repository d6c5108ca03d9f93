"""The ECG head on the edge (edge/ecg.py): the simulator's board streams ECG (and PPG) WAVEFORM
frames through the real codec into `EdgeCore` with `[ecg] enabled`; beats, heart rate, no false
rhythm alarm on a normal patient, lead-off as a technical alarm only, asystole, and asystole
downgraded while the PPG still shows a pulse."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from _data import shared_data_dir

from edge.config import parse_config
from edge.ecg import EcgDetector
from edge.events import AlertEvent, EventType
from edge.payloads import vitals_payload
from edge.runtime import EdgeCore
from firmware_bridge.codec import Decoder
from firmware_bridge.frames import Frame, WaveformChannel, WaveformFrame
from firmware_bridge.sim.board import Board
from firmware_bridge.sim.events import parse_event
from firmware_bridge.sim.generator import SyntheticPatient
from firmware_bridge.sim.model import PatientModel
from firmware_bridge.sim.profiles import get_profile
from firmware_bridge.sim.replay import RecordingSource, load_recording
from models.beats import BEAT_SYMBOLS
from tests import contract

Edit = Callable[[Frame, float], Frame | None]


def _core() -> EdgeCore:
    config = parse_config({"beds": [{"id": "bed1", "serial": "/dev/null"}],
                           "alarms": {"onset_s": 2.0, "technical_onset_s": 1.0},
                           "ecg": {"enabled": True}})
    return EdgeCore(config, now=0.0)


def _run(core: EdgeCore, seconds: int, events: tuple[str, ...] = (), edit: Edit | None = None,
         profile: str = "adult") -> list[AlertEvent]:
    """Board -> bytes -> decoder -> core, 200 ms at a time; every alert event."""
    model = PatientModel(SyntheticPatient(get_profile(profile), seed=7),
                         [parse_event(e) for e in events], seed=7)
    board, dec, out = Board(model), Decoder(), []
    for t_ms in range(0, seconds * 1000 + 1, 200):
        now = t_ms / 1000
        for frame in dec.feed(board.advance(t_ms)):
            kept = frame if edit is None else edit(frame, now)
            if kept is not None:
                core.on_frame("bed1", kept, now)
        if t_ms % 1000 == 0:
            out += core.evaluate(now)
    return out


def _ecg(core: EdgeCore) -> EcgDetector:
    (det,) = [d for d in core.detectors if isinstance(d, EcgDetector)]
    return det


def _new(events: list[AlertEvent]) -> list[str]:
    return [e.kind for e in events if e.event is EventType.NEW]


def test_a_normal_patient_has_beats_and_a_heart_rate_and_no_rhythm_alarm() -> None:
    core = _core()
    assert _new(_run(core, 120)) == []
    det = _ecg(core)
    hr = det.heart_rate_bpm("bed1")
    monitor_hr = core.beds["bed1"].vitals.latest().values["hr_bpm"]  # type: ignore[union-attr]
    assert hr is not None
    assert monitor_hr is not None
    assert abs(hr - monitor_hr) < 3.0
    st = det.state("bed1")
    assert st is not None
    assert st.quality is not None
    assert st.quality.usable
    summary = det.summary("bed1")
    assert summary is not None
    assert summary["rhythm"] == "regular"
    assert summary["hr_bpm"] == round(hr, 1)
    sample = core.beds["bed1"].vitals.latest()
    assert sample is not None
    payload = vitals_payload("dev", "bed1", sample, 1.7e9, ecg=summary)
    assert contract.errors("vigil/dev/vitals", payload) == []
    hr_per_s = core.beds["bed1"].vitals.window()[:, 1]  # bpm, one row a second
    expected = float(np.nansum(hr_per_s)) / 60.0  # beats the monitor's HR implies
    assert abs(st.beats - expected) < 0.05 * expected + 4  # learning period and latency


def test_lead_off_is_a_technical_alarm_only() -> None:
    core = _core()
    kinds = _new(_run(core, 90, ("lead_off@40:20",)))
    assert "lead_off" in kinds
    assert not {"asystole", "extreme_bradycardia", "ecg_no_beats"} & set(kinds)


def _silence_ecg_after(t0: float, *, drop_ppg: bool) -> Edit:
    """From ``t0`` on, the ECG is only baseline noise (no QRS) on the same sample counters."""
    rng = np.random.default_rng(0)

    def edit(frame: Frame, now: float) -> Frame | None:
        if not isinstance(frame, WaveformFrame) or now < t0:
            return frame
        if frame.channel is WaveformChannel.PPG:
            return None if drop_ppg else frame
        noise = rng.normal(0.0, 0.03, len(frame.samples)) * frame.gain + frame.baseline
        return dataclasses.replace(frame, samples=tuple(int(v) for v in noise))

    return edit


def test_asystole_and_its_downgrade_when_the_ppg_still_shows_a_pulse() -> None:
    core = _core()
    kinds = _new(_run(core, 70, edit=_silence_ecg_after(50.0, drop_ppg=True)))
    assert "asystole" in kinds
    (alert,) = [e for e in _run(_core(), 70, edit=_silence_ecg_after(50.0, drop_ppg=True))
                if e.kind == "asystole" and e.event is EventType.NEW]
    assert alert.priority.label == "high"
    assert 54.0 <= alert.time_s <= 60.0  # 4 s without a beat, the detector's 1 s, onset 2 s
    core = _core()
    kinds = _new(_run(core, 70, edit=_silence_ecg_after(50.0, drop_ppg=False)))
    assert "ecg_no_beats" in kinds
    assert "asystole" not in kinds


def test_a_replayed_mitdb_record_through_the_board_finds_its_reference_beats() -> None:
    """Real signal, whole path: MIT-BIH 101 replayed by the simulator's board (int16 on the
    wire, 200 ms chunks) into the ECG head. The beats it finds match the expert annotation in
    number (within 1 %) and no rhythm alarm is raised on this sinus rhythm."""
    wfdb = pytest.importorskip("wfdb")
    path = shared_data_dir("mitdb", "101")
    seconds = 180
    rec = load_recording(path, max_duration_s=float(seconds))
    ann = wfdb.rdann(str(path), "atr", sampto=seconds * 360)
    reference = int(np.isin(np.asarray(ann.symbol), sorted(BEAT_SYMBOLS)).sum())
    core, dec = _core(), Decoder()
    board = Board(PatientModel(RecordingSource(rec, loop=False), seed=1))
    alerts: list[AlertEvent] = []
    for t_ms in range(0, seconds * 1000 + 1, 200):
        for frame in dec.feed(board.advance(t_ms)):
            core.on_frame("bed1", frame, t_ms / 1000)
        if t_ms % 1000 == 0:
            alerts += core.evaluate(t_ms / 1000)
    st = _ecg(core).state("bed1")
    assert st is not None
    # The detector learns for its first second and reports a beat 1 s after its R peak.
    assert abs(st.beats - reference) <= 0.01 * reference + 3, (st.beats, reference)
    assert [e.kind for e in alerts if not e.technical] == []
