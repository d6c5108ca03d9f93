"""Rhythm alarms from the ECG beats: asystole, extreme rates, ventricular runs, irregular rhythm.

Why a module of its own: these are the alarms IEC 60601-2-27 monitors raise from the ECG, and
each depends only on the beats found (times, classes), how readable the signal is, and whether
another channel shows a pulse. Pure: `RhythmMonitor.update` takes those with the current edge
time (s) and returns `edge.events.Detection`s for the alarm manager; no clock of its own.

Rules
-----

1. **Technical first.** Lead off (the board's flag) or an unreadable signal
   (`models.signal_quality.EcgQuality` not ``usable``) raises a technical alert
   (``lead_off`` comes from the STATUS detector; ``ecg_unreadable`` here, naming the reason)
   and SUPPRESSES every physiological ECG alarm: a disconnected or saturated ECG shows no
   beats, and a monitor that calls that asystole is the classic false alarm. Beats found in
   an unreadable stretch are forgotten (noise makes false beats, false irregularity); once
   the signal is usable again, silence is counted from that moment.
2. **Asystole**: no beat for ``asystole_s`` (4 s) on a usable signal -> high. When a pulse is
   seen on the PPG or arterial pressure over the same seconds, the call is downgraded to the
   technical ``ecg_no_beats`` (medium, "check the ECG"): a heart that makes a pulse is beating
   (how the best PhysioNet/CinC 2015 entries cut false asystole alarms).
3. **ECG heart rate**: 60 / median of the last `HR_BEATS` RR intervals (bpm), reported once
   `HR_BEATS` + 1 beats are known and the newest is younger than ``asystole_s``. Extreme
   bradycardia below ``extreme_brady_bpm`` (40) and extreme tachycardia above
   ``extreme_tachy_bpm`` (150) -> high.
4. **Ventricular runs** (beats the beat model classed ``V``): ``run_beats`` (3) or more in a
   row -> ``ventricular_run`` (medium); ``vt_beats`` (5) or more in a row at a rate above
   ``vt_bpm`` (100) -> ``ventricular_tachycardia`` (high). Reported while the newest
   classified beat still belongs to the run, and for ``asystole_s`` after it (so a run is
   seen at least once). Beats are added when the QRS detector finds them and classified
   about one beat later (`RhythmMonitor.label`): runs and rule 5 look at beats up to the
   newest classified one, asystole and the heart rate at every beat at once.
4b. **Frequent PVCs**: at least ``pvc_per_min`` (10; 0 = off) beats classed ``V`` in the
   last 60 s -> ``frequent_pvcs`` (medium), as monitors' "PVCs/min high" alarm.
5. **Irregular rhythm suggestive of atrial fibrillation**: over the last ``af_beats`` (30)
   RR intervals between non-ventricular beats, the median absolute successive RR difference
   divided by the mean RR is at least ``af_irregularity`` (0.08), with at most 20 % of the
   window's beats ectopic (V or S); an interval under 0.6 times the window's median
   (an extra detection) is merged into the next, one over 1.6 times (a missed QRS) is left
   out first. Only over classified beats: with no beat model, frequent ectopic beats
   (premature, then a pause) read as irregularity, which on the 20 non-AF shared MIT-BIH
   records raised this alarm on 19 of them in 10 minutes each. The statistic follows
   RR-irregularity AF detectors (Dash et al. 2009 use RMSSD / mean RR with turning points and
   entropy), with the median in place of the root mean square: in AF nearly every successive
   difference is large, while a premature beat the model missed makes only two large ones,
   which move a root mean square but not a median. On 30-beat windows of the 26 shared
   records' reference beats (5,183 windows outside AF), at the 96.8 % window sensitivity of
   the former normalised-RMSSD >= 0.10 rule, the median statistic (>= 0.06) flags 216
   non-AF windows instead of 575 (AUROC 0.987 against 0.976). The threshold is 0.08, not
   0.06: on windows ending at every 5th reference beat, 0.06 flagged 99.8 % of the 589
   windows wholly inside AF and 189 of the 9,344 outside it (114 on 115's sinus
   arrhythmia, 45 on 108), 0.08 flagged 98.8 % and 38; replayed through the edge with the
   shipped beat model on six records that raised it or hold AF (201 203 108 115 118 209,
   3 h), false alerts fell from 30 to 9 with the same 16 true ones and the same 10 of 26
   AF episodes caught; over all 26 records (13 h, `benchmarks/rhythm_alarms.py`) 61 -> 31
   alerts, 3.1 -> 0.9 false per hour, 22 -> 17 of 50 episodes caught (the 5 lost are short
   AF stretches of paced record 217). Only 3 records (201, 203, 217) hold AF, so the
   threshold rests on little. Raised as medium ``irregular_rhythm``:
   "suggestive of", not a diagnosis.
6. **Paced beats.** A board that detects pacemaker pulses (HELLO sensor bit PACE) reports
   them in PACE frames (PROTOCOL.md); a beat with a pulse from `PACE_BEFORE_S` before its R
   peak to `PACE_AFTER_S` after it (edge/ecg.py) is paced, and is classed `PACED` whatever
   the beat model says: a paced beat is wide and ventricular in shape, and calling it V
   raised false ventricular runs on the paced MIT-BIH records. Paced beats break ventricular
   runs, are not counted as PVCs or abnormal beats, and count against rule 5's ectopic share
   (intervals to or from them are left out): the pacemaker, not the atria, sets their
   timing, so a paced rhythm is not judged for atrial fibrillation, as commercial monitors
   switch their AF detection off for paced patients. Asystole and the heart rate count paced
   beats like any other.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from edge.events import Detection, Driver, Priority
from models.signal_quality import EcgQuality

__all__ = [
    "HR_BEATS",
    "KIND_ONSET_S",
    "MODEL",
    "PACED",
    "PACE_AFTER_S",
    "PACE_BEFORE_S",
    "RHYTHM_KINDS",
    "Beat",
    "RhythmConfig",
    "RhythmMonitor",
]

MODEL: Final = "ecg-rhythm/1"
PACE_BEFORE_S: Final = 0.25
"""Rule 6: a pace pulse up to this long before a beat's R peak makes it paced (s): a paced
QRS is wide, and the detector's R peak may sit at its largest wave."""
PACE_AFTER_S: Final = 0.05
"""Rule 6: ... or up to this long after the R peak (s), for an R peak placed on the spike's
own edge."""
HR_BEATS: Final = 8
"""RR intervals behind the ECG heart rate (rule 3)."""
_MAX_BEATS: Final = 64
_MINUTE_S: Final = 60.0
PACED: Final = "P"
"""Class of a beat the board reported a pace pulse for (rule 6), whatever the beat model says."""
_ABNORMAL: Final = frozenset("SVF")
_NOT_SINUS: Final = frozenset(("V", "S", PACED))
"""Rule 5: beats whose timing the atria did not set (ectopic, paced)."""
_SET_BY_VENTRICLE: Final = frozenset(("V", PACED))
"""Rule 5: intervals to or from these beats are left out."""
_ECTOPIC_MAX: Final = 0.2
_SETTLE_S: Final = 2.0
"""Beats older than this when an unreadable ECG becomes usable again are dropped (rule 1)."""
_RR_OUTLIER: Final = (0.6, 1.6)
"""Rule 5: RR intervals outside these multiples of the window's median are left out (one
missed QRS doubles an interval, an extra detection halves one; either alone would read as
irregularity)."""

KIND_ONSET_S: Final = {
    "asystole": 0.0,
    "ventricular_run": 0.0,
    "ventricular_tachycardia": 0.0,
}
"""Default onset delays (s) of the alarm manager for these kinds, instead of ``alarms.onset_s``
(``[alarms.kinds]`` still overrides them). Asystole and the runs already wait inside their
rule (4 s without a QRS; a run exists once its beats are classed, and is reported for 4 s):
with the general 5 s onset on top, a ventricular run was never announced and asystole took
9 s (benchmarks/rhythm_alarms.py, 26 records: 0 of 44 reference runs caught; with onset 0,
28 of 44). Irregular rhythm keeps the general onset: a longer one cut its false alarms less
than its true ones (5 s: 20 of 50 AF episodes caught, 7.9 false per hour; 10 s: 15, 6.4;
30 s: 3, 1.8)."""

RHYTHM_KINDS: Final = {
    "asystole": "no QRS for asystole_s on a usable ECG (high)",
    "extreme_bradycardia": "ECG heart rate below extreme_brady_bpm (high)",
    "extreme_tachycardia": "ECG heart rate above extreme_tachy_bpm (high)",
    "ventricular_tachycardia": "vt_beats or more ventricular beats in a row above vt_bpm (high)",
    "ventricular_run": "run_beats or more ventricular beats in a row (medium)",
    "frequent_pvcs": "pvc_per_min or more ventricular beats in the last minute (medium)",
    "irregular_rhythm": "RR irregularity suggestive of atrial fibrillation (medium)",
    "ecg_unreadable": "technical: flat, saturated, noisy or lost ECG; ECG alarms suppressed",
    "ecg_no_beats": "technical: no QRS but a pulse on PPG/ABP; check the ECG",
}
"""Alert kinds this module raises, with their rule."""


@dataclass(frozen=True, slots=True)
class Beat:
    """One detected beat: R-peak time (edge s), the beat model's class (N, S, V, F, Q, `PACED`,
    or None while not classified), the R peak's stream sample (the key `RhythmMonitor.label`
    finds it by; -1 when none is given) and whether the board reported a pace pulse just
    before it (rule 6)."""

    time_s: float
    label: str | None = None
    sample: int = -1
    paced: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RhythmConfig:
    """Thresholds of the module rules (s, bpm, beats, ratio)."""

    asystole_s: float = 4.0
    extreme_brady_bpm: float = 40.0
    extreme_tachy_bpm: float = 150.0
    run_beats: int = 3
    vt_beats: int = 5
    vt_bpm: float = 100.0
    af_beats: int = 30
    af_irregularity: float = 0.08
    pvc_per_min: float = 10.0


def _class_of(beat: Beat, label: str) -> str:
    """The beat's class: the beat model's ``label``, or `PACED` when the board reported a
    pace pulse for it (rule 6)."""
    return PACED if beat.paced else label


def _without_detection_errors(rr: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rule 5: an interval shorter than `_RR_OUTLIER`[0] x the median is an extra detection,
    merged into the next one; one longer than [1] x the median is a missed QRS, left out."""
    median = float(np.median(rr))
    out: list[float] = []
    acc = 0.0
    for r in rr.tolist():
        acc += r
        if acc < _RR_OUTLIER[0] * median:
            continue
        if acc < _RR_OUTLIER[1] * median:
            out.append(acc)
        acc = 0.0
    return np.asarray(out)


class RhythmMonitor:
    """Rhythm state of one bed (module rules)."""

    def __init__(self, config: RhythmConfig | None = None) -> None:
        self.config = config or RhythmConfig()
        self._beats: deque[Beat] = deque(maxlen=max(_MAX_BEATS, self.config.af_beats + 2))
        self._run_end_s: float | None = None
        self._run: tuple[int, float] = (0, 0.0)  # longest current/last run: beats, rate bpm
        self._since: float | None = None  # rule 1: first beat or call, or usable again
        self._recovering = False
        # Times (s) of classified beats of the last minute: ventricular ones, abnormal ones.
        self._v_times: deque[float] = deque()
        self._abnormal_times: deque[float] = deque()
        self._paced_times: deque[float] = deque()
        self.pace_reported = False
        """True when the board reports pace pulses (its HELLO says so): paced counts mean
        something (rule 6)."""
        self.classifying = False
        """True once a beat has been labelled: per-minute counts mean something."""
        self.beat_model = ""
        """Version of the beat model labelling the beats, in the model of class-based alerts."""

    def add(self, beats: Iterable[Beat]) -> None:
        """New beats, oldest first (their times increase)."""
        for given in beats:
            b = given if given.label is None else Beat(
                given.time_s, _class_of(given, given.label), given.sample, given.paced)
            if self._since is None:
                self._since = b.time_s
            self._beats.append(b)
            if b.label is not None:
                self._count(b.time_s, b.label)
            if b.paced:
                self._paced_times.append(b.time_s)
        self._track_run()

    def _count(self, time_s: float, label: str) -> None:
        self.classifying = True
        if label == "V":
            self._v_times.append(time_s)
        if label in _ABNORMAL:
            self._abnormal_times.append(time_s)

    def label(self, sample: int, label: str) -> bool:
        """The beat model's class for the beat whose R peak is ``sample``; False when that
        beat is no longer held (forgotten in an unreadable stretch)."""
        for i in range(len(self._beats) - 1, -1, -1):
            b = self._beats[i]
            if b.sample == sample:
                cls = _class_of(b, label)
                self._beats[i] = Beat(b.time_s, cls, sample, b.paced)
                self._count(b.time_s, cls)
                self._track_run()
                return True
            if b.sample < sample:
                break
        return False

    @property
    def held(self) -> tuple[Beat, ...]:
        """The beats held (the newest `_MAX_BEATS` or more), oldest first, with their classes."""
        return tuple(self._beats)

    def per_minute(self, now: float) -> tuple[int, int] | None:
        """(ventricular, abnormal S/V/F) beats in the last 60 s; None before any beat was
        classified (no beat model)."""
        if not self.classifying:
            return None
        for times in (self._v_times, self._abnormal_times):
            while times and times[0] < now - _MINUTE_S:
                times.popleft()
        return len(self._v_times), len(self._abnormal_times)

    def paced_per_min(self, now: float) -> int | None:
        """Paced beats in the last 60 s (rule 6); None when the board reports no pace pulses
        (it cannot tell paced beats, so 0 would claim more than is known)."""
        if not self.pace_reported:
            return None
        while self._paced_times and self._paced_times[0] < now - _MINUTE_S:
            self._paced_times.popleft()
        return len(self._paced_times)

    @property
    def paced_rhythm(self) -> bool:
        """Rule 6: at least half of the last `HR_BEATS` + 1 beats were paced."""
        recent = list(self._beats)[-(HR_BEATS + 1):]
        return bool(recent) and 2 * sum(b.paced for b in recent) >= len(recent)

    def _classified(self) -> list[Beat]:
        """The held beats up to the newest classified one (rule 4)."""
        beats = list(self._beats)
        while beats and beats[-1].label is None:
            beats.pop()
        return beats

    @property
    def heart_rate_bpm(self) -> float | None:
        """Rule 3 (None until enough beats are known)."""
        if len(self._beats) < HR_BEATS + 1:
            return None
        times = np.fromiter((b.time_s for b in list(self._beats)[-(HR_BEATS + 1):]), float)
        return 60.0 / float(np.median(np.diff(times)))

    def _track_run(self) -> None:
        classified = self._classified()
        run = 0
        for b in reversed(classified):
            if b.label != "V":
                break
            run += 1
        if run >= self.config.run_beats:
            beats = classified[-run:]
            span = beats[-1].time_s - beats[0].time_s
            rate = 60.0 * (run - 1) / span if span > 0 else math.inf
            self._run = (run, rate)
            self._run_end_s = beats[-1].time_s

    def irregularity(self) -> float | None:
        """Rule 5's statistic (median |successive RR difference| / mean RR) over the last
        ``af_beats`` RR intervals, None when there are too few beats or too many ectopic
        ones."""
        n = self.config.af_beats
        beats = self._classified()[-(n + 1):]
        if len(beats) < n + 1 or any(b.label is None for b in beats):
            return None  # unclassified beats: ectopy would read as AF (rule 5)
        ectopic = sum(b.label in _NOT_SINUS for b in beats)
        if ectopic > _ECTOPIC_MAX * len(beats):
            return None
        times = np.fromiter((b.time_s for b in beats), float)
        rr = np.diff(times)
        keep = np.array([a.label not in _SET_BY_VENTRICLE and b.label not in _SET_BY_VENTRICLE
                         for a, b in itertools.pairwise(beats)])
        rr = rr[keep]
        if rr.size >= 3:  # a missed or an extra beat is not irregularity
            rr = _without_detection_errors(rr)
        if rr.size < 3:
            return None
        return float(np.median(np.abs(np.diff(rr))) / np.mean(rr))

    def update(
        self, now: float, *, quality: EcgQuality | None, lead_off: bool = False,
        pulse: bool | None = None,
    ) -> list[Detection]:
        """The rhythm conditions present at ``now`` (s). ``quality``: the ECG's last few
        seconds (None = no ECG at all: nothing to say); ``pulse``: True when PPG/ABP shows a
        pulse over the same seconds, False when it shows none, None when there is neither."""
        if quality is None or lead_off:
            return []  # no ECG, or the STATUS detector's lead_off speaks for it (rule 1)
        if not quality.usable:
            # Beats found in noise are not beats: forget them, start again once it is clean.
            self._beats.clear()
            self._run_end_s = None
            self._v_times.clear()
            self._abnormal_times.clear()
            self._paced_times.clear()
            self._recovering = True
            return [Detection(kind="ecg_unreadable", priority=Priority.MEDIUM, technical=True,
                              message=f"ECG unreadable ({quality.reason}): ECG alarms "
                                      "suppressed", model=MODEL,
                              values={"ecg.sqi": quality.sqi})]
        cfg = self.config
        out: list[Detection] = []
        since = self._settle(now)
        last = self._beats[-1].time_s if self._beats else -float("inf")
        silent_s = now - max(last, since)
        if silent_s >= cfg.asystole_s:
            if pulse:
                out.append(Detection(
                    kind="ecg_no_beats", priority=Priority.MEDIUM, technical=True, model=MODEL,
                    message=f"no QRS for {silent_s:.0f} s but a pulse on PPG/ABP: check ECG "
                            "electrodes", values={"ecg.no_beat_s": round(silent_s, 1)}))
            else:
                out.append(Detection(
                    kind="asystole", priority=Priority.HIGH, model=MODEL,
                    message=f"asystole: no QRS for {silent_s:.0f} s",
                    values={"ecg.no_beat_s": round(silent_s, 1)},
                    drivers=(Driver("ecg_hr_bpm", "low", 0.0),)))
            return out
        hr = self.heart_rate_bpm
        if hr is not None:
            if hr < cfg.extreme_brady_bpm:
                out.append(self._rate("extreme_bradycardia", hr, "low", cfg.extreme_brady_bpm))
            elif hr > cfg.extreme_tachy_bpm:
                out.append(self._rate("extreme_tachycardia", hr, "high", cfg.extreme_tachy_bpm))
        if self._run_end_s is not None and now - self._run_end_s < cfg.asystole_s:
            beats, rate = self._run
            vt = beats >= cfg.vt_beats and rate > cfg.vt_bpm
            out.append(Detection(
                kind="ventricular_tachycardia" if vt else "ventricular_run",
                priority=Priority.HIGH if vt else Priority.MEDIUM, model=self._class_model,
                message=(f"{'ventricular tachycardia' if vt else 'ventricular run'}: {beats} "
                         f"ventricular beats in a row at {rate:.0f} bpm"),
                values={"ecg.run_beats": float(beats), "ecg.run_bpm": round(rate, 1)}))
        counts = self.per_minute(now)
        if counts is not None and cfg.pvc_per_min > 0 and counts[0] >= cfg.pvc_per_min:
            out.append(Detection(
                kind="frequent_pvcs", priority=Priority.MEDIUM, model=self._class_model,
                message=f"frequent PVCs: {counts[0]} ventricular beats in the last minute "
                        f"(limit {cfg.pvc_per_min:g}/min)",
                values={"ecg.pvc_per_min": float(counts[0])},
                thresholds={"ecg.pvc_per_min": cfg.pvc_per_min}))
        irregular = self.irregularity()
        if irregular is not None and irregular >= cfg.af_irregularity:
            out.append(Detection(
                kind="irregular_rhythm", priority=Priority.MEDIUM, model=self._class_model,
                message=f"irregular rhythm suggestive of atrial fibrillation (RR irregularity "
                        f"{irregular:.2f} >= {cfg.af_irregularity:.2f} over {cfg.af_beats} "
                        "beats)",
                values={"ecg.rr_irregularity": round(irregular, 3)}))
        return out

    @property
    def _class_model(self) -> str:
        """Model of alerts that rest on beat classes: the rules plus the beat model."""
        return f"{MODEL}+{self.beat_model}" if self.beat_model else MODEL

    def _settle(self, now: float) -> float:
        """Rule 1: when silence counts from: the start, or when the ECG became usable again
        (dropping the beats found while it was still judged bad)."""
        if self._since is None:
            self._since = now
        if self._recovering:
            self._recovering = False
            self._since = now
            while self._beats and self._beats[0].time_s < now - _SETTLE_S:
                self._beats.popleft()
        return self._since

    def _rate(self, kind: str, hr: float, direction: str, limit: float) -> Detection:
        word = "bradycardia" if direction == "low" else "tachycardia"
        return Detection(
            kind=kind, priority=Priority.HIGH, model=MODEL,
            message=f"extreme {word}: ECG heart rate {hr:.0f} bpm "
                    f"{'<' if direction == 'low' else '>'} {limit:g}",
            values={"ecg_hr_bpm": round(hr, 1)},
            thresholds={f"ecg.{kind}_bpm": limit},
            drivers=(Driver("ecg_hr_bpm", direction, round(hr, 1)),))
