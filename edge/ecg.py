"""The ECG head on the edge: beats from the ECG stream, signal quality, rhythm alarms.

Why a `edge.detect.Detector` of its own: it follows the ECG WAVEFORM stream of each bed (the
vitals detectors look at VITALS frames) and raises the rhythm alarms through the same alarm
manager, journal and MQTT contract as every other alert. Per bed and per call:

1. The ECG samples that reached the bed's ring since the last call (`WaveformRing.since`) go to
   that bed's streaming `models.qrs.QrsDetector`. A beat's edge time is the stream's start
   plus its sample index / fs, so RR intervals are exact; the start is the smallest of the
   last 60 estimates "now minus samples so far / fs" (samples arrive late, never early, and
   a board clock that drifts is followed). More samples than the ring holds since the last
   call (the runtime stalled) restarts the detector: a gap is never bridged with invented
   beats.
2. Every `QUALITY_EVERY_S`: `models.signal_quality.ecg_quality` over the last `WINDOW_S`, and
   a pulse looked for on the PPG, else the arterial pressure, over the last `PULSE_S`; a
   channel that has sent nothing for 2 s does not count (its ring still holds an old pulse).
3. `edge.rhythm.RhythmMonitor` turns beats, quality, the board's lead-off flag and the pulse
   into detections (its rules); they are repeated on calls between two evaluations.
4. With a beat model (`use_classifier`: the bundle's `models.beat_classifier.BeatClassifier`),
   the same samples and R peaks go to a `models.beats.BeatStream`; each beat it finishes
   (about one RR interval after its R peak) is classed N, S, V or F and the class handed to
   the rhythm monitor (`RhythmMonitor.label`), which then raises the class-based alarms. A
   beat whose window is incomplete (the stream's start) or not finite (lost samples) is
   classed Q, unclassifiable. Without a beat model those alarms stay silent, and
   ``abnormal_per_min`` is null. A model that fails on a beat is counted (``beat_errors``)
   and logged; the beat is classed Q.
5. Pace pulses the board reported for the ECG (PACE frames, kept by the ring as positions)
   mark a beat paced when one lies from `PACE_BEFORE_S` before its R peak to `PACE_AFTER_S`
   after it (edge/rhythm.py rule 6). The R peak is found about 1 s after it happened
   (`models.qrs.LATENCY_S`), and a board sends PACE with the chunk holding the pulse, so the
   pulses of a beat are known when the beat is. The vitals message's ``paced_per_min``
   counts them (null when the board reports none), and ``rhythm`` reads "paced" when half of
   the recent beats were and nothing else is going on.
6. A beat model whose spec reads two leads (`models.beats` rule 9) gets the chest lead
   (WAVEFORM channel 5) beside lead II, sample for sample by the board's shared ECG sample
   counter; samples of it that have not arrived when lead II's are read, or a chest lead at
   another rate, count as missing, and those beats are classed on lead II alone.

A bed whose board sends no ECG gets nothing from here (the vitals detectors still run).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from edge.bedstate import BedState, WaveformRing
from edge.events import Detection
from edge.rhythm import (
    MODEL,
    PACE_AFTER_S,
    PACE_BEFORE_S,
    Beat,
    RhythmConfig,
    RhythmMonitor,
)
from firmware_bridge.frames import Sensor, StatusFlag, WaveformChannel
from models.beat_classifier import BeatClassifier
from models.beats import MIN_FS_HZ, BeatStream
from models.beats import Beat as BeatRow
from models.qrs import QrsDetector
from models.signal_quality import WINDOW_S, EcgQuality, ecg_quality, pulse_present
from models.tflite import ModelError

__all__ = ["PULSE_S", "QUALITY_EVERY_S", "EcgDetector", "EcgState"]

_log = logging.getLogger(__name__)

QUALITY_EVERY_S: Final = 1.0
"""How often the signal quality and the pulse are judged (s)."""
PULSE_S: Final = 8.0
"""Seconds of PPG / ABP a pulse is looked for in (several beats even at 30 bpm)."""
_PULSE_CHANNELS: Final = (WaveformChannel.PPG, WaveformChannel.ABP)
_RHYTHM_WORDS: Final = (
    ("ecg_unreadable", "unreadable"),
    ("asystole", "asystole"),
    ("ecg_no_beats", "no beats, pulse present"),
    ("ventricular_tachycardia", "ventricular tachycardia"),
    ("ventricular_run", "ventricular run"),
    ("frequent_pvcs", "frequent PVCs"),
    ("extreme_bradycardia", "extreme bradycardia"),
    ("extreme_tachycardia", "extreme tachycardia"),
    ("irregular_rhythm", "irregular"),
)
"""The vitals message's ``ecg.rhythm``: the most serious current detection, in words."""
_START_ESTIMATES: Final = 60
_STALE_S: Final = 2.0
"""A pulse channel with no new sample for this long (s) is not looked at."""


@dataclass(slots=True)
class EcgState:
    """One bed's ECG head: detector, read position, rhythm, last judgements."""

    fs_hz: int
    qrs: QrsDetector
    rhythm: RhythmMonitor
    position: int = 0
    fed: int = 0
    beats: int = 0
    quality: EcgQuality | None = None
    pulse: bool | None = None
    judged_s: float = -float("inf")
    detections: list[Detection] = field(default_factory=list)
    starts: deque[float] = field(default_factory=lambda: deque(maxlen=_START_ESTIMATES))
    """Edge time of the stream's sample 0 as each call saw it (rule 1)."""
    pulse_marks: dict[WaveformChannel, tuple[int, float]] = field(default_factory=dict)
    """Per pulse channel: (samples written, edge time) when it last grew (rule 2: a channel
    that stopped sending says nothing about the pulse now)."""
    stream: BeatStream | None = None
    """Rule 4: beat windows and RR features, when a beat model runs."""
    per_minute: tuple[int, int] | None = None
    """(V, S/V/F) beats in the last minute at the last judgement; None without a beat model."""
    paced_per_minute: int | None = None
    """Paced beats in the last minute at the last judgement; None when the board reports no
    pace pulses (rule 5)."""
    classified: int = 0
    beat_errors: int = 0
    pace_before: int = field(init=False)
    pace_after: int = field(init=False)
    """Rule 5: `PACE_BEFORE_S` and `PACE_AFTER_S` in samples."""

    def __post_init__(self) -> None:
        self.pace_before = round(PACE_BEFORE_S * self.fs_hz)
        self.pace_after = round(PACE_AFTER_S * self.fs_hz)


class EcgDetector:
    """Rhythm alarms for every bed whose board sends an ECG (module rules)."""

    def __init__(
        self, config: RhythmConfig | None = None, classifier: BeatClassifier | None = None
    ) -> None:
        self.config = config or RhythmConfig()
        self.classifier = classifier
        self._beds: dict[str, EcgState] = {}

    def use_classifier(self, classifier: BeatClassifier | None) -> None:
        """Class beats with ``classifier`` from now on (None: stop); beat streams restart,
        since another model may cut beats by another spec."""
        self.classifier = classifier
        for st in self._beds.values():
            self._new_stream(st)

    def adopt(self, previous: EcgDetector) -> None:
        """Carry on ``previous``'s beds (detectors, beats, silence counting) when the rhythm
        rules are the same: a model switch or a reload that leaves [ecg] alone then costs no
        relearning (otherwise the beds start afresh, as at start-up)."""
        if previous is self or previous.config != self.config:
            return
        self._beds = previous._beds
        if previous.classifier is not self.classifier:
            self.use_classifier(self.classifier)

    def _new_stream(self, st: EcgState) -> None:
        """A fresh beat stream for the current classifier, whose version the rhythm monitor
        puts in class-based alerts (rule 4)."""
        c = self.classifier
        st.rhythm.beat_model = c.version if c else ""
        st.stream = BeatStream(st.fs_hz, c.spec) if c and st.fs_hz >= MIN_FS_HZ else None
        if c is not None and st.stream is None:
            _log.warning("ECG at %d Hz: beats are not classified below %g Hz", st.fs_hz,
                         MIN_FS_HZ)

    @property
    def model(self) -> str:
        """See `Detector.model`."""
        return MODEL

    def state(self, bed_id: str) -> EcgState | None:
        """The bed's ECG head state (None before its first ECG sample)."""
        return self._beds.get(bed_id)

    def summary(self, bed_id: str) -> dict[str, float | str | None] | None:
        """What the vitals message carries for the bed (None before its first ECG sample):
        ECG heart rate (bpm), the rhythm as the current detections say it, the signal-quality
        index, abnormal beats per minute (None until a beat model classes beats)."""
        st = self._beds.get(bed_id)
        if st is None:
            return None
        kinds = {d.kind for d in st.detections}
        rhythm = next((word for kind, word in _RHYTHM_WORDS if kind in kinds), None)
        if rhythm is None and st.quality is not None and st.quality.usable and st.beats:
            rhythm = "paced" if st.rhythm.paced_rhythm else "regular"
        hr = st.rhythm.heart_rate_bpm
        return {
            "hr_bpm": None if hr is None else round(hr, 1),
            "rhythm": rhythm,
            "sqi": None if st.quality is None else st.quality.sqi,
            "abnormal_per_min": None if st.per_minute is None else st.per_minute[1],
            "paced_per_min": st.paced_per_minute,
        }

    def heart_rate_bpm(self, bed_id: str) -> float | None:
        """The ECG heart rate of ``bed_id`` (edge/rhythm.py rule 3), None when unknown."""
        st = self._beds.get(bed_id)
        return None if st is None else st.rhythm.heart_rate_bpm

    def _state(self, bed: BedState, fs_hz: int, position: int) -> EcgState:
        st = self._beds.get(bed.bed_id)
        if st is None or st.fs_hz != fs_hz:
            if st is not None:
                _log.info("bed %s: ECG rate %d -> %d Hz, detector restarted", bed.bed_id,
                          st.fs_hz, fs_hz)
            st = EcgState(fs_hz, QrsDetector(fs_hz), RhythmMonitor(self.config),
                          position=position)
            self._new_stream(st)
            self._beds[bed.bed_id] = st
        return st

    def update(self, bed: BedState, now: float) -> list[Detection]:
        """Feed the new ECG samples, judge quality every second, report (module rules)."""
        ring = bed.waveforms.get(WaveformChannel.ECG_II)
        if ring is None:
            return []
        st = self._state(bed, ring.rate_hz, ring.written - ring.count)
        behind = ring.written - st.position
        if behind > ring.count:  # rule 1: more arrived than the ring kept since the last call
            _log.warning("bed %s: %d ECG samples not read in time; detector restarted",
                         bed.bed_id, behind - ring.count)
            st.qrs.reset()
            st.fed = 0
            st.starts.clear()
            self._new_stream(st)
        samples, st.position = ring.since(st.position)
        st.rhythm.pace_reported = bool(
            (bed.hello is not None and bed.hello.sensors & Sensor.PACE) or ring.pace)
        if samples.size:
            found = st.qrs.update(samples)
            st.fed += samples.size
            st.starts.append(now - st.fed / st.fs_hz)
            if found.size:
                # Placed by sample index from the stream's start, so RR intervals are exact;
                # the start is the least-delayed estimate of the last minute (drift-proof).
                times = min(st.starts) + found / st.fs_hz
                paced = ring.paced(st.position - st.fed + found, st.pace_before,
                                   st.pace_after)
                st.rhythm.add(Beat(float(t), None, int(r), bool(p))
                              for t, r, p in zip(times, found, paced, strict=True))
                st.beats += int(found.size)
            if st.stream is not None:
                second = self._second_lead(bed, ring, st.stream, st.position - samples.size,
                                           samples.size)
                self._classify(bed.bed_id, st, st.stream.push(samples, found.tolist(), second))
        if now - st.judged_s >= QUALITY_EVERY_S:
            st.judged_s = now
            st.quality = ecg_quality(ring.latest(int(WINDOW_S * ring.rate_hz)), ring.rate_hz)
            st.pulse = self._pulse(bed, st, now)
            lead_off = bool(bed.status_flags & StatusFlag.LEAD_OFF)
            st.detections = st.rhythm.update(now, quality=st.quality, lead_off=lead_off,
                                             pulse=st.pulse)
            st.per_minute = st.rhythm.per_minute(now)
            st.paced_per_minute = st.rhythm.paced_per_min(now)
        return list(st.detections)

    @staticmethod
    def _second_lead(bed: BedState, ring: WaveformRing, stream: BeatStream, start: int,
                     n: int) -> npt.NDArray[np.float32] | None:
        """Rule 6: the chest lead's samples at the same board sample indices as the ``n``
        lead II samples from ring position ``start``; None when the model reads one lead or
        the board sends no chest lead at lead II's rate."""
        chest = bed.waveforms.get(WaveformChannel.ECG_V)
        if stream.spec.leads < 2 or chest is None or chest.rate_hz != ring.rate_hz:
            return None
        index = ring.index_of(start)
        at = None if index is None else chest.position_of(index)
        return None if at is None else chest.between(at, n)

    def _classify(self, bed_id: str, st: EcgState, beats: list[BeatRow]) -> None:
        """Rule 4: class each finished beat and hand the class to the rhythm monitor."""
        c = self.classifier
        assert c is not None
        for beat in beats:
            label = "Q"
            if beat.complete and np.all(np.isfinite(beat.features[c.spec.primary_columns])):
                try:
                    label, _ = c.classify(beat.features)
                except ModelError as exc:
                    st.beat_errors += 1
                    _log.warning("bed %s: beat model failed (%d so far): %s", bed_id,
                                 st.beat_errors, exc)
            st.classified += 1
            st.rhythm.label(beat.r_sample, label)

    @staticmethod
    def _pulse(bed: BedState, st: EcgState, now: float) -> bool | None:
        for channel in _PULSE_CHANNELS:
            ring = bed.waveforms.get(channel)
            if ring is None:
                continue
            mark = st.pulse_marks.get(channel)
            if mark is None or ring.written != mark[0]:
                st.pulse_marks[channel] = mark = (ring.written, now)
            if now - mark[1] > _STALE_S or ring.count < 3 * ring.rate_hz:
                continue  # stopped sending, or too little yet
            return pulse_present(np.asarray(ring.latest(int(PULSE_S * ring.rate_hz)),
                                            dtype=np.float64), ring.rate_hz)
        return None
