"""`vigil-train evaluate`: replay held-out patients through the real edge path and count alerts.

What is replayed
----------------
Each patient is fed to an `edge.runtime.EdgeCore` (configuration from `edge.config.parse_config`,
one bed ``bed1``, the given ``onset_s`` / ``clear_s``, every other key its default) exactly as
the runtime would drive it: one `VitalsFrame` per second at edge time ``t`` = the second's
index, values rounded to the wire's resolution (0.1 unit; temperature 0.01 degC, PROTOCOL.md)
and NaN sent as ``None`` (not measured), then ``evaluate(t)``. Every `AlertEvent` is collected.

The core runs these detectors on one bed: the technical one, the fixed limits, the bundle's
`edge.learned.LearnedDetector` (``ensemble_anomaly``, ``risk_high``, ``early_warning``) and
`SingleDetectorProbe`, which turns each ensemble member's vote alone into its own alert kind
(``autoencoder_vote``, ``iforest_vote``, ``dbscan_vote``) from `LearnedDetector.scores` and the
manifest thresholds. The alarm manager keeps one independent track per (bed, kind) (edge/alarms.py
rules 1-4), so ONE replay with every detector yields, kind by kind, exactly the alert events that
a core running only that detector would publish; `ALERT_SETS` then selects kinds. (A test checks
this for the fixed limits against a core that runs the fixed limits alone.)

A second core runs on the same frames with the technical and fixed-limit detectors only and
the LSTM artefact gate of the same `LearnedDetector` (edge/learned.py rule 8, hold
``model.artefact_hold_s``, default 10 s): its alerts are the set (a') below, what the edge
publishes with a bundle loaded. The first core has no gate, so (a) is the fixed limits as they
are without a model.

Alert sets (`ALERT_SETS`): (a) ``fixed_limits`` every kind of `FixedLimitsDetector`; (a')
``fixed_limits_gated`` the same behind the artefact gate; (b)
``autoencoder``, ``iforest``, ``dbscan`` each detector's vote alone; (c) ``ensemble`` the 2-of-3
``ensemble_anomaly``; (d) ``ensemble_lstm`` ``ensemble_anomaly`` or ``early_warning``; and, for
reference, ``risk`` (``risk_high``) and ``early_warning`` alone. Technical alerts are never counted.

Counting rules (synthetic patients: events and per-second labels are ground truth)
---------------------------------------------------------------------------------
- An ALERT of a set is one ``new`` event of one of its kinds; it is active from that ``new``
  (``time_s``) to its ``end`` (or the end of the record).
- An EVENT (a clinical `Event` of the patient, active on ``[onset, end)``) is DETECTED by a set
  when an alert of that set has its ``new`` within ``[onset, end + POST_EVENT_S]``. Its DELAY
  is the time of the first such ``new`` minus the onset (s). An alert already active before the
  onset does not detect it. Sensitivity = detected / events, per event kind and over all kinds.
- A FALSE ALERT is an alert whose active interval does not overlap any event's
  ``[onset - POST_EVENT_S, end + POST_EVENT_S]``. EVENT-FREE TIME is the record length less the
  union of those windows (clipped to the record). False alerts per patient-hour = false alerts /
  event-free hours, over all held-out patients; also over event-free records alone (every
  second of them is event-free).
- REAL numerics carry no labels: every alert counts as false, so their rate is an UPPER BOUND
  (a real patient may really have deteriorated); per hour of measured time (seconds with at
  least one valid vital). MIMIC numerics are sampled once a minute and
  are replayed HELD PIECEWISE-CONSTANT AT 1 Hz (`training.datasets.load_vitals`), so the
  detectors see a value that changes once a minute.
- ROC-AUC per detector score: over every second where the score exists (after warm-up),
  label = a clinical event active at that second; the forecaster's ``p_event`` also against
  its own target, an event active within the next ``horizon_steps * step_s`` seconds. The
  iforest score is negated (lower = more abnormal). Scores are those the edge computed, int8.
- INT8 vs FLOAT AUROC: the bundle ships only the int8 networks, so those figures are the ones
  `training.fit` measured on its test rows (one row per ``row_step_s``), read from the manifest.
- LSTM LEAD TIME: for each event with both an ``early_warning`` ``new`` in
  ``[onset - POST_EVENT_S, end + POST_EVENT_S]`` and a fixed-limit ``new`` in
  ``[onset, end + POST_EVENT_S]``, lead = first limit alert - first warning (s; > 0 = the
  warning came first). A warning before the onset is not a false alert (it is within the margin)
  and is reported as such.
- ARTEFACT SUPPRESSION: sets (a) and (a') counted by the same rules: false alerts removed by
  the gate, events it missed, and what it added to the delay. The report also checks that the
  ungated fixed-limit alerts are the same with and without the learned detectors.

Held-out patients: by default the bundle's own test split, regenerated exactly as
`training.fit.prepare` made it (same preset, seed, calibration data, checked against the
manifest's data fingerprint and split), so the patients were never trained on nor used to
choose a threshold. `fresh_cohort` instead draws a new cohort with another seed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from edge.bedstate import VITAL_FIELDS, BedState
from edge.config import EdgeConfig, parse_config
from edge.detect import FixedLimitsDetector, default_detectors
from edge.events import AlertEvent, Detection, EventType, Priority
from edge.learned import ENSEMBLE, MIN_VOTES, THRESHOLD_KEYS, LearnedDetector
from edge.runtime import EdgeCore
from firmware_bridge.frames import VitalsFrame
from firmware_bridge.sim.events import CLINICAL_KINDS, Event
from models.bundle import Bundle, load_bundle
from training.datasets import PatientVitals
from training.synth import EVENT_KINDS, SynthPatient

__all__ = [
    "ALERT_SETS",
    "BED",
    "POST_EVENT_S",
    "AlertSpan",
    "EvaluationReport",
    "KindFigures",
    "LabelledPatient",
    "PatientReplay",
    "RealFigures",
    "SetFigures",
    "SingleDetectorProbe",
    "count_set",
    "edge_config",
    "evaluate",
    "fresh_cohort",
    "held_out_patients",
    "replay",
    "split_patients",
]

_log = logging.getLogger(__name__)

BED: Final = "bed1"
POST_EVENT_S: Final = 60.0
"""Seconds after an event's end in which an alert still detects it; also the margin either side
of an event within which an alert is not false."""
_SECONDS_PER_HOUR: Final = 3600.0
_P90: Final = 90.0
_DIGITS: Final = 4
_WIRE_DECIMALS: Final[Mapping[str, int]] = {name: 1 for name in VITAL_FIELDS} | {"temp_c": 2}
"""Decimal places of each vital on the wire (PROTOCOL.md: 0.1 unit, temperature 0.01 degC)."""

_VOTE_KINDS: Final[Mapping[str, str]] = {name: f"{name}_vote" for name in ENSEMBLE}
_SCORE_COLUMNS: Final = (
    "autoencoder.mse", "iforest.score", "dbscan.ratio", "risk.probability", "forecaster.p_event",
)
_FORECASTER_COLUMN: Final = 4
WEAK_BASELINE_S: Final = 1800
"""Baseline window (s) of the z-score weak labels in the report (30 min of the patient's past)."""
_FIXED: Final = "fixed_limits"
GATED_MODEL: Final = f"{FixedLimitsDetector.MODEL}+artefact-gate"
"""Model name the replay gives the gated core's fixed-limit alerts, to count them apart."""

ALERT_SETS: Final[Mapping[str, tuple[str, frozenset[str] | str | None]]] = {
    # name -> (description, alert kinds; None = every kind the fixed limits raise; a str =
    # every alert of that model)
    _FIXED: ("(a) fixed limits only", None),
    "fixed_limits_gated": ("(a') fixed limits + LSTM artefact gate", GATED_MODEL),
    "autoencoder": ("(b) autoencoder vote alone", frozenset({_VOTE_KINDS["autoencoder"]})),
    "iforest": ("(b) isolation forest vote alone", frozenset({_VOTE_KINDS["iforest"]})),
    "dbscan": ("(b) DBSCAN vote alone", frozenset({_VOTE_KINDS["dbscan"]})),
    "ensemble": ("(c) 2-of-3 ensemble", frozenset({"ensemble_anomaly"})),
    "ensemble_lstm": (
        "(d) ensemble + LSTM early warning", frozenset({"ensemble_anomaly", "early_warning"})
    ),
    "risk": ("risk model alone", frozenset({"risk_high"})),
    "early_warning": ("LSTM early warning alone", frozenset({"early_warning"})),
}
"""Alert sets the report gives figures for: name -> (what it is, alert kinds it counts)."""


# ------------------------------------------------------------------------------ the replay


class SingleDetectorProbe:
    """Each ensemble member's vote alone as an alert kind (``<name>_vote``, priority high).

    Reads `LearnedDetector.scores` of the newest scored row, so it must come after the learned
    detector in the core's detector list; votes by the manifest thresholds (BUNDLE.md). Same
    freshness rule as the learned detector (rule 5): nothing from a sample older than
    ``stale_s`` or without a valid value. An evaluation probe, not an edge component.
    """

    MODEL: Final = "single-detector-probe/1"

    def __init__(self, learned: LearnedDetector, stale_s: float) -> None:
        self._learned = learned
        self._stale_s = stale_s
        self._t = learned.thresholds

    @property
    def model(self) -> str:
        """See `edge.detect.Detector.model`."""
        return self.MODEL

    def update(self, bed: BedState, now: float) -> list[Detection]:
        """One detection per member whose score of the newest row crosses its threshold."""
        sample = bed.fresh_vitals(now, self._stale_s)
        if sample is None or all(v is None for v in sample.values.values()):
            return []
        scores = self._learned.scores(bed.bed_id)
        out: list[Detection] = []
        for name in ENSEMBLE:
            key = THRESHOLD_KEYS[name]
            score = scores.get(key)
            if score is None:
                continue
            vote = score < self._t[key] if name == "iforest" else score > self._t[key]
            if vote:
                out.append(Detection(
                    kind=_VOTE_KINDS[name], priority=Priority.HIGH,
                    message=f"{name} {score:.3g} vs {self._t[key]:.3g}", model=self.MODEL,
                    thresholds={key: self._t[key]}, scores={key: score},
                ))
        return out


@dataclass(frozen=True, slots=True)
class AlertSpan:
    """One alert of a replay: kind, the detector model, ``new`` time and end time (s)."""

    kind: str
    model: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class PatientReplay:
    """What one patient's replay produced: alerts, per-second scores (NaN = none), its length.

    ``scores`` has shape (n_seconds, 5), columns as `_SCORE_COLUMNS`.
    """

    patient: str
    seconds: int
    alerts: tuple[AlertSpan, ...]
    scores: NDArray[np.float64]


def edge_config(bundle_path: str | Path, *, onset_s: float, clear_s: float) -> EdgeConfig:
    """The evaluated configuration: one bed, defaults except the alarm timing and the bundle."""
    return parse_config({
        "beds": [{"id": BED, "serial": "/dev/null"}],
        "alarms": {"onset_s": onset_s, "clear_s": clear_s},
        "model": {"bundle": str(bundle_path)},
    })


def _frame(k: int, row: NDArray[np.float64]) -> VitalsFrame:
    values = {
        name: None if math.isnan(v) else round(float(v), _WIRE_DECIMALS[name])
        for name, v in zip(VITAL_FIELDS, row.tolist(), strict=True)
    }
    return VitalsFrame(seq=k & 0xFFFF, timestamp_ms=(k * 1000) & 0xFFFFFFFF, **values)


def replay(
    config: EdgeConfig, bundle: Bundle | None, patient: str, vitals: NDArray[np.float64],
) -> PatientReplay:
    """Feed ``vitals`` (n, 7), one frame a second, through a fresh `EdgeCore`; collect alerts.

    ``bundle`` None: technical and fixed-limit detectors only (the edge without a model).
    Otherwise a second, gated core runs too (module doc); its alerts carry `GATED_MODEL`.
    """
    limits = default_detectors(config.limits, config.technical, config.alarms)
    detectors = list(limits)
    learned = gated = None
    if bundle is not None:
        learned = LearnedDetector(bundle, [BED], stale_s=config.alarms.stale_s,
                                  artefact_hold_s=config.model.artefact_hold_s)
        detectors += [learned, SingleDetectorProbe(learned, config.alarms.stale_s)]
        gated = EdgeCore(config, now=0.0, detectors=limits, gate=learned)
    core = EdgeCore(config, now=0.0, detectors=detectors)
    n = int(vitals.shape[0])
    scores = np.full((n, len(_SCORE_COLUMNS)), np.nan)
    events: list[AlertEvent] = []
    gated_events: list[AlertEvent] = []
    for k in range(n):
        now = float(k)
        frame = _frame(k, vitals[k])
        core.on_frame(BED, frame, now)
        events.extend(core.evaluate(now))
        if gated is not None:  # after `core`: the learned detector has scored this second
            gated.on_frame(BED, frame, now)
            gated_events.extend(gated.evaluate(now))
        if learned is not None:
            row = learned.scores(BED)
            for j, key in enumerate(_SCORE_COLUMNS):
                value = row.get(key)
                if value is not None:
                    scores[k, j] = value
    spans = _spans(events, float(n)) + tuple(
        replace(a, model=GATED_MODEL) for a in _spans(gated_events, float(n))
    )
    return PatientReplay(patient, n, tuple(sorted(spans, key=lambda a: (a.start_s, a.kind))),
                         scores)


def _spans(events: Iterable[AlertEvent], record_end_s: float) -> tuple[AlertSpan, ...]:
    """Physiological alerts as (kind, model, new, end); technical ones are dropped."""
    open_: dict[str, AlertEvent] = {}
    out: list[AlertSpan] = []
    for e in events:
        if e.technical:
            continue
        if e.event is EventType.NEW:
            open_[e.id] = e
        elif e.event is EventType.END and e.id in open_:
            new = open_.pop(e.id)
            out.append(AlertSpan(new.kind, new.model, new.time_s, e.time_s))
    out.extend(AlertSpan(e.kind, e.model, e.time_s, record_end_s) for e in open_.values())
    return tuple(sorted(out, key=lambda a: (a.start_s, a.kind)))


# ------------------------------------------------------------------------------ counting


def _in_set(alert: AlertSpan, kinds: frozenset[str] | str | None) -> bool:
    if kinds is None:
        return alert.model == FixedLimitsDetector.MODEL
    if isinstance(kinds, str):
        return alert.model == kinds
    return alert.kind in kinds


def _clinical(events: Iterable[Event]) -> list[Event]:
    return sorted((e for e in events if e.kind in CLINICAL_KINDS), key=lambda e: e.onset_s)


def _event_free_s(events: Sequence[Event], seconds: float) -> float:
    """Record length less the union of every event's ``[onset - margin, end + margin]``."""
    covered, reach = 0.0, 0.0
    for e in _clinical(events):
        lo = min(max(e.onset_s - POST_EVENT_S, reach), seconds)
        hi = min(max(e.end_s + POST_EVENT_S, lo), seconds)
        covered += hi - lo
        reach = max(reach, hi)
    return seconds - covered


def _is_false(alert: AlertSpan, events: Sequence[Event]) -> bool:
    return not any(
        alert.start_s <= e.end_s + POST_EVENT_S and alert.end_s >= e.onset_s - POST_EVENT_S
        for e in events
    )


def _first_new(
    alerts: Iterable[AlertSpan], kinds: frozenset[str] | str | None, lo: float, hi: float
) -> float | None:
    times = [a.start_s for a in alerts if _in_set(a, kinds) and lo <= a.start_s <= hi]
    return min(times) if times else None


def _round(x: float) -> float | None:
    return round(x, _DIGITS) if math.isfinite(x) else None


def _quantile(values: Sequence[float], q: float) -> float | None:
    return _round(float(np.percentile(values, q))) if values else None


@dataclass(frozen=True)
class KindFigures:
    """Sensitivity and delay (s from onset to the first alert) for one event kind."""

    kind: str
    events: int
    detected: int
    sensitivity: float | None
    median_delay_s: float | None
    p90_delay_s: float | None


@dataclass(frozen=True)
class SetFigures:
    """One alert set on the synthetic held-out patients (module rules)."""

    name: str
    description: str
    kinds: tuple[KindFigures, ...]
    events: int
    detected: int
    sensitivity: float | None
    median_delay_s: float | None
    p90_delay_s: float | None
    alerts: int
    false_alerts: int
    event_free_hours: float
    false_per_hour: float | None
    false_alerts_event_free_records: int
    event_free_record_hours: float
    false_per_hour_event_free_records: float | None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SetFigures:
        """Inverse of `dataclasses.asdict`."""
        return cls(**{**d, "kinds": tuple(KindFigures(**k) for k in d["kinds"])})


@dataclass(frozen=True)
class LabelledPatient:
    """A held-out patient: vitals (n, 7) at 1 Hz and its clinical events (ground truth)."""

    patient: str
    vitals: NDArray[np.float64]
    events: tuple[Event, ...]

    @classmethod
    def of(cls, p: SynthPatient) -> LabelledPatient:
        """From a synthetic patient (events starting after its record are dropped)."""
        n = p.vitals.shape[0]
        return cls(p.patient, p.vitals, tuple(e for e in _clinical(p.events) if e.onset_s < n))


def count_set(
    name: str, replays: Sequence[PatientReplay], patients: Sequence[LabelledPatient]
) -> SetFigures:
    """Figures of alert set ``name`` (`ALERT_SETS`) over replays of ``patients`` (same order)."""
    description, kinds = ALERT_SETS[name]
    per_kind: dict[str, list[float | None]] = {k.value: [] for k in EVENT_KINDS}
    alerts = false = free_records_false = 0
    free_s = free_records_s = 0.0
    for rep, p in zip(replays, patients, strict=True):
        mine = [a for a in rep.alerts if _in_set(a, kinds)]
        alerts += len(mine)
        n_false = sum(_is_false(a, p.events) for a in mine)
        false += n_false
        free_s += _event_free_s(p.events, rep.seconds)
        if not p.events:
            free_records_false += n_false
            free_records_s += rep.seconds
        for e in p.events:
            t = _first_new(mine, kinds, e.onset_s, e.end_s + POST_EVENT_S)
            per_kind.setdefault(e.kind.value, []).append(None if t is None else t - e.onset_s)
    figures = []
    all_delays: list[float] = []
    n_events = n_detected = 0
    for kind, outcomes in per_kind.items():
        delays = [d for d in outcomes if d is not None]
        all_delays += delays
        n_events += len(outcomes)
        n_detected += len(delays)
        figures.append(KindFigures(
            kind, len(outcomes), len(delays),
            _round(len(delays) / len(outcomes)) if outcomes else None,
            _quantile(delays, 50.0), _quantile(delays, _P90),
        ))
    free_h, free_rec_h = free_s / _SECONDS_PER_HOUR, free_records_s / _SECONDS_PER_HOUR
    return SetFigures(
        name=name, description=description, kinds=tuple(figures), events=n_events,
        detected=n_detected,
        sensitivity=_round(n_detected / n_events) if n_events else None,
        median_delay_s=_quantile(all_delays, 50.0), p90_delay_s=_quantile(all_delays, _P90),
        alerts=alerts, false_alerts=false, event_free_hours=round(free_h, _DIGITS),
        false_per_hour=_round(false / free_h) if free_h > 0 else None,
        false_alerts_event_free_records=free_records_false,
        event_free_record_hours=round(free_rec_h, _DIGITS),
        false_per_hour_event_free_records=(
            _round(free_records_false / free_rec_h) if free_rec_h > 0 else None
        ),
    )


@dataclass(frozen=True)
class RealFigures:
    """One alert set on real numerics: every alert counted as false (an upper bound).

    ``hours``: measured hours (seconds with at least one valid vital; no alert can start
    without one).
    """

    name: str
    alerts: int
    hours: float
    alerts_per_hour: float | None


def _count_real(name: str, replays: Sequence[PatientReplay], measured_s: float) -> RealFigures:
    """Every alert of the set, per hour of MEASURED time (seconds with a valid vital)."""
    _, kinds = ALERT_SETS[name]
    n = sum(_in_set(a, kinds) for r in replays for a in r.alerts)
    hours = measured_s / _SECONDS_PER_HOUR
    return RealFigures(name, n, round(hours, _DIGITS), _round(n / hours) if hours else None)


def _auroc(y: NDArray[np.bool_], s: NDArray[np.float64]) -> float | None:
    """Mann-Whitney AUROC with ties counted half; None without both classes."""
    from scipy.stats import rankdata  # noqa: PLC0415 - scipy is a training dependency

    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)
    return _round((float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _ahead(truth: NDArray[np.bool_], horizon_s: int) -> NDArray[np.bool_]:
    """True at t when truth is True at any second in (t, t + horizon_s]."""
    c = np.concatenate(([0], np.cumsum(truth, dtype=np.int64)))
    t = np.arange(truth.size)
    hi = np.minimum(t + horizon_s, truth.size - 1)
    out: NDArray[np.bool_] = (c[hi + 1] - c[t + 1]) > 0
    return out


def _truth(p: LabelledPatient, n: int) -> NDArray[np.bool_]:
    t = np.arange(n, dtype=np.float64)
    out = np.zeros(n, dtype=np.bool_)
    for e in p.events:
        out |= e.active(t)
    return out


def _aurocs(
    replays: Sequence[PatientReplay], patients: Sequence[LabelledPatient], horizon_s: int
) -> dict[str, Any]:
    scores = np.concatenate([r.scores for r in replays])
    truth = np.concatenate([_truth(p, r.seconds) for r, p in zip(replays, patients, strict=True)])
    ahead = np.concatenate([
        _ahead(_truth(p, r.seconds), horizon_s) for r, p in zip(replays, patients, strict=True)
    ])
    out: dict[str, Any] = {}
    for j, key in enumerate(_SCORE_COLUMNS):
        col = scores[:, j]
        ok = np.isfinite(col)
        s = -col[ok] if key == "iforest.score" else col[ok]
        out[key] = {"auroc_event_now": _auroc(truth[ok], s), "seconds": int(ok.sum()),
                    "event_seconds": int(truth[ok].sum())}
        if j == _FORECASTER_COLUMN:
            out[key][f"auroc_event_within_{horizon_s}s"] = _auroc(ahead[ok], s)
    return out


def _lead_time(
    replays: Sequence[PatientReplay], patients: Sequence[LabelledPatient],
) -> dict[str, Any]:
    warn = ALERT_SETS["early_warning"][1]
    leads: list[float] = []
    warned_before_onset = events = 0
    for rep, p in zip(replays, patients, strict=True):
        for e in p.events:
            events += 1
            w = _first_new(rep.alerts, warn, e.onset_s - POST_EVENT_S, e.end_s + POST_EVENT_S)
            f = _first_new(rep.alerts, None, e.onset_s, e.end_s + POST_EVENT_S)
            if w is not None and w < e.onset_s:
                warned_before_onset += 1
            if w is not None and f is not None:
                leads.append(f - w)
    return {
        "events": events,
        "events_with_warning_and_limit_alert": len(leads),
        "warning_first": sum(x > 0 for x in leads),
        "median_lead_s": _quantile(leads, 50.0),
        "p90_lead_s": _quantile(leads, _P90),
        "events_warned_before_onset": warned_before_onset,
    }


def _per_second(flag: NDArray[np.bool_], y: NDArray[np.bool_]) -> dict[str, float | None]:
    tp, fp, fn = int((flag & y).sum()), int((flag & ~y).sum()), int((~flag & y).sum())
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"precision": _round(precision), "recall": _round(recall), "f1": _round(f1),
            "flag_rate": _round((tp + fp) / flag.size) if flag.size else None}


def weak_label_comparison(
    train: Sequence[SynthPatient], test: Sequence[SynthPatient],
    replays: Sequence[PatientReplay], thresholds: Mapping[str, float],
) -> dict[str, Any]:
    """The original design's z-score labels against the injected truth, and the learned flags.

    Z-score labels (`training.labels`, baseline `WEAK_BASELINE_S`): threshold tuned on
    ``train`` (max pooled per-second F1), measured on ``test`` per second and per event.
    Learned flags, per second of the same ``test`` replays (label: a clinical event active):
    the 2-of-3 ensemble vote, the risk model and the forecaster above their manifest
    thresholds, before any onset delay (the same footing as a per-second label).
    """
    from training.labels import evaluate_zscore  # noqa: PLC0415 - training side only

    ev = evaluate_zscore(train, test, baseline_s=WEAK_BASELINE_S)
    any_kind = ev.agreement["any"]
    out: dict[str, Any] = {
        "baseline_s": WEAK_BASELINE_S,
        "threshold": ev.tuning.threshold,
        "tuned_on": f"{len(ev.train_patients)} training patients ({ev.tuning.rule})",
        "zscore": {
            name: {"precision": _round(a.precision), "recall": _round(a.recall),
                   "f1": _round(a.f1), "flag_rate": _round(a.flag_rate),
                   "event_recall": _round(a.event_recall), "events": a.n_events,
                   "median_latency_s": _round(a.median_latency_s)}
            for name, a in ev.agreement.items()
        },
        "learned_any": {"zscore weak labels": {
            "precision": _round(any_kind.precision), "recall": _round(any_kind.recall),
            "f1": _round(any_kind.f1), "flag_rate": _round(any_kind.flag_rate)}},
    }
    y = np.concatenate([_truth(LabelledPatient.of(p), r.seconds)
                        for p, r in zip(test, replays, strict=True)])
    s = np.concatenate([r.scores for r in replays])
    with np.errstate(invalid="ignore"):  # NaN (warm-up) compares False: not flagged
        votes = ((s[:, 0] > thresholds["autoencoder.mse"]).astype(int)
                 + (s[:, 1] < thresholds["iforest.score"])
                 + (s[:, 2] > thresholds["dbscan.ratio"]))
        flags = {
            "2-of-3 ensemble vote": votes >= MIN_VOTES,
            "risk model": s[:, 3] > thresholds["risk.probability"],
            "forecaster p_event": s[:, _FORECASTER_COLUMN] > thresholds["forecaster.p_event"],
        }
    for name, flag in flags.items():
        out["learned_any"][name] = _per_second(flag, y)
    return out


# ------------------------------------------------------------------------------ cohorts


def held_out_patients(
    bundle_path: str | Path, data_dir: Path | None
) -> tuple[list[SynthPatient], str]:
    """The bundle's test split, regenerated exactly as `training.fit.prepare` made it.

    `split_patients` with only the test patients; same checks.
    """
    splits, what = split_patients(bundle_path, data_dir)
    return splits["test"], what


def split_patients(
    bundle_path: str | Path, data_dir: Path | None
) -> tuple[dict[str, list[SynthPatient]], str]:
    """The bundle's train / val / test patients, regenerated as `training.fit.prepare` made them.

    ``data_dir`` must be the calibration data the bundle was fitted with (None = the shipped
    fixture): its fingerprint must match the manifest's, and the regenerated split must equal
    the manifest's, else ValueError (the cohort would not be the one the bundle held out).
    """
    from training.calibration import calibrate  # noqa: PLC0415
    from training.datasets import fingerprint, split_by_patient  # noqa: PLC0415
    from training.fit import PRESETS, load_real_numerics, synth_for  # noqa: PLC0415 - TF

    manifest = json.loads((Path(bundle_path) / "manifest.json").read_text(encoding="utf-8"))
    td = manifest.get("training_data", {})
    test = td.get("split", {}).get("test")
    if td.get("preset") not in PRESETS or not test:
        raise ValueError(
            f"{bundle_path}: the manifest names no fit preset and test split; give the held-out "
            "patients explicitly (--patients/--hours/--seed)"
        )
    cfg = PRESETS[td["preset"]].with_seed(int(td["seed"]))
    recording = {"no_temperature_probe_fraction": cfg.no_temp_fraction,
                 "held_numerics_fraction": cfg.held_fraction, "held_period_s": cfg.held_period_s}
    if (cfg.n_patients != td.get("patients") or cfg.n_patients * cfg.hours != td.get("hours")
            or td.get("recording", {}) != recording):
        raise ValueError(f"preset {cfg.name} no longer matches the manifest's cohort")
    real = load_real_numerics(data_dir)
    if fingerprint(real.files) != td.get("fingerprint"):
        raise ValueError(
            f"calibration data {real.source} is not what the bundle was fitted with "
            "(fingerprint differs): give the same --data"
        )
    cohort = synth_for(cfg, calibrate(list(real.records)))
    groups = split_by_patient([p.patient for p in cohort], cfg.split, seed=cfg.seed)
    if sorted(groups[2]) != sorted(test):
        raise ValueError("the regenerated test split differs from the manifest's")
    by_id = {p.patient: p for p in cohort}
    splits = {name: [by_id[i] for i in sorted(g)]
              for name, g in zip(("train", "val", "test"), groups, strict=True)}
    what = (f"the bundle's test split: {len(test)} of {cfg.n_patients} synthetic patients "
            f"(preset {cfg.name}, seed {cfg.seed}), never trained on nor used for thresholds")
    return splits, what


def fresh_cohort(
    n_patients: int, hours: float, seed: int, data_dir: Path | None,
    *, training_seed: int | None = None,
) -> tuple[list[SynthPatient], str]:
    """A new synthetic cohort (calibrated like `fit`); unseen because its seed differs.

    Refuses (ValueError) ``seed == training_seed``: that would regenerate training patients.
    """
    from training.calibration import calibrate  # noqa: PLC0415
    from training.fit import load_real_numerics  # noqa: PLC0415
    from training.synth import synth_cohort  # noqa: PLC0415

    if training_seed is not None and seed == training_seed:
        raise ValueError(f"seed {seed} is the bundle's training seed: pick another")
    calib = calibrate(list(load_real_numerics(data_dir).records))
    cohort = synth_cohort(n_patients, hours, calib, seed)
    what = (f"a fresh synthetic cohort: {n_patients} patients x {hours:g} h, seed {seed} "
            f"(training seed {training_seed}): unseen because the seeds differ")
    return cohort, what


# ------------------------------------------------------------------------------ the report


@dataclass(frozen=True)
class EvaluationReport:
    """Everything `evaluate` measured; `to_dict` is JSON, `to_markdown` README tables."""

    bundle: str
    onset_s: float
    clear_s: float
    synthetic: Mapping[str, Any]
    sets: tuple[SetFigures, ...]
    aurocs: Mapping[str, Any]
    int8_vs_float: Mapping[str, Any]
    lead_time: Mapping[str, Any]
    suppression: Mapping[str, Any]
    real: Mapping[str, Any] | None = None
    real_sets: tuple[RealFigures, ...] = field(default_factory=tuple)
    weak_labels: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (None where a figure does not exist)."""
        d = asdict(self)
        d["sets"] = [asdict(s) for s in self.sets]
        d["real_sets"] = [asdict(s) for s in self.real_sets]
        out: dict[str, Any] = json.loads(json.dumps(d))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvaluationReport:
        """Inverse of `to_dict`."""
        return cls(**{
            **d,
            "sets": tuple(SetFigures.from_dict(s) for s in d["sets"]),
            "real_sets": tuple(RealFigures(**s) for s in d["real_sets"]),
        })

    def to_markdown(self) -> str:
        """README-ready tables, each preceded by what it rests on."""
        return _markdown(self)


def _caught(recall: float | None, events: int) -> str:
    return "n/a" if recall is None else str(round(recall * events))


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _markdown(r: EvaluationReport) -> str:
    s = r.synthetic
    lines = [
        f"## Evaluation of bundle `{r.bundle}`", "",
        f"Replayed through the edge path (`EdgeCore`, onset {r.onset_s:g} s, clear "
        f"{r.clear_s:g} s, one frame a second at wire resolution). Rules: training/evaluate.py.",
        "",
        f"**Synthetic held-out patients** ({s['what']}): {s['patients']} patients, "
        f"{s['hours']:.1f} h, {s['events']} injected events, {s['event_free_patients']} "
        f"event-free records ({s['event_free_record_hours']:.1f} h). Synthetic data, "
        "synthetic ground truth.", "",
        "| set | sensitivity | median / p90 delay (s) | false alerts / patient-h "
        "(event-free time) | on event-free records |",
        "|---|---|---|---|---|",
    ]
    for f in r.sets:
        lines.append(
            f"| {f.description} | {_fmt(f.sensitivity)} ({f.detected}/{f.events}) | "
            f"{_fmt(f.median_delay_s, 0)} / {_fmt(f.p90_delay_s, 0)} | "
            f"{_fmt(f.false_per_hour)} ({f.false_alerts} in {f.event_free_hours:.1f} h) | "
            f"{_fmt(f.false_per_hour_event_free_records)} "
            f"({f.false_alerts_event_free_records} in {f.event_free_record_hours:.1f} h) |"
        )
    kinds = [k.kind for k in r.sets[0].kinds] if r.sets else []
    lines += ["", "Sensitivity per event kind (detected / events; median delay s):", "",
              "| set | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for f in r.sets:
        cells = [f"{k.detected}/{k.events} ({_fmt(k.median_delay_s, 0)})" for k in f.kinds]
        lines.append(f"| {f.name} | " + " | ".join(cells) + " |")
    lines += ["", f"ROC-AUC per detector score, per second of the same {s['patients']} "
              "patients (label: clinical event active; int8 scores as the edge computed "
              "them):", "", "| score | AUROC | seconds scored | event seconds |",
              "|---|---|---|---|"]
    for key, a in r.aurocs.items():
        extra = "".join(
            f"; {k.removeprefix('auroc_')}: {_fmt(v, 3)}" for k, v in a.items()
            if k.startswith("auroc_event_within")
        )
        lines.append(f"| {key} | {_fmt(a['auroc_event_now'], 3)}{extra} | {a['seconds']} | "
                     f"{a['event_seconds']} |")
    lines += ["", "int8 vs float32 AUROC (from the bundle manifest: `training.fit`'s test "
              "split, one row per 10 s; the float twins are not in the bundle):", "",
              "| network | int8 | float32 |", "|---|---|---|"]
    for net, v in r.int8_vs_float.items():
        lines.append(f"| {net} | {_fmt(v.get('int8'), 4)} | {_fmt(v.get('float32'), 4)} |")
    lt = r.lead_time
    lines += ["", f"LSTM lead time (events with both an early warning and a fixed-limit "
              f"alert): {lt['events_with_warning_and_limit_alert']} of {lt['events']} events; "
              f"warning first in {lt['warning_first']}; median lead "
              f"{_fmt(lt['median_lead_s'], 0)} s (p90 {_fmt(lt['p90_lead_s'], 0)} s); "
              f"warning before the onset in {lt['events_warned_before_onset']} events.", ""]
    sp = r.suppression
    by = {s.name: s for s in r.sets}
    a, g = by[_FIXED], by["fixed_limits_gated"]
    lines += [
        f"Artefact suppression by the LSTM (hold {sp['hold_s']:g} s: {sp['rule']}): false "
        f"fixed-limit alerts {a.false_alerts} -> {g.false_alerts} "
        f"({_fmt(a.false_per_hour)} -> {_fmt(g.false_per_hour)} per patient-h); events "
        f"detected {a.detected} -> {g.detected} of {a.events}; median delay "
        f"{_fmt(a.median_delay_s, 0)} -> {_fmt(g.median_delay_s, 0)} s (p90 "
        f"{_fmt(a.p90_delay_s, 0)} -> {_fmt(g.p90_delay_s, 0)} s). Fixed-limit alerts "
        "identical with and without the learned detectors (ungated): "
        f"{sp.get('fixed_limit_alerts_identical_without_model')}.", "",
    ]
    if r.weak_labels is not None:
        w = r.weak_labels
        lines += [
            f"Weak labels of the original design (per-patient z-score, baseline "
            f"{w['baseline_s']} s, |z| > {w['threshold']:g} tuned on {w['tuned_on']}) against "
            "the injected truth on the same held-out patients, per second and per event:", "",
            "| kind | precision | recall | F1 | seconds flagged | events caught | "
            "median latency (s) |", "|---|---|---|---|---|---|---|",
        ]
        for kind, a in w["zscore"].items():
            lines.append(f"| {kind} | {_fmt(a['precision'])} | {_fmt(a['recall'])} | "
                         f"{_fmt(a['f1'])} | {_fmt(a['flag_rate'])} | "
                         f"{_caught(a['event_recall'], a['events'])} of {a['events']} | "
                         f"{_fmt(a['median_latency_s'], 0)} |")
        lines += ["", "Per second against any clinical event, before onset delays:", "",
                  "| flags | precision | recall | F1 | seconds flagged |", "|---|---|---|---|---|"]
        for name, a in w["learned_any"].items():
            lines.append(f"| {name} | {_fmt(a['precision'])} | {_fmt(a['recall'])} | "
                         f"{_fmt(a['f1'])} | {_fmt(a['flag_rate'])} |")
        lines.append("")
    if r.real is not None:
        rl = r.real
        lines += [
            f"**Real numerics** ({rl['source']}): {rl['patients']} patients, {rl['records']} "
            f"records, {rl['hours']:.1f} h ({rl['measured_hours']:.1f} h with a valid "
            f"vital, the denominator below), sampled every {rl['native_period_s']} s and "
            "replayed held piecewise-constant at 1 Hz. No labels: every alert counts as false, "
            "so these are UPPER BOUNDS (real deterioration may be present). "
            f"{rl['note']}", "",
            "| set | alerts | alerts / patient-h (upper bound of false alerts) |", "|---|---|---|",
        ]
        for rf in r.real_sets:
            lines.append(f"| {ALERT_SETS[rf.name][0]} | {rf.alerts} | "
                         f"{_fmt(rf.alerts_per_hour)} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ entry point


def _int8_vs_float(metrics: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for net in ("autoencoder", "forecaster"):
        v = {q: metrics.get(f"{net}.test_auroc_{q}") for q in ("int8", "float32")}
        out[net] = {k: float(x) if isinstance(x, int | float) else None for k, x in v.items()}
    return out


def evaluate(
    bundle_path: str | Path,
    *,
    cohort: Sequence[SynthPatient],
    cohort_description: str = "held-out synthetic patients",
    real_patients: Sequence[PatientVitals] | None = None,
    real_source: str = "",
    onset_s: float = 5.0,
    clear_s: float = 3.0,
    weak_label_train: Sequence[SynthPatient] = (),
) -> EvaluationReport:
    """Replay ``cohort`` (and ``real_patients``) through the edge; every figure of the report.

    ``cohort``: held-out synthetic patients (`held_out_patients` or `fresh_cohort`), with their
    events as ground truth. ``real_patients``: real numerics, replayed at 1 Hz as loaded (MIMIC:
    held piecewise-constant). ``onset_s`` / ``clear_s``: the alarm timing (s), as configured.
    ``weak_label_train``: training patients; when given, the z-score weak labels are tuned on
    them and compared with the truth on ``cohort``, next to the learned detectors' per-second
    flags (`weak_label_comparison`).
    """
    bundle = load_bundle(bundle_path)
    config = edge_config(bundle_path, onset_s=onset_s, clear_s=clear_s)
    patients = [LabelledPatient.of(p) for p in cohort]
    replays = []
    for p in patients:
        _log.info("replaying %s (%d s, %d events)", p.patient, p.vitals.shape[0], len(p.events))
        replays.append(replay(config, bundle, p.patient, p.vitals))
    fc = bundle.manifest.extra["forecaster"]
    horizon_s = round(float(fc["horizon_steps"]) * float(fc["step_s"]))
    lead = _lead_time(replays, patients)
    suppression: dict[str, Any] = {
        "hold_s": config.model.artefact_hold_s,
        "rule": "a fixed-limit breach waits hold_s longer than onset_s when the forecaster's "
                "output the second before it began had p_event at or below its threshold and "
                "a forecast of that vital that stays inside the limit (edge/learned.py rule 8)",
    }
    if patients:  # the fixed limits do not depend on the learned detectors (module rules)
        alone = replay(config, None, patients[0].patient, patients[0].vitals)
        with_model = [a for a in replays[0].alerts if _in_set(a, None)]
        suppression["fixed_limit_alerts_identical_without_model"] = (
            list(alone.alerts) == with_model
        )
    event_free = [(p, r) for p, r in zip(patients, replays, strict=True) if not p.events]
    synthetic = {
        "what": cohort_description,
        "patients": len(patients),
        "hours": round(sum(r.seconds for r in replays) / _SECONDS_PER_HOUR, _DIGITS),
        "events": sum(len(p.events) for p in patients),
        "event_free_patients": len(event_free),
        "event_free_record_hours": round(
            sum(r.seconds for _, r in event_free) / _SECONDS_PER_HOUR, _DIGITS
        ),
        "patient_ids": [p.patient for p in patients],
    }
    real_info: dict[str, Any] | None = None
    real_sets: tuple[RealFigures, ...] = ()
    if real_patients:
        real_replays = []
        for rp in real_patients:
            _log.info("replaying real %s (%d s)", rp.name, rp.vitals.shape[0])
            real_replays.append(replay(config, bundle, rp.patient, rp.vitals))
        periods = sorted({rp.native_period_s for rp in real_patients})
        measured_s = float(sum(
            int(np.isfinite(rp.vitals).any(axis=1).sum()) for rp in real_patients
        ))
        real_info = {
            "source": real_source or "real numerics",
            "patients": len({rp.patient for rp in real_patients}),
            "records": len(real_patients),
            "record_names": [rp.name for rp in real_patients],
            "hours": round(sum(r.seconds for r in real_replays) / _SECONDS_PER_HOUR, _DIGITS),
            "measured_hours": round(measured_s / _SECONDS_PER_HOUR, _DIGITS),
            "native_period_s": periods[0] if len(periods) == 1 else periods,
            "replayed_at": "1 Hz, each reading held piecewise-constant until the next",
            "note": "The same real numerics calibrated the synthetic cohort's variability "
                    "(not trained on).",
        }
        real_sets = tuple(_count_real(name, real_replays, measured_s) for name in ALERT_SETS)
    weak = (
        weak_label_comparison(weak_label_train, cohort, replays, bundle.manifest.thresholds)
        if weak_label_train else None
    )
    return EvaluationReport(
        bundle=bundle.version, onset_s=onset_s, clear_s=clear_s, synthetic=synthetic,
        weak_labels=weak,
        sets=tuple(count_set(name, replays, patients) for name in ALERT_SETS),
        aurocs=_aurocs(replays, patients, horizon_s) if replays else {},
        int8_vs_float=_int8_vs_float(bundle.manifest.metrics),
        lead_time=lead, suppression=suppression, real=real_info, real_sets=real_sets,
    )
