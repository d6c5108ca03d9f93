"""`vigil-train fit`: train every model of a vitals bundle (models/BUNDLE.md) and write it.

Pipeline, in order (every random step seeded from ``FitConfig.seed``):

1. Calibrate (`training.calibration.calibrate`) on the REAL numerics of ``data_dir`` (MIMIC-III
   ``...n`` records, BIDMC numerics), or on the shipped 2 h MIMIC-III excerpt
   (``fixture:mimic3-numerics``) when no directory is given. Real data only calibrates; it is
   not trained on (two real patients could not be split by patient).
2. Synthesize a cohort (`training.synth.synth_cohort`): every vitals row and every label the
   models see is synthetic, with per-second ground truth from the injected events. A fraction
   of beds has no temperature probe (``no_temp_fraction``) and a fraction feeds numerics once
   a minute, held (``held_fraction``): the real numerics look like both, and a cohort without
   them taught the risk model that a held, probe-less series is an event (9.9 alerts per
   patient-hour on the real numerics, against 2.0 for the fixed limits).
3. Features: `models.features.compute_features` on each patient's full 1 Hz series (the edge's
   own pipeline), then every ``row_step_s``-th second is kept as a training row.
4. Split BY PATIENT (`training.datasets.split_by_patient`, fractions ``split``): a patient's
   rows are all in one of train / validation / test, never in two.
5. Labels: a row is an EVENT row when any clinical event is active at that second. NORMAL rows
   (what the unsupervised detectors learn) have no event active at that second nor in the
   longest feature window before it, because their window features still see the event.
6. `Standardizer` fitted on the training normals; ``z = scaler.transform(features)``.

Detectors and their rules (thresholds are stored in the manifest, nowhere else):

- AUTOENCODER (Keras, shipped as full-int8 TFLite): trained on training normals to reconstruct
  ``z``; score ``mse = mean((out - z)^2)``. Latent size and dropout: the grid pair with the
  highest validation AUROC (mse vs event rows), ties to the lower validation-normal loss.
  THRESHOLD: on the validation ROC curve of the int8 model's mse (the model that ships), the
  point of highest TPR whose FPR is at most ``vote_max_fpr`` (1 % by default: each vote feeds
  a critical alarm evaluated every second), placed half-way between the two adjacent distinct
  scores so that ``mse > t`` flags exactly the rows the ROC point counts.
- ISOLATION FOREST: fitted on training normals. THRESHOLD: the same FPR-bounded ROC rule on
  ``-score_samples``; vote when ``score < t``.
- DBSCAN: on at most ``dbscan_rows`` evenly spaced training normals. EPS: the
  ``dbscan_eps_quantile`` quantile of the distance from each of those rows to its
  ``dbscan_min_samples``-th nearest row (itself included, sklearn's count), so about that
  fraction of rows are core samples. Shipped as core samples (float64) and eps; vote when
  ``distance to nearest core / eps > 1.0``.
- ENSEMBLE (on the edge): at least two of the three vote -> critical. Evaluated here on test.
- RISK: StandardScaler + LogisticRegression on ``[z, mse, iforest score, dbscan ratio]``
  (detector scores from the shipped scorers), labels = event rows. Class imbalance: SMOTE on
  the TRAINING patients' rows only, never on validation or test. THRESHOLD: the highest
  validation recall among cuts with validation precision >= ``risk_min_precision`` and
  validation FPR <= ``alert_max_fpr`` (1 %: the alert is evaluated every second); when no cut
  reaches the precision, the most precise cut within the FPR bound (recorded in the metrics).
- FORECASTER (Keras LSTM + attention, shipped as full-int8 TFLite): input the last
  ``fc_window_steps`` samples, ``fc_step_s`` seconds apart (newest last), of the scaled vital
  levels (rule 1 of models/features.py), scaled with ``extra.forecaster.vitals_mean/scale``
  (the mean and ``fc_scale_sds`` x SD of the training patients' levels, events included:
  the forecast and the packed event logit share one int8 output scale, so the forecast
  values are kept within about +-1, the range of the logit / ``logit_scale``:
  models/forecaster.py); outputs the next ``fc_horizon_steps`` samples and P(a clinical
  event is active at any second of the next ``fc_horizon_steps * fc_step_s`` seconds).
  THRESHOLD: same rule as the risk model (recall at the stated precision).

Golden vectors: scikit-learn outputs for the numpy components, the int8 TFLite interpreter's
outputs (through `models.tflite`) for the TFLite components, with a tolerance of one output
quantum. Float32 TFLite twins of both networks are written to ``reference_dir`` when given
(they are references, not bundle components). Reproducible: numpy, Python and TensorFlow seeds
fixed and TensorFlow op determinism on; the manifest's ``created`` comes from
``SOURCE_DATE_EPOCH`` when set.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import keras
import numpy as np
import tensorflow as tf
from imblearn.over_sampling import SMOTE
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from sklearn.cluster import DBSCAN
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from firmware_bridge.frames import PROTOCOL_VERSION
from models.features import FEATURE_SPEC_VERSION, N_VITALS, FeatureSpec, compute_features
from models.forecaster import EVENT_LOGIT_SCALE, split_packed
from models.scaler import Standardizer
from models.tflite import TFLiteModel, load_interpreter
from training.bundle import ComponentFile, Golden, write_bundle
from training.calibration import CalibrationResult, calibrate
from training.datasets import (
    FIXTURE_SOURCE,
    RealNumerics,
    fingerprint,
    load_real_numerics,
    split_by_patient,
)
from training.export import export_dbscan, export_isolation_forest, export_logistic
from training.nets import build_autoencoder, build_forecaster, inference_copy
from training.quantize import to_tflite_float, to_tflite_int8
from training.synth import SynthPatient, synth_cohort

__all__ = [
    "FIXTURE_SOURCE",
    "PRESETS",
    "FitConfig",
    "Prepared",
    "cut_for_max_fpr",
    "cut_for_precision",
    "fit",
    "forecaster_windows",
    "load_real_numerics",
    "oversample_training_rows",
    "prepare",
    "synth_for",
]

_log = logging.getLogger(__name__)

_SPLITS: Final = ("train", "val", "test")
_SECONDS_PER_HOUR: Final = 3600.0
_DBSCAN_RATIO_THRESHOLD: Final = 1.0  # BUNDLE.md: outside every core's eps-ball
_SKLEARN_GOLDEN_ATOL: Final = 1e-9
_GOLDEN_ROWS: Final = 8
_INT8_GOLDEN_QUANTA: Final = 1.01  # int8 goldens may differ by one output quantum
_METRIC_DIGITS: Final = 4
# 1 = any clinical event active (the label of every supervised figure here).
_EVENT: Final = 1


@dataclass(frozen=True)
class FitConfig:
    """Everything `fit` does that is not data: sizes, grids, epochs, rules' parameters, seeds.

    Units: ``hours`` per synthetic patient; ``row_step_s`` seconds between training rows;
    ``fc_step_s`` seconds between forecaster samples; ``fc_window_steps`` / ``fc_horizon_steps``
    / ``fc_stride_steps`` in forecaster samples. ``split``: train / val / test fractions of
    patients. ``risk_min_precision``: the precision the risk and forecaster thresholds keep
    on validation (the stated precision).
    """

    name: str
    n_patients: int
    hours: float
    seed: int = 0
    events_per_hour: float = 0.5
    event_free_fraction: float = 0.25
    no_temp_fraction: float = 0.3
    held_fraction: float = 0.2
    held_period_s: int = 60
    row_step_s: int = 10
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    ae_latents: tuple[int, ...] = (4, 8)
    ae_dropouts: tuple[float, ...] = (0.0, 0.1)
    ae_hidden: tuple[int, ...] = (32,)
    ae_epochs: int = 10
    ae_batch: int = 128
    if_trees: int = 100
    if_max_samples: int = 256
    dbscan_rows: int = 600
    dbscan_min_samples: int = 5
    dbscan_eps_quantile: float = 0.99
    vote_max_fpr: float = 0.01
    alert_max_fpr: float = 0.01
    risk_min_precision: float = 0.8
    risk_max_iter: int = 2000
    fc_step_s: int = 10
    fc_window_steps: int = 18
    fc_horizon_steps: int = 6
    fc_stride_steps: int = 3
    fc_scale_sds: float = 8.0
    fc_units: int = 16
    fc_epochs: int = 6
    fc_batch: int = 64
    int8_calibration_samples: int = 1000
    learning_rate: float = 3e-3

    def with_seed(self, seed: int) -> FitConfig:
        """The same preset with another seed."""
        return FitConfig(**{**asdict(self), "seed": seed})


PRESETS: Final[dict[str, FitConfig]] = {
    # CI and tests: trains in well under a minute on two cores.
    "tiny": FitConfig(
        name="tiny", n_patients=20, hours=2.0, events_per_hour=1.0, event_free_fraction=0.2,
        fc_epochs=8,
    ),
    # The shipped bundle (`make bundle`).
    "default": FitConfig(
        name="default",
        n_patients=60,
        hours=8.0,
        ae_latents=(4, 8, 16),
        ae_dropouts=(0.0, 0.1, 0.2),
        ae_hidden=(48,),
        ae_epochs=20,
        ae_batch=256,
        dbscan_rows=1000,
        fc_window_steps=30,
        fc_horizon_steps=6,
        fc_stride_steps=2,
        fc_units=24,
        fc_epochs=10,
    ),
}


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class PatientRows:
    """One synthetic patient reduced to what training uses.

    ``features`` (n_rows, F) every ``row_step_s`` s; ``event`` (n_rows,) any clinical event
    active at that second; ``normal`` (n_rows,) usable as a normal training row (module doc,
    step 5); ``levels`` (n_steps, 7) vital levels every ``fc_step_s`` s (unscaled);
    ``event_ahead`` (n_steps,) an event active in the next horizon after that step.
    """

    patient: str
    features: NDArray[np.float64]
    event: NDArray[np.bool_]
    normal: NDArray[np.bool_]
    levels: NDArray[np.float64]
    event_ahead: NDArray[np.bool_]


@dataclass(frozen=True)
class Prepared:
    """Calibration, cohort, split and scaled rows: everything before any model is fitted."""

    config: FitConfig
    spec: FeatureSpec
    real: RealNumerics
    calibration: CalibrationResult
    cohort_hours: float
    split: Mapping[str, tuple[str, ...]]
    patients: Mapping[str, PatientRows]
    scaler: Standardizer
    fc_mean: NDArray[np.float64]
    fc_scale: NDArray[np.float64]

    def rows(self, split: str) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.bool_]]:
        """(z float32 (n, F), event (n,), normal (n,)) of every row of a split's patients."""
        pats = [self.patients[p] for p in self.split[split]]
        x = np.concatenate([p.features for p in pats])
        z = self.scaler.transform(x).astype(np.float32)
        return (
            z,
            np.concatenate([p.event for p in pats]),
            np.concatenate([p.normal for p in pats]),
        )

    def row_patients(self, split: str) -> NDArray[np.str_]:
        """Patient id of every row of ``rows(split)``, in the same order."""
        return np.concatenate(
            [np.full(self.patients[p].event.size, p) for p in self.split[split]]
        )


def _ahead(truth: NDArray[np.bool_], horizon_s: int) -> NDArray[np.bool_]:
    """True at second t when truth is True at any second in (t, t + horizon_s]."""
    c = np.concatenate(([0], np.cumsum(truth, dtype=np.int64)))
    n = truth.size
    t = np.arange(n)
    hi = np.minimum(t + horizon_s, n - 1)
    out: NDArray[np.bool_] = (c[hi + 1] - c[t + 1]) > 0
    return out


def _normal_mask(truth: NDArray[np.bool_], lookback_s: int) -> NDArray[np.bool_]:
    """True at seconds with no event active in [t - lookback_s + 1, t]."""
    c = np.concatenate(([0], np.cumsum(truth, dtype=np.int64)))
    t = np.arange(truth.size)
    lo = np.maximum(t - lookback_s + 1, 0)
    out: NDArray[np.bool_] = (c[t + 1] - c[lo]) == 0
    return out


def _patient_rows(
    p: SynthPatient, spec: FeatureSpec, cfg: FitConfig, level_cols: Sequence[int]
) -> PatientRows:
    feats = compute_features(p.vitals, spec)
    truth = p.truth
    rows = slice(0, None, cfg.row_step_s)
    steps = slice(0, None, cfg.fc_step_s)
    return PatientRows(
        patient=p.patient,
        features=np.ascontiguousarray(feats[rows]),
        event=truth[rows].copy(),
        normal=_normal_mask(truth, max(spec.windows_s))[rows],
        levels=np.ascontiguousarray(feats[steps][:, list(level_cols)]),
        event_ahead=_ahead(truth, cfg.fc_horizon_steps * cfg.fc_step_s)[steps],
    )


def synth_for(config: FitConfig, calib: CalibrationResult) -> list[SynthPatient]:
    """The synthetic cohort of ``config`` (step 2), calibrated by ``calib``: deterministic."""
    return synth_cohort(
        config.n_patients, config.hours, calib, config.seed,
        event_free_fraction=config.event_free_fraction, events_per_hour=config.events_per_hour,
        no_temp_fraction=config.no_temp_fraction, held_fraction=config.held_fraction,
        held_period_s=config.held_period_s,
    )


def prepare(config: FitConfig, data_dir: Path | None) -> Prepared:
    """Steps 1-6 of the module docstring: deterministic for a config and a data directory."""
    spec = FeatureSpec()
    real = load_real_numerics(data_dir)
    calib = calibrate(list(real.records))
    cohort = synth_for(config, calib)
    groups = split_by_patient([p.patient for p in cohort], config.split, seed=config.seed)
    split = {name: tuple(g) for name, g in zip(_SPLITS, groups, strict=True)}
    per = spec.features_per_vital
    level_cols = tuple(v * per for v in range(N_VITALS))  # rule 1: the level is column 0
    patients = {p.patient: _patient_rows(p, spec, config, level_cols) for p in cohort}
    train = [patients[p] for p in split["train"]]
    x_normal = np.concatenate([p.features[p.normal] for p in train])
    scaler = Standardizer().fit(x_normal, spec.feature_names())
    # Forecaster scaling: mean and fc_scale_sds x SD of the training patients' levels, events
    # included. The forecast and the scaled event logit share ONE int8 output tensor (one
    # scale); 8 SDs keep the forecast within about +-1, the logit's range (models/forecaster).
    levels = np.concatenate([patients[p].levels for p in split["train"]])
    fc_scale = levels.std(axis=0) * config.fc_scale_sds
    fc_scale[~(fc_scale > 0)] = 1.0
    return Prepared(
        config, spec, real, calib, config.hours, split, patients, scaler,
        levels.mean(axis=0), fc_scale,
    )


def forecaster_windows(
    prep: Prepared, split: str, stride_steps: int | None = None
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]]:
    """(windows (n, W, 7), next H steps (n, H, 7), event ahead (n,)) of a split, scaled.

    A window ends at step i (inclusive); its target is steps i+1..i+H and its label is whether
    an event is active within the horizon after step i. ``stride_steps`` between window ends.
    """
    cfg = prep.config
    w, h = cfg.fc_window_steps, cfg.fc_horizon_steps
    stride = stride_steps or cfg.fc_stride_steps
    mean, scale = prep.fc_mean, prep.fc_scale
    xs, fs, ys = [], [], []
    for pid in prep.split[split]:
        p = prep.patients[pid]
        lv = ((p.levels - mean) / scale).astype(np.float32)
        ends = np.arange(w - 1, lv.shape[0] - h, stride)
        if ends.size == 0:
            continue
        win = sliding_window_view(lv, w, axis=0).transpose(0, 2, 1)  # (n - w + 1, w, 7)
        fut = sliding_window_view(lv[1:], h, axis=0).transpose(0, 2, 1)  # starts at step 1
        xs.append(win[ends - w + 1])
        fs.append(fut[ends])
        ys.append(p.event_ahead[ends])
    return (
        np.ascontiguousarray(np.concatenate(xs)),
        np.ascontiguousarray(np.concatenate(fs)),
        np.concatenate(ys),
    )


# ------------------------------------------------------------------------------ threshold rules


def _cut_table(
    scores: NDArray[np.floating[Any]], y: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Candidate cuts and their true / false positive counts, for the rule ``score > cut``.

    Cuts lie half-way between adjacent distinct scores (highest first), so each flags exactly
    the rows at or above the upper of the two.
    """
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], np.asarray(y, dtype=np.bool_)[order]
    last_of_value = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], False])
    tp = np.cumsum(y_sorted)[last_of_value].astype(np.float64)
    fp = np.cumsum(~y_sorted)[last_of_value].astype(np.float64)
    cuts = (s_sorted[last_of_value] + s_sorted[last_of_value + 1]) / 2.0
    return cuts, tp, fp


def cut_for_max_fpr(
    scores: NDArray[np.floating[Any]], y: NDArray[np.bool_], max_fpr: float
) -> tuple[float, float]:
    """The ROC point of highest TPR whose FPR is at most ``max_fpr``, as a cut (``score > cut``).

    Why not Youden's J: it balances TPR against FPR as if both cost the same, and on rows where
    events are rare it lands at FPR of tens of percent, which on a monitor scoring every second
    is a critical alarm every few minutes. A vote that feeds a critical alarm is bounded by the
    false-positive rate instead. Ties in TPR go to the higher cut (fewer false positives).
    Returns (cut, FPR of that cut); when even the top cut exceeds ``max_fpr``, a cut above every
    score (the detector never votes) and FPR 0.
    """
    cuts, tp, fp = _cut_table(scores, y)
    n_neg = float(np.sum(~np.asarray(y, dtype=np.bool_)))
    if cuts.size == 0 or n_neg == 0 or not np.any(y):
        raise ValueError("an FPR-bounded cut needs both classes and at least two distinct scores")
    ok = np.flatnonzero(fp <= max_fpr * n_neg)
    if ok.size == 0:
        return float(np.max(scores)), 0.0
    best = int(ok[-1])  # tp and fp grow with the index: the last qualifying cut has max TPR
    best = int(np.flatnonzero(tp == tp[best])[0])  # same TPR, higher cut
    return float(cuts[best]), float(fp[best] / n_neg)


def cut_for_precision(
    scores: NDArray[np.floating[Any]],
    y: NDArray[np.bool_],
    min_precision: float,
    max_fpr: float = 1.0,
) -> tuple[float, bool]:
    """Highest-recall cut (``score > cut``) with precision >= ``min_precision``, FPR <= ``max_fpr``.

    The FPR bound matters where an alert is evaluated every second: a precision target alone
    says nothing about how often a normal stretch raises it. Returns (cut, reached). When no
    cut within the FPR bound reaches the precision, the cut of highest precision within the
    bound (ties: the higher recall) and False; when no cut is within the bound, a cut above
    every score (never alert) and False.
    """
    cuts, tp, fp = _cut_table(scores, y)
    if cuts.size == 0 or not np.any(y):
        raise ValueError("a precision target needs positives and at least two distinct scores")
    precision = tp / np.maximum(tp + fp, 1.0)
    within = fp <= max_fpr * float(np.sum(~np.asarray(y, dtype=np.bool_)))
    ok = within & (precision >= min_precision)
    if np.any(ok):
        # recall grows with the index (lower cuts flag more): the last cut that still qualifies.
        return float(cuts[int(np.flatnonzero(ok)[-1])]), True
    candidates = np.flatnonzero(within)
    if candidates.size == 0:
        return float(np.max(scores)), False
    best = candidates[precision[candidates] == precision[candidates].max()]
    return float(cuts[int(best[-1])]), False


def _flag_stats(flag: NDArray[np.bool_], y: NDArray[np.bool_]) -> dict[str, float]:
    tp = float(np.sum(flag & y))
    fp = float(np.sum(flag & ~y))
    return {
        "recall": tp / max(float(np.sum(y)), 1.0),
        "precision": tp / max(tp + fp, 1.0),
        "false_positive_rate": fp / max(float(np.sum(~y)), 1.0),
    }


def _auroc(y: NDArray[np.bool_], s: NDArray[np.floating[Any]]) -> float:
    return float(roc_auc_score(y, s)) if 0 < int(np.sum(y)) < y.size else math.nan


# ------------------------------------------------------------------------------------ models


def oversample_training_rows(
    x: NDArray[np.float64],
    y: NDArray[np.bool_],
    row_patients: NDArray[np.str_],
    train_patients: Sequence[str],
    seed: int,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """SMOTE on training rows only: refuses any row whose patient is not a training patient.

    Returns the training rows followed by the synthetic minority rows (imbalanced-learn's
    order), so validation and test rows can never be interpolated into the training set.
    """
    allowed = set(train_patients)
    outside = sorted(set(row_patients.tolist()) - allowed)
    if outside:
        raise ValueError(f"SMOTE is for training patients only; got rows of {outside[:5]}")
    k = max(1, min(5, int(np.sum(y)) - 1))
    xr, yr = SMOTE(random_state=seed, k_neighbors=k).fit_resample(x, y.astype(np.int64))
    return np.asarray(xr, dtype=np.float64), np.asarray(yr, dtype=np.bool_)


def _run_tflite(model: TFLiteModel, x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Batch-1 model applied row by row, as the device runs it."""
    out = np.empty((x.shape[0], *model.output_shape[1:]), dtype=np.float32)
    for i in range(x.shape[0]):
        out[i] = model.predict(x[i : i + 1])[0]
    return out


def _mse(z: NDArray[np.float32], out: NDArray[np.float32]) -> NDArray[np.float64]:
    d = out.astype(np.float64) - z.astype(np.float64)
    r: NDArray[np.float64] = np.mean(d * d, axis=1)
    return r


def _output_quantum(model: TFLiteModel) -> float:
    scale, _ = model.output_details[0]["quantization"]
    return float(scale)


def _seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)  # Python, numpy and TensorFlow
    tf.config.experimental.enable_op_determinism()


@dataclass
class _Artifacts:
    """What the fitting steps produce for the bundle, filled in as they run."""

    work: Path
    components: dict[str, ComponentFile] = field(default_factory=dict)
    golden: dict[str, Golden] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def metric(self, key: str, value: float | str | int) -> None:
        if isinstance(value, float):
            value = round(value, _METRIC_DIGITS) if math.isfinite(value) else str(value)
        self.metrics[key] = value


def _fit_autoencoder(
    prep: Prepared, art: _Artifacts, z: Mapping[str, NDArray[np.float32]],
    y: Mapping[str, NDArray[np.bool_]], normal: NDArray[np.bool_],
) -> TFLiteModel:
    cfg = prep.config
    x_train = z["train"][normal]
    val_normal = z["val"][~y["val"]]
    best: tuple[float, float, int, float] | None = None
    best_model: keras.Model | None = None
    for latent in cfg.ae_latents:
        for dropout in cfg.ae_dropouts:
            _seed_everything(cfg.seed)
            model = build_autoencoder(x_train.shape[1], latent, dropout, hidden=cfg.ae_hidden)
            model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss="mse")
            model.fit(x_train, x_train, epochs=cfg.ae_epochs, batch_size=cfg.ae_batch,
                      shuffle=True, verbose=0)
            rec = np.asarray(model.predict(z["val"], batch_size=1024, verbose=0))
            auroc = _auroc(y["val"], _mse(z["val"], rec))
            loss = float(np.mean(_mse(val_normal, rec[~y["val"]])))
            art.metric(f"autoencoder.grid.latent{latent}_dropout{dropout}.val_auroc", auroc)
            _log.info("autoencoder latent %d dropout %.2f: val AUROC %.4f, normal loss %.4f",
                      latent, dropout, auroc, loss)
            key = (auroc, -loss, latent, dropout)
            if best is None or key[:2] > best[:2]:
                best, best_model = key, model
    if best is None or best_model is None:
        raise ValueError("the autoencoder grid (ae_latents x ae_dropouts) is empty")
    _, _, latent, dropout = best
    art.metric("autoencoder.latent", latent)
    art.metric("autoencoder.dropout", dropout)
    infer = inference_copy(best_model, batch_size=1)
    float_path, int8_path = art.work / "autoencoder_float32.tflite", art.work / "autoencoder.tflite"
    float_path.write_bytes(to_tflite_float(infer))
    int8_path.write_bytes(
        to_tflite_int8(infer, x_train, n_samples=cfg.int8_calibration_samples)
    )
    int8, f32 = load_interpreter(int8_path), load_interpreter(float_path)
    for split in ("val", "test"):
        s_int8 = _mse(z[split], _run_tflite(int8, z[split]))
        s_f32 = _mse(z[split], _run_tflite(f32, z[split]))
        art.metric(f"autoencoder.{split}_auroc_int8", _auroc(y[split], s_int8))
        art.metric(f"autoencoder.{split}_auroc_float32", _auroc(y[split], s_f32))
    art.components["autoencoder"] = ComponentFile("tflite", int8_path, "autoencoder.tflite")
    probe = z["val"][int(np.argmax(y["val"])) : int(np.argmax(y["val"])) + 1]
    art.golden["autoencoder"] = Golden(
        probe, int8.predict(probe), atol=_INT8_GOLDEN_QUANTA * _output_quantum(int8)
    )
    art.provenance["reference"] = {"autoencoder": float_path}
    return int8


def _fit_iforest(
    prep: Prepared, art: _Artifacts, x_train: NDArray[np.float32], probe: NDArray[np.float64]
) -> IsolationForest:
    cfg = prep.config
    forest = IsolationForest(
        n_estimators=cfg.if_trees,
        max_samples=min(cfg.if_max_samples, x_train.shape[0]),
        random_state=cfg.seed,
    ).fit(x_train.astype(np.float64))
    path = art.work / "iforest.npz"
    export_isolation_forest(forest).save(path)
    art.components["iforest"] = ComponentFile("iforest", path, "iforest.npz")
    art.golden["iforest"] = Golden(probe, forest.score_samples(probe), _SKLEARN_GOLDEN_ATOL)
    return forest


def _fit_dbscan(
    prep: Prepared, art: _Artifacts, x_train: NDArray[np.float32], probe: NDArray[np.float64]
) -> tuple[NDArray[np.float64], float]:
    cfg = prep.config
    take = np.unique(np.linspace(0, x_train.shape[0] - 1, cfg.dbscan_rows).round().astype(int))
    sub = x_train[take].astype(np.float64)
    kth = NearestNeighbors(n_neighbors=cfg.dbscan_min_samples).fit(sub).kneighbors(sub)[0][:, -1]
    eps = float(np.quantile(kth, cfg.dbscan_eps_quantile))
    db = DBSCAN(eps=eps, min_samples=cfg.dbscan_min_samples, metric="euclidean").fit(sub)
    scorer = export_dbscan(db, sub)
    path = art.work / "dbscan.npz"
    scorer.save(path)
    core = scorer.core_samples
    art.components["dbscan"] = ComponentFile("dbscan", path, "dbscan.npz")
    nearest = NearestNeighbors(n_neighbors=1).fit(core).kneighbors(probe)[0][:, 0]
    art.golden["dbscan"] = Golden(probe, nearest / eps, _SKLEARN_GOLDEN_ATOL)
    art.metric("dbscan.eps", eps)
    art.metric("dbscan.fit_rows", int(sub.shape[0]))
    art.metric("dbscan.core_samples", int(core.shape[0]))
    return np.array(core), eps


def _dbscan_ratio(core: NDArray[np.float64], eps: float, z: NDArray[np.float32]) -> NDArray[Any]:
    d = NearestNeighbors(n_neighbors=1).fit(core).kneighbors(z.astype(np.float64))[0][:, 0]
    r: NDArray[np.float64] = d / eps
    return r


def _fit_risk(
    prep: Prepared, art: _Artifacts, inputs: Mapping[str, NDArray[np.float64]],
    y: Mapping[str, NDArray[np.bool_]],
) -> None:
    cfg = prep.config
    scaler = StandardScaler().fit(inputs["train"])
    x_res, y_res = oversample_training_rows(
        scaler.transform(inputs["train"]), y["train"], prep.row_patients("train"),
        prep.split["train"], cfg.seed,
    )
    art.provenance["smote"] = {
        "input_rows": int(inputs["train"].shape[0]),
        "input_patients": sorted(set(prep.row_patients("train").tolist())),
        "input_positive_rows": int(np.sum(y["train"])),
        "output_rows": int(x_res.shape[0]),
    }
    model = LogisticRegression(max_iter=cfg.risk_max_iter).fit(x_res, y_res.astype(np.int64))
    path = art.work / "risk.npz"
    export_logistic(scaler, model).save(path)
    art.components["risk"] = ComponentFile("logistic", path, "risk.npz")

    def proba(x: NDArray[np.float64]) -> NDArray[np.float64]:
        p: NDArray[np.float64] = model.predict_proba(scaler.transform(x))[:, _EVENT]
        return p

    p_val = proba(inputs["val"])
    cut, reached = cut_for_precision(
        p_val, y["val"], cfg.risk_min_precision, cfg.alert_max_fpr
    )
    art.thresholds["risk.probability"] = cut
    art.metric("risk.min_precision", cfg.risk_min_precision)
    art.metric("risk.precision_target_reached_on_val", str(reached).lower())
    for split in ("val", "test"):
        p = proba(inputs[split])
        art.metric(f"risk.{split}_auroc", _auroc(y[split], p))
        for k, v in _flag_stats(p > cut, y[split]).items():
            art.metric(f"risk.{split}_{k}", v)
    probe = inputs["val"][_probe_rows(y["val"])]
    art.golden["risk"] = Golden(probe, proba(probe), _SKLEARN_GOLDEN_ATOL)


def _probe_rows(y: NDArray[np.bool_]) -> NDArray[np.intp]:
    """Golden rows: half event rows, half normal rows, evenly spaced."""
    half = _GOLDEN_ROWS // 2
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    pick = [a[np.linspace(0, a.size - 1, min(half, a.size)).round().astype(int)]
            for a in (pos, neg) if a.size]
    return np.sort(np.concatenate(pick)).astype(np.intp)


def _fit_forecaster(prep: Prepared, art: _Artifacts) -> None:
    cfg = prep.config
    w, h = cfg.fc_window_steps, cfg.fc_horizon_steps
    x_tr, f_tr, e_tr = forecaster_windows(prep, "train")
    _seed_everything(cfg.seed)
    model = build_forecaster(w, N_VITALS, h, cfg.fc_units)
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss={"forecast": "mse", "event": "binary_crossentropy"},
    )
    model.fit(x_tr, {"forecast": f_tr, "event": e_tr.astype(np.float32)},
              epochs=cfg.fc_epochs, batch_size=cfg.fc_batch, shuffle=True, verbose=0)
    infer = inference_copy(model, batch_size=1, unroll=True)
    float_path, int8_path = art.work / "forecaster_float32.tflite", art.work / "forecaster.tflite"
    float_path.write_bytes(to_tflite_float(infer))
    int8_path.write_bytes(to_tflite_int8(infer, x_tr, n_samples=cfg.int8_calibration_samples))
    int8, f32 = load_interpreter(int8_path), load_interpreter(float_path)
    for split in ("val", "test"):
        x, fut, ev = forecaster_windows(prep, split)
        out8, out32 = _run_tflite(int8, x), _run_tflite(f32, x)
        fc8, p8 = split_packed(out8, h, N_VITALS, EVENT_LOGIT_SCALE)
        _, p32 = split_packed(out32, h, N_VITALS, EVENT_LOGIT_SCALE)
        art.metric(f"forecaster.{split}_auroc_int8", _auroc(ev, p8))
        art.metric(f"forecaster.{split}_auroc_float32", _auroc(ev, p32))
        art.metric(f"forecaster.{split}_rmse_scaled", float(np.sqrt(np.mean((fc8 - fut) ** 2))))
        persistence = np.repeat(x[:, -1:, :], h, axis=1)
        art.metric(f"forecaster.{split}_rmse_persistence_scaled",
                   float(np.sqrt(np.mean((persistence - fut) ** 2))))
        if split == "val":
            cut, reached = cut_for_precision(p8, ev, cfg.risk_min_precision, cfg.alert_max_fpr)
            art.thresholds["forecaster.p_event"] = cut
            art.metric("forecaster.precision_target_reached_on_val", str(reached).lower())
            probe = x[int(np.argmax(ev)) : int(np.argmax(ev)) + 1]
        else:
            for k, v in _flag_stats(p8 > art.thresholds["forecaster.p_event"], ev).items():
                art.metric(f"forecaster.test_{k}", v)
    art.components["forecaster"] = ComponentFile("tflite", int8_path, "forecaster.tflite")
    art.golden["forecaster"] = Golden(
        probe, int8.predict(probe), atol=_INT8_GOLDEN_QUANTA * _output_quantum(int8)
    )
    art.provenance["reference"]["forecaster"] = float_path


def _ensemble_metrics(
    art: _Artifacts, votes: NDArray[np.bool_], y: NDArray[np.bool_], row_step_s: int
) -> None:
    """Test figures of the >= 2 of 3 rule, per row and per hour of event-free time."""
    alert = votes.sum(axis=1) >= 2  # BUNDLE.md: at least two of three vote
    stats = _flag_stats(alert, y)
    art.metric("ensemble.test_sensitivity", stats["recall"])
    art.metric("ensemble.test_false_alert_rate", stats["false_positive_rate"])
    art.metric("ensemble.test_precision", stats["precision"])
    normal_hours = float(np.sum(~y)) * row_step_s / _SECONDS_PER_HOUR
    onsets = float(np.sum(alert[~y][1:] & ~alert[~y][:-1]))
    art.metric("ensemble.test_false_alert_onsets_per_normal_hour", onsets / max(normal_hours, 1e-9))
    for i, name in enumerate(("autoencoder", "iforest", "dbscan")):
        s = _flag_stats(votes[:, i], y)
        art.metric(f"{name}.test_vote_recall", s["recall"])
        art.metric(f"{name}.test_vote_false_positive_rate", s["false_positive_rate"])


# --------------------------------------------------------------------------------------- fit


def _bundle_version(cfg: FitConfig, art: _Artifacts) -> str:
    digest = hashlib.sha256()
    for name in sorted(art.components):
        digest.update(name.encode() + b"\0" + art.components[name].source.read_bytes())
    for key in sorted(art.thresholds):
        digest.update(f"{key}={art.thresholds[key]!r}".encode())
    return f"vitals-{cfg.name}-s{cfg.seed}-{digest.hexdigest()[:12]}"


def fit(
    config: FitConfig, data_dir: Path | None, out: Path, *, reference_dir: Path | None = None
) -> Path:
    """Train every component (module docstring) and write the bundle at ``out`` (must not exist).

    ``data_dir``: real numerics to calibrate on; None = the shipped MIMIC-III excerpt.
    ``reference_dir``: when given, the float32 TFLite twins of the two networks are copied
    there. Returns ``out``.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; a bundle is never written over another")
    _seed_everything(config.seed)
    prep = prepare(config, data_dir)
    cfg = prep.config
    z, y, normal = {}, {}, {}
    for split in _SPLITS:
        z[split], y[split], normal[split] = prep.rows(split)
    with tempfile.TemporaryDirectory(prefix="vigil-fit-") as tmp:
        art = _Artifacts(Path(tmp))
        for split in _SPLITS:
            art.metric(f"rows.{split}", int(y[split].size))
            art.metric(f"rows.{split}_event_fraction", float(np.mean(y[split])))
        x_normal = z["train"][normal["train"]]
        art.metric("rows.train_normal", int(x_normal.shape[0]))
        ae = _fit_autoencoder(prep, art, z, y, normal["train"])
        probe = z["val"][_probe_rows(y["val"])].astype(np.float64)
        forest = _fit_iforest(prep, art, x_normal, probe)
        core, eps = _fit_dbscan(prep, art, x_normal, probe)
        scores: dict[str, NDArray[np.float64]] = {}
        inputs: dict[str, NDArray[np.float64]] = {}
        for split in _SPLITS:
            mse = _mse(z[split], _run_tflite(ae, z[split]))
            if_score = forest.score_samples(z[split].astype(np.float64))
            ratio = _dbscan_ratio(core, eps, z[split])
            scores[split] = np.column_stack((mse, if_score, ratio))
            inputs[split] = np.column_stack((z[split].astype(np.float64), scores[split]))
        max_fpr = prep.config.vote_max_fpr
        ae_cut, ae_fpr = cut_for_max_fpr(scores["val"][:, 0], y["val"], max_fpr)
        if_cut, if_fpr = cut_for_max_fpr(-scores["val"][:, 1], y["val"], max_fpr)
        art.thresholds["autoencoder.mse"] = ae_cut
        art.thresholds["iforest.score"] = -if_cut
        art.metric("autoencoder.val_vote_false_positive_rate", ae_fpr)
        art.metric("iforest.val_vote_false_positive_rate", if_fpr)
        art.thresholds["dbscan.ratio"] = _DBSCAN_RATIO_THRESHOLD
        for split in ("val", "test"):
            art.metric(f"iforest.{split}_auroc", _auroc(y[split], -scores[split][:, 1]))
            art.metric(f"dbscan.{split}_auroc", _auroc(y[split], scores[split][:, 2]))
        t = art.thresholds
        votes = np.column_stack((
            scores["test"][:, 0] > t["autoencoder.mse"],
            scores["test"][:, 1] < t["iforest.score"],
            scores["test"][:, 2] > t["dbscan.ratio"],
        ))
        _ensemble_metrics(art, votes, y["test"], cfg.row_step_s)
        _fit_risk(prep, art, inputs, y)
        _fit_forecaster(prep, art)
        if reference_dir is not None:
            reference_dir.mkdir(parents=True, exist_ok=True)
            for name, path in art.provenance["reference"].items():
                (reference_dir / f"{name}_float32.tflite").write_bytes(path.read_bytes())
        mean, scale = prep.fc_mean, prep.fc_scale
        written = write_bundle(
            out,
            bundle_version=_bundle_version(cfg, art),
            components=art.components,
            golden=art.golden,
            feature_spec=prep.spec.to_dict(),
            scaler=prep.scaler.to_dict(),
            thresholds=art.thresholds,
            training_data=_training_data(prep, art),
            metrics=art.metrics,
            requires={"feature_spec_version": FEATURE_SPEC_VERSION,
                      "protocol_version": PROTOCOL_VERSION},
            extra={"forecaster": {
                "window_steps": cfg.fc_window_steps,
                "horizon_steps": cfg.fc_horizon_steps,
                "step_s": cfg.fc_step_s,
                "logit_scale": EVENT_LOGIT_SCALE,
                "vitals_mean": [float(v) for v in mean],
                "vitals_scale": [float(v) for v in scale],
            }},
        )
    _log.info("bundle written: %s", written)
    return written


def _training_data(prep: Prepared, art: _Artifacts) -> dict[str, Any]:
    cfg = prep.config
    real = prep.real
    return {
        "fingerprint": fingerprint(real.files),
        "real_source": real.source,
        "real_files": sorted({p.name for p in real.files}),
        "real_patients": list(real.patients),
        "real_hours": round(
            sum(r.vitals.shape[0] for r in real.records) / _SECONDS_PER_HOUR, 2
        ),
        "real_used_for": "calibration only (within-patient SD, tau, noise, gaps); "
                         "no model is trained or evaluated on real rows",
        "synthetic": f"synthetic cohort: {cfg.n_patients} patients x {cfg.hours:g} h, "
                     f"seed {cfg.seed} (training.synth.synth_cohort); every training, "
                     "validation and test row and label is synthetic",
        "recording": {
            "no_temperature_probe_fraction": cfg.no_temp_fraction,
            "held_numerics_fraction": cfg.held_fraction,
            "held_period_s": cfg.held_period_s,
        },
        "patients": cfg.n_patients,
        "hours": cfg.n_patients * cfg.hours,
        "preset": cfg.name,
        "seed": cfg.seed,
        "row_step_s": cfg.row_step_s,
        "split_fractions": list(cfg.split),
        "split": {k: list(v) for k, v in prep.split.items()},
        "smote": art.provenance["smote"],
        "labels": "event row = a clinical event active at that second (synthetic ground "
                  "truth); normal rows also have none in the longest feature window before",
        "rules": {
            "autoencoder.mse": f"max validation TPR at FPR <= {cfg.vote_max_fpr:g} (ROC of "
                               "int8 mse)",
            "iforest.score": f"max validation TPR at FPR <= {cfg.vote_max_fpr:g} (ROC of "
                             "-score_samples)",
            "dbscan.eps": f"{cfg.dbscan_eps_quantile:g} quantile of the distance to the "
                          f"{cfg.dbscan_min_samples}-th nearest training normal (self included)",
            "risk.probability": f"max validation recall at precision >= "
                                f"{cfg.risk_min_precision:g} and FPR <= "
                                f"{cfg.alert_max_fpr:g}; SMOTE on training rows only",
            "forecaster.p_event": f"max validation recall at precision >= "
                                  f"{cfg.risk_min_precision:g} and FPR <= "
                                  f"{cfg.alert_max_fpr:g}",
            "autoencoder.grid": "highest validation AUROC, ties to lower validation loss",
        },
    }
