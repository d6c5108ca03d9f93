"""Learned detection: the vitals bundle (models/BUNDLE.md) scored per bed, one row per second.

`LearnedDetector` is a `edge.detect.Detector` like the fixed limits, and runs next to them:
it adds detections and never removes or mutes one; its one effect on the fixed limits is the
bounded artefact hold of rule 8. `load_learned` builds it from the
configuration at start-up, or, when the bundle is refused, a `ModelUnavailableDetector` that
keeps the technical alert ``model_unavailable`` raised while the fixed limits carry on.

Rules (what a trained bundle relies on; see models/BUNDLE.md for the contract itself)
------------------------------------------------------------------------------------

1. **One feature row per VITALS sample.** Every new row of the bed's `VitalsRing` (one per
   VITALS frame, nominally 1 Hz) is fed to the bed's `FeatureStream` exactly once, oldest
   first. A call with no new row feeds nothing and repeats the current detections.
2. **Gaps.** When two consecutive samples are more than `GAP_S` (1.5 sample periods) apart,
   ``round(gap / period) - 1`` NaN rows ("not measured") are fed first, so the windows keep
   meaning seconds. At most the longest feature window of NaN rows is fed: after that many,
   every window is empty and more NaN rows change nothing (levels carry forward without limit).
3. **Warm-up.** History counts the real rows fed since start-up (NaN gap rows do not count;
   a gap at least as long as the shortest window empties it and restarts the count). No vote,
   risk or ensemble detection until the history covers the shortest feature window (30 s by
   default); no early warning until it covers the forecaster's window: ``window_steps``
   steps of ``step_s`` (a whole number of rows), i.e. ``(window_steps - 1) * step_s + 1`` rows.
4. **Scores, per new row** (only the newest row of a call is scored; earlier rows of the same
   call only advance the history, since the alarm manager sees one detection list per call):
   ``z = scaler(features)``; autoencoder ``mse = mean((out - z)^2)``; IsolationForest
   ``score_samples``; DBSCAN ``distance / eps``; votes by the manifest thresholds; two or more
   votes -> ``ensemble_anomaly`` (high). Risk ``P(event)`` on ``[z, mse, iforest, dbscan]`` ->
   ``risk_high`` (medium). Forecaster ``p_event`` (from the last element of the packed output,
   models/forecaster.py) on the
   last ``window_steps`` scaled vital levels, ``step_s`` apart, newest last ->
   ``early_warning`` (medium). Thresholds come
   only from the manifest.
5. **Freshness.** Like the fixed limits: no detection when the newest sample is older than
   ``alarms.stale_s``, or when it holds no valid value at all (no physiological alarm from a
   reading the board marked not valid). ``values`` holds the sample's valid vitals.
6. **Refusal before scoring.** A bundle whose feature spec, scaler, thresholds, components or
   ``extra.forecaster`` this code cannot run is refused with `LearnedModelError` naming the
   field, at construction, before any row is scored.
7. **No allocation per tick.** Every array a tick touches is allocated here at construction
   (per bed: the feature stream and the forecaster ring; shared: scaled rows, model inputs and
   outputs). The TFLite interpreters are the ones the bundle loader created and verified; they
   run through `TFLiteModel.predict_into` (no allocation). Detections (dicts, strings)
   are built only when something fires. One thread only: the runtime thread.
8. **Artefact gate.** `artefact_hold` gives ``model.artefact_hold_s`` for a breach of a
   vital's limit that the trend does not support: the forecaster's output for the row BEFORE
   the newest had ``p_event`` at or below its threshold AND its forecast of that vital stays
   on the safe side of the limit over the whole horizon. Else 0 (also while the forecaster
   warms up: no trend, no hold). The row before: the trend leading into a breach, not the
   breach itself (a dip of SpO2 in the newest row moves the forecaster, and an artefact would
   vouch for itself). The forecast test keeps a vital drifting along a limit (a real slow
   deterioration, which flickers across it) from being held again at each crossing.
   `edge.runtime.EdgeCore` puts it on that bed's fixed-limit detections as ``hold_s``; the
   alarm manager keeps the hold of the detection that opened a condition (the decision at
   the breach's first second) and waits that much longer before announcing it
   (edge/alarms.py rule 1). A brief artefact ends inside the
   hold; a breach that lasts alarms at most ``artefact_hold_s`` later. The gate never delays
   a learned or technical alert.
9. **Drivers** (edge/explain.py), computed only when something fires. Ensemble: the vitals
   with a level or trend feature at least `DRIVER_Z` (2 training standard deviations) from
   the training mean, largest first; that feature says the direction (level and window means:
   high/low; delta and slopes: rising/falling). Window stds are left out: the models use them,
   but "temperature unsteady" from 0.1 degC steps tells a nurse nothing. Risk: the vitals
   whose features push the logit up by at least `DRIVER_LOGIT` in total
   (`LogisticScorer.contributions`), largest first, each direction said the ensemble's way
   (one coefficient of correlated features has no reliable sign of its own). Early warning:
   the vitals the forecaster moves by at least `DRIVER_FORECAST` scaled units from now to the
   end of its horizon (rising/falling, with the forecast value); when it moves none that far
   (its event head fired on the pattern, not on a forecast level), the ensemble's drivers. A
   vital not measured now is never a driver.
10. **Manual readings** (``vigil-edge reading``, ``cmd/reading``) enter the models where the
    monitor has no valid value: a manual HR, SpO2, RR, SBP, DBP or temperature no older than
    ``manual_max_age_s`` (``news2.manual_max_age_s``, the age NEWS2 accepts too) fills that
    vital of every row fed, and MAP is derived from a manual SBP and DBP as (SBP + 2 DBP) / 3
    when the monitor has none. A monitor value always wins. Rule 5 still looks at the
    monitor's own values only: manual readings alone raise no learned alert. Glucose,
    consciousness and oxygen are not inputs of a vitals bundle (its feature spec): they enter
    NEWS2 only.
11. **Beat model.** A bundle that also holds the ECG beat model (components
    ``beat_classifier``, ``beat_novelty`` and, from beat spec 3, ``beat_trees``,
    ``extra.beats``, ``requires.beat_spec_version``: `models.beat_classifier`) hands it to the
    ECG head (`edge.ecg.EcgDetector.use_classifier`). One it cannot run is refused whole, as
    rule 6 says, naming the field; a bundle without one leaves the ECG head on its
    class-free rules.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from edge.bedstate import BedState, VitalsRing
from edge.config import ARTEFACT_HOLD_MAX_S, EdgeConfig
from edge.detect import Detector, configured_detectors
from edge.ecg import EcgDetector
from edge.events import Detection, Driver, Priority
from edge.explain import MAX_DRIVERS
from firmware_bridge.frames import PROTOCOL_VERSION
from models.beat_classifier import COMPONENT as BEAT_COMPONENT
from models.beat_classifier import NOVELTY as BEAT_NOVELTY
from models.beat_classifier import TREES as BEAT_TREES
from models.beat_classifier import TREES_TWO_LEADS as BEAT_TREES_TWO_LEADS
from models.beat_classifier import BeatClassifier, BeatClassifierError
from models.beats import BEAT_SPEC_VERSIONS
from models.bundle import Bundle, BundleError, bundle_location, load_bundle
from models.dbscan import DbscanScorer
from models.features import (
    FEATURE_SPEC_VERSION,
    VITAL_NAMES,
    FeatureSpec,
    FeatureSpecError,
    FeatureStream,
)
from models.forecaster import event_probability, split_packed
from models.iforest import IsolationForestScorer
from models.logistic import LogisticScorer
from models.scaler import ScalerError, Standardizer
from models.tflite import ModelError, TFLiteModel

__all__ = [
    "DRIVER_FORECAST",
    "DRIVER_LOGIT",
    "DRIVER_Z",
    "ENSEMBLE",
    "GAP_S",
    "MODEL_PREFIX",
    "THRESHOLD_KEYS",
    "LearnedDetector",
    "LearnedModelError",
    "LearnedSetup",
    "ModelUnavailableDetector",
    "check_bundle",
    "load_learned",
    "model_key",
]

_log = logging.getLogger(__name__)

MODEL_PREFIX: Final = "vitals-bundle/"
"""Alerts of learned detections carry ``model = vitals-bundle/<bundle_version>``."""

ENSEMBLE: Final = ("autoencoder", "iforest", "dbscan")
"""The unsupervised detectors that vote; `MIN_VOTES` of them make an ``ensemble_anomaly``."""
MIN_VOTES: Final = 2

THRESHOLD_KEYS: Final[Mapping[str, str]] = {
    "autoencoder": "autoencoder.mse",
    "iforest": "iforest.score",
    "dbscan": "dbscan.ratio",
    "risk": "risk.probability",
    "forecaster": "forecaster.p_event",
}
"""Component -> manifest threshold key (models/BUNDLE.md)."""

_KINDS: Final[Mapping[str, str]] = {
    "autoencoder": "tflite",
    "iforest": "iforest",
    "dbscan": "dbscan",
    "risk": "logistic",
    "forecaster": "tflite",
}

GAP_S: Final = 1.5
"""Samples further apart than this many sample periods leave a gap filled with NaN rows."""

_N_VITALS: Final = len(VITAL_NAMES)
DRIVER_Z: Final = 2.0
"""Rule 9: |scaled feature| from which a vital drives an ensemble explanation."""
DRIVER_LOGIT: Final = 0.25
"""Rule 9: log-odds a vital must add to the risk logit to drive a risk explanation."""
DRIVER_FORECAST: Final = 0.5
"""Rule 9: forecast change (forecaster scaled units) from which a vital drives an early
warning explanation."""
_LEVEL, _TREND, _SPREAD, _MISSING = range(4)


def _role(feature: str) -> int:
    """Rule 9: what a feature says about its vital, from its name (``hr_bpm.slope_30s``)."""
    kind = feature.split(".", 1)[1] if "." in feature else ""
    if kind == "missing":
        return _MISSING
    if kind == "delta" or kind.startswith("slope_"):
        return _TREND
    return _SPREAD if kind.startswith("std_") else _LEVEL


_WORDS: Final = {_LEVEL: ("high", "low"), _TREND: ("rising", "falling")}
_SCORE_KEYS: Final = (
    "autoencoder.mse", "iforest.score", "dbscan.ratio", "risk.probability", "forecaster.p_event",
)
_P_EVENT: Final = 4


class LearnedModelError(BundleError):
    """A verified bundle this code cannot run (spec, scaler, thresholds, shapes); names the field.

    A `BundleError`, so whoever refuses bundles refuses these the same way.
    """


# ------------------------------------------------------------------------------ bundle checks


@dataclass(frozen=True, slots=True)
class _Forecaster:
    """``extra.forecaster`` of the manifest, checked."""

    window_steps: int
    horizon_steps: int
    step_s: float
    stride: int  # feature rows (seconds) between two forecaster steps
    vitals_mean: npt.NDArray[np.float64]
    vitals_scale: npt.NDArray[np.float64]
    logit_scale: float  # p_event = sigmoid(logit_scale * last packed value)

    @property
    def span_rows(self) -> int:
        """Rows of 1 Hz history one forecaster window covers, oldest to newest step."""
        return (self.window_steps - 1) * self.stride + 1


def _refuse(message: str) -> LearnedModelError:
    return LearnedModelError(f"bundle cannot run on this edge: {message}")


def _vector(raw: Mapping[str, Any], key: str, *, positive: bool = False) -> npt.NDArray[np.float64]:
    values = raw.get(key)
    where = f"extra.forecaster.{key}"
    if not isinstance(values, list) or len(values) != _N_VITALS:
        raise _refuse(f"{where} must be a list of {_N_VITALS} numbers, got {values!r}")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise _refuse(f"{where}[{i}] = {v!r} is not a finite number")
        if positive and not v > 0:
            raise _refuse(f"{where}[{i}] = {v!r} must be > 0")
    return np.array(values, dtype=np.float64)


def _positive_int(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _refuse(f"extra.forecaster.{key} must be an integer >= 1, got {value!r}")
    return value


def _parse_forecaster(extra: Mapping[str, Any], spec: FeatureSpec) -> _Forecaster:
    raw = extra.get("forecaster")
    if not isinstance(raw, Mapping):
        raise _refuse("extra.forecaster is missing (window_steps, horizon_steps, step_s, ...)")
    raw_step = raw.get("step_s")
    step = (
        float(raw_step)
        if isinstance(raw_step, int | float) and not isinstance(raw_step, bool)
        else math.nan
    )
    stride = round(step / spec.sample_period_s) if step > 0 else 0
    if stride < 1 or not math.isclose(stride * spec.sample_period_s, step):
        raise _refuse(
            f"extra.forecaster.step_s = {raw_step!r}; this edge feeds one row per "
            f"{spec.sample_period_s:g} s, so a step must be a whole number of rows"
        )
    return _Forecaster(
        window_steps=_positive_int(raw, "window_steps"),
        horizon_steps=_positive_int(raw, "horizon_steps"),
        step_s=step,
        stride=stride,
        vitals_mean=_vector(raw, "vitals_mean"),
        vitals_scale=_vector(raw, "vitals_scale", positive=True),
        logit_scale=_positive_float(raw, "logit_scale"),
    )


def _positive_float(raw: Mapping[str, Any], key: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise _refuse(f"extra.forecaster.{key} must be a finite number > 0, got {value!r}")
    return float(value)


def _thresholds(raw: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in THRESHOLD_KEYS.values():
        value = raw.get(key)
        if value is None or not math.isfinite(value):
            raise _refuse(f"thresholds.{key} is missing or not finite ({value!r})")
        out[key] = float(value)
    return out


def beat_classifier(bundle: Bundle) -> BeatClassifier | None:
    """Rule 11: the bundle's beat model, None when it has none; `LearnedModelError` when it
    has one this edge cannot run."""
    m = bundle.manifest
    if BEAT_COMPONENT not in m.components:
        return None
    required = m.requires.get("beat_spec_version")
    if required not in BEAT_SPEC_VERSIONS:
        raise _refuse(f"requires.beat_spec_version = {required!r}; this edge cuts beats by "
                      f"spec versions {', '.join(map(str, BEAT_SPEC_VERSIONS))} "
                      "(models/beats.py)")
    try:
        return BeatClassifier.from_bundle(m.extra, m.thresholds, bundle.components[BEAT_COMPONENT],
                                          novelty=bundle.components.get(BEAT_NOVELTY),
                                          trees=bundle.components.get(BEAT_TREES),
                                          trees_two_leads=bundle.components.get(
                                              BEAT_TREES_TWO_LEADS),
                                          version=bundle.version)
    except BeatClassifierError as exc:
        raise _refuse(str(exc)) from exc


def with_beat_model(detectors: Sequence[Detector], beats: BeatClassifier | None) -> None:
    """Give the ECG head among ``detectors`` the bundle's beat model (rule 11)."""
    for det in detectors:
        if isinstance(det, EcgDetector):
            det.use_classifier(beats)


def _tflite(bundle: Bundle, name: str) -> TFLiteModel:
    model = getattr(bundle.components[name], "model", None)
    if not isinstance(model, TFLiteModel):
        raise _refuse(f"component {name}: not a TFLite model")
    if model.expected_dtype != np.float32:
        raise _refuse(f"component {name}: input dtype {model.expected_dtype} is not supported")
    return model


def _expect_shape(name: str, what: str, got: tuple[int, ...], want: tuple[int, ...]) -> None:
    if got != want:
        raise _refuse(f"component {name}: {what} shape {got}, this edge feeds {want}")


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything of a bundle the detector uses, checked against what this code computes."""

    spec: FeatureSpec
    scaler: Standardizer
    thresholds: Mapping[str, float]
    forecaster: _Forecaster
    autoencoder: TFLiteModel
    iforest: IsolationForestScorer
    dbscan: DbscanScorer
    risk: LogisticScorer
    forecaster_model: TFLiteModel

    @classmethod
    def check(cls, bundle: Bundle) -> _Plan:
        """Refuse (`LearnedModelError`) anything this edge cannot run, before any scoring."""
        m = bundle.manifest
        required = m.requires.get("feature_spec_version", FEATURE_SPEC_VERSION)
        if required != FEATURE_SPEC_VERSION:
            raise _refuse(
                f"requires.feature_spec_version = {required!r}; this edge computes version "
                f"{FEATURE_SPEC_VERSION}"
            )
        protocol = m.requires.get("protocol_version", PROTOCOL_VERSION)
        if protocol != PROTOCOL_VERSION:
            raise _refuse(
                f"requires.protocol_version = {protocol!r}; this edge reads board protocol "
                f"version {PROTOCOL_VERSION} (firmware_bridge/PROTOCOL.md)"
            )
        try:
            spec = FeatureSpec.from_dict(m.feature_spec)
        except FeatureSpecError as exc:
            raise _refuse(f"feature_spec.{exc}") from exc
        try:
            scaler = Standardizer.from_dict(m.scaler)
            scaler.check_feature_names(spec.feature_names())
        except ScalerError as exc:
            raise _refuse(str(exc)) from exc
        for name, kind in _KINDS.items():
            got = m.components.get(name, {}).get("kind")
            if got != kind:
                raise _refuse(f"component {name}: expected kind {kind!r}, found {got!r}")
        n = spec.n_features
        comps = bundle.components
        iforest, dbscan, risk = comps["iforest"], comps["dbscan"], comps["risk"]
        if not isinstance(iforest, IsolationForestScorer) or iforest.n_features != n:
            raise _refuse(f"component iforest: must score {n} features")
        if not isinstance(dbscan, DbscanScorer) or dbscan.n_features != n:
            raise _refuse(f"component dbscan: must score {n} features")
        if not isinstance(risk, LogisticScorer) or risk.n_features != n + 3:
            raise _refuse(f"component risk: must score {n} + 3 inputs [z, mse, iforest, dbscan]")
        ae = _tflite(bundle, "autoencoder")
        _expect_shape("autoencoder", "input", ae.input_shape, (1, n))
        _expect_shape("autoencoder", "output", ae.output_shape, (1, n))
        fc = _parse_forecaster(m.extra, spec)
        fc_model = _tflite(bundle, "forecaster")
        _expect_shape("forecaster", "input", fc_model.input_shape, (1, fc.window_steps, _N_VITALS))
        _expect_shape(
            "forecaster", "output", fc_model.output_shape,
            (1, fc.horizon_steps * _N_VITALS + 1),
        )
        return cls(
            spec=spec, scaler=scaler, thresholds=_thresholds(m.thresholds), forecaster=fc,
            autoencoder=ae, iforest=iforest, dbscan=dbscan, risk=risk, forecaster_model=fc_model,
        )


# ------------------------------------------------------------------------------ per-bed state


class _BedState:
    """One bed's history: feature stream, forecaster ring, warm-up count, current detections."""

    __slots__ = (
        "detections",
        "fc_before",
        "fc_now",
        "features",
        "fed_s",
        "history",
        "p_before",
        "pos",
        "ring",
        "scores",
        "stream",
        "valid_now",
    )

    def __init__(self, spec: FeatureSpec, fc: _Forecaster, fill_scaled: npt.NDArray[Any]) -> None:
        self.stream = FeatureStream(spec)
        self.features: npt.NDArray[np.float64] | None = None  # the stream's output buffer
        # Scaled vital levels of the last S = span_rows seconds, written twice (at pos and
        # pos + S) so that they are always the slice ring[pos + 1 : pos + 1 + S], oldest first;
        # the forecaster sees every stride-th row of it (a view: no copy).
        span = fc.span_rows
        self.ring = np.empty((2 * span, _N_VITALS), dtype=np.float32)
        self.ring[:] = fill_scaled  # before any reading: the fill value (BUNDLE.md)
        self.pos = span - 1
        self.fed_s: float | None = None  # edge time of the last VITALS row fed
        self.history = 0  # rule 3
        self.valid_now = False  # the newest sample has at least one valid vital
        self.detections: list[Detection] = []
        # Scores of the newest scored row, in _SCORE_KEYS order; NaN = not computed.
        self.scores = np.full(len(_SCORE_KEYS), np.nan)
        self.p_before = math.nan  # p_event of the row scored before the newest (rule 8)
        # Forecasts (horizon_steps, 7), in vital units, of the newest row and the one before.
        self.fc_now = np.full((fc.horizon_steps, _N_VITALS), np.nan)
        self.fc_before = np.full((fc.horizon_steps, _N_VITALS), np.nan)


class LearnedDetector:
    """The vitals bundle as a `Detector`: ensemble, risk and forecaster for each configured bed.

    ``bed_ids``: the beds it will see (state is allocated for each now, none later; an unknown
    bed gets no learned detections). ``stale_s``: ``alarms.stale_s``; ``artefact_hold_s``:
    ``model.artefact_hold_s`` (rule 8). Raises `LearnedModelError` for a bundle it cannot run
    (rule 6).
    """

    def __init__(
        self, bundle: Bundle, bed_ids: Sequence[str], *, stale_s: float = 3.0,
        artefact_hold_s: float = 0.0, manual_max_age_s: float = 0.0,
    ) -> None:
        if not 0.0 <= artefact_hold_s <= ARTEFACT_HOLD_MAX_S:
            raise ValueError(f"artefact_hold_s={artefact_hold_s} outside 0..{ARTEFACT_HOLD_MAX_S}")
        plan = _Plan.check(bundle)
        self._hold_s = artefact_hold_s
        self._plan = plan
        self._model = f"{MODEL_PREFIX}{bundle.version}"
        self._stale_s = stale_s
        spec, fc = plan.spec, plan.forecaster
        self._period_s = spec.sample_period_s
        self._max_gap_rows = max(spec.window_samples)
        self._warmup_rows = min(spec.window_samples)
        self._t = plan.thresholds
        n = spec.n_features
        self._n = n
        # Shared scratch (beds are scored one after another on the runtime thread).
        self._nan_row = np.full(_N_VITALS, np.nan)
        self._row = np.empty(_N_VITALS, dtype=np.float64)
        self._level_idx = np.arange(_N_VITALS, dtype=np.intp) * spec.features_per_vital
        self._levels = np.empty(_N_VITALS, dtype=np.float64)
        self._z = np.empty(n, dtype=np.float64)
        self._z32 = np.empty((1, n), dtype=np.float32)
        self._diff = np.empty(n, dtype=np.float64)
        self._risk_in = np.empty(n + 3, dtype=np.float64)
        self._fc_mean, self._fc_scale = fc.vitals_mean, fc.vitals_scale
        self._fc_width = fc.horizon_steps * _N_VITALS
        self._vital_col = {name: i for i, name in enumerate(VITAL_NAMES)}
        self._manual_max_age_s = manual_max_age_s
        self._manual_row = np.full(_N_VITALS, np.nan)  # rule 10, refilled per update
        self._manual_cols: list[int] = []  # its columns holding a value
        fpv = spec.features_per_vital
        self._roles = np.array([_role(f) for f in spec.feature_names()[:fpv]])
        # Rule 9 scratch (drivers are computed on rows where something fires).
        roles_all = np.tile(self._roles, _N_VITALS)
        self._not_unusual = np.flatnonzero((roles_all == _MISSING) | (roles_all == _SPREAD))
        self._not_pushing = np.flatnonzero(roles_all == _MISSING)
        self._missing_idx = np.flatnonzero(roles_all == _MISSING)
        self._missing_now = np.empty(_N_VITALS, dtype=np.float64)
        self._measured = np.empty(_N_VITALS, dtype=bool)
        self._strength = np.empty(n, dtype=np.float64)
        self._contrib = np.empty(n + 3, dtype=np.float64)
        self._by_vital = np.empty(_N_VITALS, dtype=np.float64)
        self._col = np.empty(_N_VITALS, dtype=np.intp)
        self._ones = np.ones(fpv, dtype=np.float64)
        self._ae = plan.autoencoder
        self._fc = plan.forecaster_model
        fill = (np.asarray(spec.fill_values) - fc.vitals_mean) / fc.vitals_scale
        self._beds = {b: _BedState(spec, fc, fill) for b in bed_ids}
        _log.info(
            "learned detector %s: %d features, forecaster window %g s, beds %s",
            self._model, n, fc.span_rows * spec.sample_period_s, ", ".join(bed_ids),
        )

    @property
    def model(self) -> str:
        """See `Detector.model`: ``vitals-bundle/<bundle_version>``."""
        return self._model

    @property
    def thresholds(self) -> Mapping[str, float]:
        """The manifest thresholds in use (rule 4)."""
        return self._t

    # -- feeding (rules 1-3) -----------------------------------------------------------------

    def _push(self, st: _BedState, sample: npt.NDArray[np.float64]) -> None:
        """One feature row, and its scaled levels into the forecaster ring."""
        features = st.features = st.stream.update(sample)
        features.take(self._level_idx, None, self._levels, "clip")
        np.subtract(self._levels, self._fc_mean, out=self._levels)
        np.divide(self._levels, self._fc_scale, out=self._levels)
        span = self._plan.forecaster.span_rows
        st.pos = (st.pos + 1) % span
        st.ring[st.pos] = self._levels
        st.ring[st.pos + span] = self._levels

    def _feed(self, st: _BedState, ring: VitalsRing) -> bool:
        """Feed the rows that arrived since the last call; True if there was one."""
        data, nxt, count = ring.storage()
        cap = data.shape[0]
        new = 0
        while new < count:
            t = data[(nxt - 1 - new) % cap, 0]
            if st.fed_s is not None and not t > st.fed_s:
                break
            new += 1
        for back in range(new, 0, -1):
            row = data[(nxt - back) % cap]
            t = float(row[0])
            if st.fed_s is not None:
                gap = (t - st.fed_s) / self._period_s
                if gap > GAP_S:
                    missing = min(round(gap) - 1, self._max_gap_rows)
                    for _ in range(missing):
                        self._push(st, self._nan_row)
                    if missing >= self._warmup_rows:
                        st.history = 0
            np.copyto(self._row, row[1:])
            st.valid_now = bool(np.isfinite(self._row).any())  # the monitor's own (rule 5)
            for col in self._manual_cols:  # rule 10; np.copyto(where=) would buffer 8 KiB
                if math.isnan(self._row[col]):
                    self._row[col] = self._manual_row[col]
            self._push(st, self._row)
            st.history += 1
            st.fed_s = t
        return new > 0

    def _manual(self, bed: BedState, now: float) -> None:
        """Rule 10: the bed's manual vitals no older than ``manual_max_age_s``, NaN elsewhere."""
        row = self._manual_row
        if self._manual_cols:
            row.fill(np.nan)
            self._manual_cols.clear()
        if self._manual_max_age_s <= 0.0 or not bed.manual:
            return
        for name, (value, taken_s) in bed.manual.items():
            col = self._vital_col.get(name)
            if col is not None and now - taken_s <= self._manual_max_age_s:
                row[col] = float(value)
        sbp, dbp = row[self._vital_col["sbp_mmhg"]], row[self._vital_col["dbp_mmhg"]]
        if math.isnan(row[self._vital_col["map_mmhg"]]) and not math.isnan(sbp + dbp):
            row[self._vital_col["map_mmhg"]] = (sbp + 2.0 * dbp) / 3.0
        self._manual_cols.extend(c for c in range(_N_VITALS) if not math.isnan(row[c]))

    # -- scoring (rule 4) --------------------------------------------------------------------

    def _score(self, st: _BedState, ring: VitalsRing) -> None:
        """Score the newest row; replace the bed's current detections."""
        st.detections = []
        st.p_before = float(st.scores[_P_EVENT])
        st.fc_before, st.fc_now = st.fc_now, st.fc_before
        st.fc_now.fill(np.nan)
        st.scores.fill(np.nan)
        if st.history < self._warmup_rows or st.features is None:
            return
        p, t = self._plan, self._t
        z = p.scaler.transform(st.features, out=self._z)
        np.copyto(self._z32[0], z)
        recon = self._ae.predict_into(self._z32)
        np.subtract(recon[0], z, out=self._diff)
        mse = float(self._diff.dot(self._diff)) / self._n
        if_score = p.iforest.update(z)
        db_ratio = p.dbscan.update(z)
        risk_in = self._risk_in
        risk_in[: self._n] = z
        risk_in[self._n] = mse
        risk_in[self._n + 1] = if_score
        risk_in[self._n + 2] = db_ratio
        risk_p = p.risk.update(risk_in)
        p_event = math.nan
        fc = p.forecaster
        if st.history >= fc.span_rows:
            start = st.pos + 1
            packed = self._fc.predict_into(st.ring[start : start + fc.span_rows : fc.stride][None])
            p_event = event_probability(float(packed[0, -1]), fc.logit_scale)
            np.multiply(packed[0, : self._fc_width].reshape(st.fc_now.shape), self._fc_scale,
                        out=st.fc_now)
            st.fc_now += self._fc_mean
        sc = st.scores
        sc[0], sc[1], sc[2], sc[3], sc[4] = mse, if_score, db_ratio, risk_p, p_event
        votes = (
            mse > t["autoencoder.mse"],
            if_score < t["iforest.score"],
            db_ratio > t["dbscan.ratio"],
        )
        ensemble = sum(votes) >= MIN_VOTES
        risky = risk_p > t["risk.probability"]
        warning = p_event > t["forecaster.p_event"]  # False while NaN (not warmed up)
        if not (ensemble or risky or warning):
            return
        self._detect(st, ring, (mse, if_score, db_ratio, risk_p, p_event), votes)

    def _detect(
        self,
        st: _BedState,
        ring: VitalsRing,
        scores_t: tuple[float, float, float, float, float],
        votes_t: tuple[bool, bool, bool],
    ) -> None:
        """Build the detections of a row where something fired (allocates; rare by design)."""
        t = self._t
        mse, if_score, db_ratio, risk_p, p_event = scores_t
        scores = {
            "autoencoder.mse": mse,
            "iforest.score": if_score,
            "dbscan.ratio": db_ratio,
            "risk.probability": risk_p,
        }
        if not math.isnan(p_event):
            scores["forecaster.p_event"] = p_event
        votes = dict(zip(ENSEMBLE, votes_t, strict=True))
        sample = ring.latest()
        values = (
            {} if sample is None
            else {k: v for k, v in sample.values.items() if v is not None}
        )
        common = {"model": self._model, "values": values, "scores": scores, "votes": votes}
        assert st.features is not None  # scored rows have features (_score)
        np.take(st.features, self._missing_idx, out=self._missing_now)
        measured = np.less(self._missing_now, 0.5, out=self._measured)
        out: list[Detection] = []
        if sum(votes_t) >= MIN_VOTES:
            voted = [name for name, v in votes.items() if v]
            detail = ", ".join(
                f"{name} {scores[THRESHOLD_KEYS[name]]:.3g}"
                f" {'<' if name == 'iforest' else '>'} {t[THRESHOLD_KEYS[name]]:.3g}"
                for name in voted
            )
            out.append(
                Detection(
                    kind="ensemble_anomaly",
                    priority=Priority.HIGH,
                    message=(
                        f"abnormal vitals pattern: {len(voted)} of {len(ENSEMBLE)} detectors "
                        f"flag it ({detail})"
                    ),
                    thresholds={THRESHOLD_KEYS[n]: t[THRESHOLD_KEYS[n]] for n in ENSEMBLE},
                    drivers=self._ensemble_drivers(measured, values),
                    **common,  # type: ignore[arg-type]
                )
            )
        if risk_p > t["risk.probability"]:
            out.append(
                Detection(
                    kind="risk_high",
                    priority=Priority.MEDIUM,
                    message=(
                        f"deterioration risk {risk_p:.2f} > {t['risk.probability']:.2f}"
                    ),
                    thresholds={"risk.probability": t["risk.probability"]},
                    drivers=self._risk_drivers(measured, values),
                    **common,  # type: ignore[arg-type]
                )
            )
        if p_event > t["forecaster.p_event"]:
            fc = self._plan.forecaster
            out.append(
                Detection(
                    kind="early_warning",
                    priority=Priority.MEDIUM,
                    message=(
                        f"early warning: event forecast within {fc.horizon_steps * fc.step_s:g}"
                        f" s, probability {p_event:.2f} > {t['forecaster.p_event']:.2f}"
                    ),
                    thresholds={"forecaster.p_event": t["forecaster.p_event"]},
                    drivers=(self._forecast_drivers(st, measured, values)
                             or self._ensemble_drivers(measured, values)),
                    **common,  # type: ignore[arg-type]
                )
            )
        st.detections = out

    def _unusual(self, measured: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        """|z| of each level and trend feature as (vital, feature); -inf for the window stds
        and missing flags, and for vitals not measured now (rule 9). Scratch: no allocation."""
        out = np.abs(self._z, out=self._strength)
        out[self._not_unusual] = -np.inf
        by_vital = out.reshape(_N_VITALS, -1)
        for v in range(_N_VITALS):
            if not measured[v]:
                by_vital[v] = -np.inf
        return by_vital

    def _top(
        self, order: npt.NDArray[np.float64], col: npt.NDArray[np.intp], floor: float,
        values: Mapping[str, float],
    ) -> tuple[Driver, ...]:
        """Vitals by ``order`` from ``floor`` up; direction from feature ``col`` (rule 9)."""
        z = self._z.reshape(_N_VITALS, -1)
        out: list[Driver] = []
        # sorted() over 7 vitals: np.argsort(kind="stable") would allocate a 6 KiB buffer.
        for v in sorted(range(_N_VITALS), key=lambda i: -order[i])[:MAX_DRIVERS]:
            if not order[v] >= floor:
                break
            c = col[v]
            name = VITAL_NAMES[v]
            words = _WORDS[int(self._roles[c])]
            out.append(Driver(name, words[0] if z[v, c] > 0 else words[1], values.get(name)))
        return tuple(out)

    def _ensemble_drivers(
        self, measured: npt.NDArray[np.bool_], values: Mapping[str, float]
    ) -> tuple[Driver, ...]:
        """Rule 9, ensemble: vitals by their level or trend feature furthest from the mean."""
        strength = self._unusual(measured)
        col = strength.argmax(axis=1, out=self._col)
        best = self._by_vital
        for v in range(_N_VITALS):
            best[v] = strength[v, col[v]]
        return self._top(best, col, DRIVER_Z, values)

    def _risk_drivers(
        self, measured: npt.NDArray[np.bool_], values: Mapping[str, float]
    ) -> tuple[Driver, ...]:
        """Rule 9, risk: vitals by their total push on the logit, said the ensemble's way."""
        contrib = self._plan.risk.contributions(self._risk_in, out=self._contrib)[: self._n]
        contrib[self._not_pushing] = 0.0
        # A product with ones, not np.sum(axis=1): the reduction would buffer (allocate).
        total = np.dot(contrib.reshape(_N_VITALS, -1), self._ones, out=self._by_vital)
        for v in range(_N_VITALS):
            if not measured[v]:
                total[v] = -np.inf
        col = self._unusual(measured).argmax(axis=1, out=self._col)
        return self._top(total, col, DRIVER_LOGIT, values)

    def _forecast_drivers(
        self, st: _BedState, measured: npt.NDArray[np.bool_], values: Mapping[str, float]
    ) -> tuple[Driver, ...]:
        """Rule 9, early warning: where the forecast ends against where each vital is now."""
        now = np.array([values.get(name, np.nan) for name in VITAL_NAMES])
        end = st.fc_now[-1]
        change = np.where(measured, (end - now) / self._fc_scale, np.nan)
        size = np.nan_to_num(np.abs(change), nan=-np.inf)
        out: list[Driver] = []
        for v in sorted(range(_N_VITALS), key=lambda i: -size[i])[:MAX_DRIVERS]:
            if not size[v] >= DRIVER_FORECAST:
                break
            name = VITAL_NAMES[v]
            out.append(Driver(name, "rising" if change[v] > 0 else "falling", float(now[v]),
                              float(end[v])))
        return tuple(out)

    # -- the Detector protocol ---------------------------------------------------------------

    def update(self, bed: BedState, now: float) -> list[Detection]:
        """Feed the bed's new VITALS rows, score the newest, report (rules 1-5).

        Repeats the current detections while no new row arrived, as long as the newest sample
        is fresh (``stale_s``) and holds a valid value.
        """
        st = self._beds.get(bed.bed_id)
        if st is None:
            return []
        self._manual(bed, now)
        if self._feed(st, bed.vitals):
            self._score(st, bed.vitals)
        if st.fed_s is None or now - st.fed_s > self._stale_s or not st.valid_now:
            return []
        return list(st.detections)

    def artefact_hold(self, bed_id: str, vital: str, direction: str, limit: float) -> float:
        """Extra onset delay (s) for a breach of ``vital`` past ``limit`` (rule 8).

        ``direction``: ``low`` (a breach is below ``limit``) or ``high``; ``limit`` in the
        vital's units, the rule's mildest threshold.
        """
        st = self._beds.get(bed_id)
        col = self._vital_col.get(vital)
        if st is None or col is None or self._hold_s <= 0.0:
            return 0.0
        if not st.p_before <= self._t["forecaster.p_event"]:  # above, or NaN: no trend known
            return 0.0
        path = st.fc_before[:, col]
        if direction == "low":
            safe = bool(path.min() > limit)  # NaN compares False: no hold
        elif direction == "high":
            safe = bool(path.max() < limit)
        else:
            raise ValueError(f"direction must be 'low' or 'high', got {direction!r}")
        return self._hold_s if safe else 0.0

    def scores(self, bed_id: str) -> dict[str, float]:
        """Scores of the bed's newest scored row (empty during warm-up; allocates, not per tick).

        Keys as in detections: ``autoencoder.mse``, ``iforest.score``, ``dbscan.ratio``,
        ``risk.probability`` and, after its own warm-up, ``forecaster.p_event``.
        """
        values = self._beds[bed_id].scores
        return {k: float(v) for k, v in zip(_SCORE_KEYS, values, strict=True) if not np.isnan(v)}

    def reference_scores(self, bed_id: str) -> dict[str, float]:
        """The same scores recomputed through the components' batch methods and
        `TFLiteModel.predict` (allocating reference for tests; equal to `scores`).
        """
        st = self._beds[bed_id]
        if st.history < self._warmup_rows or st.features is None:
            return {}
        p = self._plan
        z = p.scaler.transform(st.features)
        recon = p.autoencoder.predict(z[None].astype(np.float32))
        mse = float(np.mean((recon[0].astype(np.float64) - z) ** 2))
        if_score = float(p.iforest.score(z[None])[0])
        db_ratio = float(p.dbscan.score(z[None])[0])
        risk_p = float(p.risk.score(np.r_[z, mse, if_score, db_ratio][None])[0])
        out = {
            "autoencoder.mse": mse,
            "iforest.score": if_score,
            "dbscan.ratio": db_ratio,
            "risk.probability": risk_p,
        }
        fc = p.forecaster
        if st.history >= fc.span_rows:
            window = st.ring[st.pos + 1 : st.pos + 1 + fc.span_rows : fc.stride][None]
            packed = p.forecaster_model.predict(window)
            out["forecaster.p_event"] = float(
                split_packed(packed, fc.horizon_steps, _N_VITALS, fc.logit_scale)[1][0]
            )
        return out


# ------------------------------------------------------------------------- start-up wiring


class ModelUnavailableDetector:
    """Technical condition ``model_unavailable``: the configured bundle was refused.

    Reported for every bed while the runtime runs (the learned detections are missing on each
    of them); the fixed limits run regardless.
    """

    MODEL: Final = "model-loader/1"

    def __init__(self, reason: str, priority: Priority) -> None:
        self._detection = Detection(
            kind="model_unavailable",
            priority=priority,
            message=f"learned model unavailable, fixed limits only: {reason}",
            model=self.MODEL,
            technical=True,
        )

    @property
    def model(self) -> str:
        """See `Detector.model`."""
        return self.MODEL

    def update(self, bed: BedState, now: float) -> list[Detection]:
        """The same technical detection on every call."""
        return [self._detection]


@dataclass(frozen=True, slots=True)
class LearnedSetup:
    """What start-up decided: the detectors to run and the model status for the retained status.

    ``status`` is ``{"state": "off"}``, ``{"state": "loaded", "version", "model", "bundle"}``
    or ``{"state": "refused", "bundle", "reason"}``. ``gate``: the learned detector when it
    loaded and ``model.artefact_hold_s`` is above 0 (rule 8), for `edge.runtime.EdgeCore`.
    ``own``: the detectors the model section added after the defaults (the learned detector,
    or `ModelUnavailableDetector`), kept by a reload that leaves the model alone.
    """

    detectors: list[Detector]
    status: Mapping[str, str]
    gate: LearnedDetector | None = None
    own: tuple[Detector, ...] = ()
    beats: BeatClassifier | None = None

    def with_defaults(self, config: EdgeConfig) -> LearnedSetup:
        """The same model detectors (and their per-bed windows) after ``config``'s defaults:
        what a reload that changed limits, timing or NEWS2 but not the model runs."""
        defaults = configured_detectors(config)
        with_beat_model(defaults, self.beats)
        return replace(self, detectors=[*defaults, *self.own])


def check_bundle(path: str | Path, bed_ids: Sequence[str] = ()) -> str:
    """Load ``path`` exactly as the runtime would (hashes, golden vectors through the real
    TFLite runtime and numpy scorers, then rule 6's refusals); its version, or the
    `BundleError` / `LearnedModelError` that refuses it. The model store's verify and
    self-test steps (edge/modelstore.py)."""
    bundle = load_bundle(path)
    LearnedDetector(bundle, bed_ids)
    beat_classifier(bundle)
    return bundle.version


def model_key(config: EdgeConfig) -> tuple[object, ...]:
    """What `load_learned` reads beyond the defaults: when it is unchanged, a reload keeps the
    loaded model (`LearnedSetup.with_defaults`) instead of loading the bundle again."""
    return (config.model.bundle, config.model.artefact_hold_s, config.alarms.stale_s,
            config.news2.manual_max_age_s, tuple(b.id for b in config.beds),
            config.technical.priority("model_unavailable"))


def load_learned(config: EdgeConfig) -> LearnedSetup:
    """The fixed-limit and technical detectors, plus the learned one if ``model.bundle`` loads.

    A bundle that fails to load, verify or fit this edge is logged with its reason and
    replaced by `ModelUnavailableDetector` (priority ``technical.model_unavailable``): a
    monitor never stops monitoring because a model is bad.
    """
    detectors = configured_detectors(config)
    path = config.model.bundle
    if not path:
        _log.info("no model bundle configured: fixed limits only")
        return LearnedSetup(detectors, {"state": "off"})
    try:
        bundle = load_bundle(bundle_location(path))
        learned = LearnedDetector(
            bundle, [b.id for b in config.beds], stale_s=config.alarms.stale_s,
            artefact_hold_s=config.model.artefact_hold_s,
            manual_max_age_s=config.news2.manual_max_age_s,
        )
        beats = beat_classifier(bundle)
    except (BundleError, ModelError, OSError, ValueError) as exc:
        reason = str(exc)
        _log.error("model bundle %s refused, running on fixed limits only: %s", path, reason)
    except Exception as exc:  # a monitor must not stop because of a model: keep the traceback
        reason = f"{type(exc).__name__}: {exc}"
        _log.exception("model bundle %s failed unexpectedly, fixed limits only", path)
    else:
        _log.info("model bundle %s loaded: %s%s", path, learned.model,
                  "" if beats is None else ", with the ECG beat model")
        with_beat_model(detectors, beats)
        return LearnedSetup(
            [*detectors, learned],
            {"state": "loaded", "version": bundle.version, "model": learned.model, "bundle": path},
            learned if config.model.artefact_hold_s > 0 else None,
            (learned,),
            beats,
        )
    priority = config.technical.priority("model_unavailable")
    own = (ModelUnavailableDetector(reason, priority),) if priority is not None else ()
    return LearnedSetup([*detectors, *own], {"state": "refused", "bundle": path, "reason": reason},
                        own=own)
