"""A tiny but real vitals bundle (models/BUNDLE.md) for the edge tests, trained in ~20 s.

Data: the simulator's synthetic adult patients (`SyntheticPatient.readings`), normal for the
unsupervised models, with injected clinical events (`apply_events`, labelled by
`event_labels`) for the risk model and the forecaster. Features: `compute_features`, the same
pipeline the edge streams. Models, as `vigil-train fit` would make them but small:
IsolationForest, DBSCAN (exported core samples), StandardScaler + LogisticRegression on
``[z, mse, iforest, dbscan]``, a Dense autoencoder and an LSTM forecaster (window 20 s, so the
unrolled int8 conversion stays quick) in full int8. Thresholds are chosen on held-out normal
patients (0.2 % false votes per detector, 0.1 % false risk and early-warning rows). Golden
vectors come from scikit-learn and from the int8 TFLite files run by the device adapter.

Imports TensorFlow and scikit-learn: only tests and benchmarks use this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from firmware_bridge.sim import SyntheticPatient, apply_events, event_labels, get_profile
from firmware_bridge.sim.events import CLINICAL_KINDS, parse_event
from models.features import VITAL_NAMES, FeatureSpec, compute_features
from models.forecaster import EVENT_LOGIT_SCALE, event_probability
from models.scaler import Standardizer
from models.tflite import load_interpreter
from training.bundle import ComponentFile, Golden, write_bundle
from training.export import export_dbscan, export_isolation_forest, export_logistic
from training.nets import build_autoencoder, build_forecaster, inference_copy
from training.quantize import to_tflite_int8

SPEC = FeatureSpec()
WINDOW, HORIZON = 20, 5
VERSION = "test-2026.1"
SEED = 0
RECORD_S = 600
FALSE_VOTE_RATE = 0.002  # per detector, on held-out normal patients
TRAIN_SEEDS = range(30)  # normal patients the unsupervised models learn
VAL_SEEDS = range(40, 50)  # held-out normal patients the thresholds are chosen on
EVENT_SEEDS = range(50, 62)  # patients with events, for the risk model and the forecaster

# Slow deteriorations (ramps of 60-120 s) so that the forecaster can learn what comes next.
EVENT_SCRIPTS = (
    ("desaturation@300+90:200=14", "hypotension@1100+120:200=40"),
    ("tachycardia@200+60:200=50", "desaturation@900+120:200=12"),
    ("hypotension@400+90:200=35", "tachypnoea@1200+60:200=16"),
    ("desaturation@250+120:300=15", "fever@1000+120:300=2.5"),
)


def normal_vitals(seed: int, n: int = RECORD_S) -> np.ndarray:
    """(n, 7) measured vitals of a synthetic adult, one row per second, no events."""
    return SyntheticPatient(get_profile("adult"), seed=seed).readings(n)


def with_events(
    vitals: np.ndarray, specs: tuple[str, ...], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Vitals with the events applied, and the per-second label "a clinical event is active"."""
    events = [parse_event(s) for s in specs]
    t = np.arange(len(vitals), dtype=np.float64)
    labels = event_labels(t, events)
    active = np.zeros(len(vitals), dtype=bool)
    for kind in CLINICAL_KINDS:
        active |= labels[kind]
    return apply_events(vitals, t, events, seed=seed), active


@dataclass(frozen=True)
class VitalsBundle:
    """The written bundle and what a test needs to write variants of it."""

    path: Path
    thresholds: dict[str, float]
    components: dict[str, ComponentFile]
    golden: dict[str, Golden]
    manifest_fields: dict[str, Any]
    fitted: dict[str, Any]
    """The training-side objects (sklearn, Keras), for benchmarks against "the naive way"."""

    def variant(self, dest: Path, **overrides: Any) -> Path:
        """The same components with manifest fields replaced (thresholds, extra, ...)."""
        fields = {**self.manifest_fields, **overrides}
        return write_bundle(
            dest, bundle_version=fields.pop("bundle_version", VERSION),
            components=self.components, golden=self.golden, **fields,
        )


def _levels(features: np.ndarray) -> np.ndarray:
    return features[:, :: SPEC.features_per_vital][:, : len(VITAL_NAMES)]


def _windows(levels: np.ndarray, active: np.ndarray, stride: int) -> tuple[np.ndarray, ...]:
    """Forecaster samples: W past rows, H future rows, label = event active in the horizon."""
    x, f, e = [], [], []
    for end in range(WINDOW, len(levels) - HORIZON, stride):
        x.append(levels[end - WINDOW : end])
        f.append(levels[end : end + HORIZON])
        e.append(active[end : end + HORIZON].any())
    return np.array(x, np.float32), np.array(f, np.float32), np.array(e, np.float32)


def build(root: Path) -> VitalsBundle:
    """Train everything and write ``root / "bundle"``; deterministic for a given machine."""
    keras.utils.set_random_seed(SEED)
    names = SPEC.feature_names()
    warm = min(SPEC.window_samples)
    train_f = np.vstack([compute_features(normal_vitals(s), SPEC)[warm:] for s in TRAIN_SEEDS])
    val_feats = [compute_features(normal_vitals(s), SPEC)[warm:] for s in VAL_SEEDS]
    val_f = np.vstack(val_feats)
    scaler = Standardizer().fit(train_f, names)
    z_train, z_val = scaler.transform(train_f), scaler.transform(val_f)
    src = root / "src"
    src.mkdir(parents=True)

    # Unsupervised ensemble.
    ae = build_autoencoder(SPEC.n_features, 8, 0.0, hidden=(32,))
    ae.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    ae.fit(z_train, z_train, epochs=12, batch_size=64, verbose=0)
    (src / "ae.tflite").write_bytes(
        to_tflite_int8(inference_copy(ae, batch_size=1), z_train.astype(np.float32), n_samples=300)
    )
    ae_device = load_interpreter(src / "ae.tflite")

    def mse(z: np.ndarray) -> np.ndarray:
        z32 = z.astype(np.float32)
        out = np.concatenate([ae_device.predict(z32[i : i + 1]) for i in range(len(z32))])
        return np.mean((out.astype(np.float64) - z) ** 2, axis=1)

    forest = IsolationForest(n_estimators=60, random_state=SEED).fit(z_train)
    export_isolation_forest(forest).save(src / "iforest.npz")
    sub = z_train[:: 4]
    k_dist = NearestNeighbors(n_neighbors=6).fit(sub).kneighbors(sub)[0][:, -1]
    eps = float(np.quantile(k_dist, 0.95))
    clusters = DBSCAN(eps=eps, min_samples=5).fit(sub)
    dbscan = export_dbscan(clusters, sub)
    dbscan.save(src / "dbscan.npz")

    val_mse, val_if, val_db = mse(z_val), forest.score_samples(z_val), dbscan.score(z_val)
    thresholds = {
        "autoencoder.mse": float(np.quantile(val_mse, 1 - FALSE_VOTE_RATE)),
        "iforest.score": float(np.quantile(val_if, FALSE_VOTE_RATE)),
        "dbscan.ratio": max(1.0, float(np.quantile(val_db, 1 - FALSE_VOTE_RATE))),
    }

    # Risk model and forecaster on patients with events.
    feats, actives = [], []
    for i, seed in enumerate(EVENT_SEEDS):
        script = EVENT_SCRIPTS[i % len(EVENT_SCRIPTS)]
        vitals, active = with_events(normal_vitals(seed, 2 * RECORD_S), script, seed=seed)
        feats.append(compute_features(vitals, SPEC)[warm:])
        actives.append(active[warm:])
    z_ev = scaler.transform(np.vstack(feats))
    y_ev = np.concatenate(actives).astype(int)
    risk_x = np.column_stack([z_ev, mse(z_ev), forest.score_samples(z_ev), dbscan.score(z_ev)])
    risk_scaler = StandardScaler().fit(risk_x)
    risk = LogisticRegression(max_iter=2000).fit(risk_scaler.transform(risk_x), y_ev)
    export_logistic(risk_scaler, risk).save(src / "risk.npz")
    val_risk_x = np.column_stack([z_val, val_mse, val_if, val_db])
    val_p = risk.predict_proba(risk_scaler.transform(val_risk_x))[:, 1]
    thresholds["risk.probability"] = max(0.5, float(np.quantile(val_p, 0.999)))

    n_rec = RECORD_S - warm
    train_normal = [train_f[i * n_rec : (i + 1) * n_rec] for i in range(4)]
    all_levels = [_levels(f) for f in [*feats, *train_normal]]
    all_active = [*actives, *(np.zeros(n_rec, dtype=bool) for _ in train_normal)]
    vit_mean = np.mean(np.vstack(all_levels), axis=0)
    vit_scale = np.std(np.vstack(all_levels), axis=0)
    vit_scale[vit_scale == 0] = 1.0
    samples = [
        _windows((lv - vit_mean) / vit_scale, a, 2)
        for lv, a in zip(all_levels, all_active, strict=True)
    ]
    xs, fs, es = zip(*samples, strict=True)
    x_fc, f_fc, e_fc = np.concatenate(xs), np.concatenate(fs), np.concatenate(es)
    fc = build_forecaster(WINDOW, len(VITAL_NAMES), HORIZON, 8)
    fc.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss={"forecast": "mse", "event": "binary_crossentropy"},
    )
    fc.fit(x_fc, {"forecast": f_fc, "event": e_fc}, epochs=6, batch_size=64, verbose=0)
    (src / "fc.tflite").write_bytes(
        to_tflite_int8(inference_copy(fc, batch_size=1, unroll=True), x_fc, n_samples=300)
    )
    fc_device = load_interpreter(src / "fc.tflite")
    normal_windows = np.concatenate([
        _windows((_levels(f) - vit_mean) / vit_scale, np.zeros(len(f), dtype=bool), 3)[0]
        for f in val_feats
    ]).astype(np.float32)
    p_normal = np.array([
        event_probability(float(fc_device.predict(w[None])[0, -1]), EVENT_LOGIT_SCALE)
        for w in normal_windows
    ])
    thresholds["forecaster.p_event"] = max(0.5, float(np.quantile(p_normal, 0.999)))

    probe = z_val[:: 997][:8]
    core = sub[clusters.core_sample_indices_]
    nearest = np.sqrt(((probe[:, None, :] - core[None]) ** 2).sum(-1)).min(1)
    probe_risk = np.column_stack([probe, mse(probe), forest.score_samples(probe), nearest / eps])
    ae_in = probe[:1].astype(np.float32)
    fc_in = x_fc[:1]
    golden = {
        "autoencoder": Golden(ae_in, ae_device.predict(ae_in), atol=1e-6),
        "iforest": Golden(probe, forest.score_samples(probe), atol=1e-9),
        "dbscan": Golden(probe, nearest / eps, atol=1e-9),
        "risk": Golden(
            probe_risk, risk.predict_proba(risk_scaler.transform(probe_risk))[:, 1], atol=1e-12
        ),
        "forecaster": Golden(fc_in, fc_device.predict(fc_in), atol=1e-6),
    }
    components = {
        "autoencoder": ComponentFile("tflite", src / "ae.tflite", "autoencoder.tflite"),
        "iforest": ComponentFile("iforest", src / "iforest.npz", "iforest.npz"),
        "dbscan": ComponentFile("dbscan", src / "dbscan.npz", "dbscan.npz"),
        "risk": ComponentFile("logistic", src / "risk.npz", "risk.npz"),
        "forecaster": ComponentFile("tflite", src / "fc.tflite", "forecaster.tflite"),
    }
    fields: dict[str, Any] = {
        "feature_spec": SPEC.to_dict(),
        "scaler": scaler.to_dict(),
        "thresholds": thresholds,
        "training_data": {"synthetic": True, "patients": 10},
        "metrics": {},
        "requires": {"feature_spec_version": 1, "protocol_version": 1},
        "extra": {
            "forecaster": {
                "window_steps": WINDOW,
                "horizon_steps": HORIZON,
                "step_s": 1,
                "logit_scale": EVENT_LOGIT_SCALE,
                "vitals_mean": [float(v) for v in vit_mean],
                "vitals_scale": [float(v) for v in vit_scale],
            }
        },
    }
    path = write_bundle(root / "bundle", bundle_version=VERSION, components=components,
                        golden=golden, **fields)
    fitted = {
        "iforest": forest, "dbscan_rows": sub, "dbscan_eps": eps, "risk_scaler": risk_scaler,
        "risk": risk, "autoencoder": ae, "forecaster": fc, "train_features": train_f,
    }
    return VitalsBundle(path, thresholds, components, golden, fields, fitted)


if __name__ == "__main__":  # python tests/_vitals_bundle.py DIR: build one to look at
    import sys
    import time

    start = time.perf_counter()
    built = build(Path(sys.argv[1]))
    print(json.dumps(built.thresholds, indent=2), f"{time.perf_counter() - start:.1f} s")
