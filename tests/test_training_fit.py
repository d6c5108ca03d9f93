"""training.fit + `vigil-train fit/calibrate`: the tiny preset end to end on the shipped fixture.

One module-scoped fit (tiny preset, seed 0, calibrated on ``fixture:mimic3-numerics``) is
checked through the device's own loaders (`models.bundle.load_bundle`: hashes, content digest,
golden vectors). The int8-vs-float AUROC bound (0.005, the milestone's export criterion) is
re-measured here, not read from the manifest: the bundle's int8 models and the float32
references are run on the validation patients rebuilt by `prepare` (deterministic).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is in vigil[edge]")
pytest.importorskip("tensorflow", reason="tensorflow-cpu is in vigil[train]")
pytest.importorskip("sklearn", reason="scikit-learn is in vigil[train]")
pytest.importorskip("imblearn", reason="imbalanced-learn is in vigil[train]")

from sklearn.metrics import roc_auc_score

from models.bundle import Bundle, load_bundle
from models.features import FeatureSpec
from models.forecaster import split_packed
from models.scaler import Standardizer
from models.tflite import load_interpreter
from training.cli import main
from training.fit import (
    PRESETS,
    Prepared,
    cut_for_max_fpr,
    cut_for_precision,
    fit,
    forecaster_windows,
    oversample_training_rows,
    prepare,
)

TINY = PRESETS["tiny"]
MAX_AUROC_DROP = 0.005
MIN_FLOAT_AUROC = 0.8
COMPONENTS = {"autoencoder", "iforest", "dbscan", "risk", "forecaster"}
THRESHOLDS = {
    "autoencoder.mse",
    "iforest.score",
    "dbscan.ratio",
    "risk.probability",
    "forecaster.p_event",
}
DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "models" / "bundles" / "default"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fit")
    bundle = fit(TINY, None, root / "bundle", reference_dir=root / "reference")
    return bundle, root / "reference"


@pytest.fixture(scope="module")
def bundle(fitted: tuple[Path, Path]) -> Bundle:
    return load_bundle(fitted[0])


@pytest.fixture(scope="module")
def prepared() -> Prepared:
    return prepare(TINY, None)


def _rows(model: object, x: np.ndarray) -> np.ndarray:
    predict = getattr(model, "score", None) or model.predict  # type: ignore[attr-defined]
    return np.concatenate([predict(x[i : i + 1]) for i in range(len(x))])


def test_bundle_is_complete_and_verifies_through_device_loaders(bundle: Bundle) -> None:
    m = bundle.manifest
    assert set(m.components) == COMPONENTS
    assert set(m.golden) == COMPONENTS
    assert {c["kind"] for c in m.components.values()} == {"tflite", "iforest", "dbscan", "logistic"}
    assert set(m.thresholds) == THRESHOLDS
    assert m.thresholds["dbscan.ratio"] == 1.0
    assert dict(m.requires) == {"feature_spec_version": 1, "protocol_version": 1}
    spec = FeatureSpec.from_dict(m.feature_spec)
    Standardizer.from_dict(m.scaler).check_feature_names(spec.feature_names())
    fc = m.extra["forecaster"]
    assert set(fc) == {
        "window_steps", "horizon_steps", "step_s", "logit_scale", "vitals_mean", "vitals_scale"
    }
    assert len(fc["vitals_mean"]) == len(fc["vitals_scale"]) == 7
    assert all(s > 0 for s in fc["vitals_scale"])
    ae = bundle.components["autoencoder"]
    assert ae.model.input_shape == (1, spec.n_features)  # type: ignore[attr-defined]
    forecaster = bundle.components["forecaster"]
    w, h = fc["window_steps"], fc["horizon_steps"]
    assert forecaster.model.input_shape == (1, w, 7)  # type: ignore[attr-defined]
    assert forecaster.model.output_shape == (1, h * 7 + 1)  # type: ignore[attr-defined]


def test_manifest_says_what_is_real_and_what_is_synthetic(bundle: Bundle) -> None:
    td = bundle.manifest.training_data
    assert len(td["fingerprint"]) == 64
    assert td["real_source"] == "fixture:mimic3-numerics"
    assert td["real_files"] == ["s00001_numerics_2h.dat", "s00001_numerics_2h.hea"]
    assert td["synthetic"].startswith(
        f"synthetic cohort: {TINY.n_patients} patients x {TINY.hours:g} h, seed {TINY.seed}"
    )
    assert "calibration only" in td["real_used_for"]


def test_inspect_prints_the_bundle(
    fitted: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(fitted[0])]) == 0
    out = capsys.readouterr().out
    assert "golden vectors reproduce" in out
    for name in (*COMPONENTS, *THRESHOLDS, "ensemble.test_sensitivity", "fingerprint"):
        assert name in out


def test_split_never_puts_a_patient_in_two_sets(bundle: Bundle, prepared: Prepared) -> None:
    split = bundle.manifest.training_data["split"]
    sets = [set(split[k]) for k in ("train", "val", "test")]
    assert all(sets)
    assert not sets[0] & sets[1]
    assert not sets[0] & sets[2]
    assert not sets[1] & sets[2]
    assert set().union(*sets) == {f"synth:{i:04d}" for i in range(TINY.n_patients)}
    # prepare() is deterministic: the rebuilt split is the bundle's
    assert {k: list(v) for k, v in prepared.split.items()} == split
    for name, ids in prepared.split.items():
        assert set(prepared.row_patients(name).tolist()) == set(ids)


def test_smote_only_touched_training_rows(bundle: Bundle, prepared: Prepared) -> None:
    smote = bundle.manifest.training_data["smote"]
    assert smote["input_patients"] == bundle.manifest.training_data["split"]["train"]
    assert smote["input_rows"] == bundle.manifest.metrics["rows.train"]
    assert smote["output_rows"] > smote["input_rows"]
    # and the helper refuses rows of any other patient
    z, y, _ = prepared.rows("val")
    with pytest.raises(ValueError, match="training patients only"):
        oversample_training_rows(
            z.astype(np.float64), y, prepared.row_patients("val"), prepared.split["train"], 0
        )


def test_autoencoder_int8_keeps_validation_auroc(
    bundle: Bundle, fitted: tuple[Path, Path], prepared: Prepared
) -> None:
    z, y, _ = prepared.rows("val")
    int8 = _rows(bundle.components["autoencoder"], z)
    f32 = _rows(load_interpreter(fitted[1] / "autoencoder_float32.tflite"), z)
    auroc_int8 = roc_auc_score(y, np.mean((int8 - z) ** 2, axis=1))
    auroc_f32 = roc_auc_score(y, np.mean((f32 - z) ** 2, axis=1))
    print(f"autoencoder val AUROC float32 {auroc_f32:.4f} int8 {auroc_int8:.4f}")
    assert auroc_f32 > MIN_FLOAT_AUROC
    assert auroc_f32 - auroc_int8 <= MAX_AUROC_DROP
    assert bundle.manifest.metrics["autoencoder.val_auroc_int8"] == pytest.approx(
        auroc_int8, abs=1e-4
    )


def test_forecaster_int8_keeps_validation_auroc(
    bundle: Bundle, fitted: tuple[Path, Path], prepared: Prepared
) -> None:
    fc = bundle.manifest.extra["forecaster"]
    x, _, ev = forecaster_windows(prepared, "val")
    h = fc["horizon_steps"]
    k = fc["logit_scale"]
    p_int8 = split_packed(_rows(bundle.components["forecaster"], x), h, 7, k)[1]
    reference = load_interpreter(fitted[1] / "forecaster_float32.tflite")
    p_f32 = split_packed(_rows(reference, x), h, 7, k)[1]
    auroc_int8, auroc_f32 = roc_auc_score(ev, p_int8), roc_auc_score(ev, p_f32)
    print(f"forecaster val AUROC float32 {auroc_f32:.4f} int8 {auroc_int8:.4f}")
    assert auroc_f32 > MIN_FLOAT_AUROC
    assert auroc_f32 - auroc_int8 <= MAX_AUROC_DROP


def test_forecaster_input_scaling_is_the_manifests(bundle: Bundle, prepared: Prepared) -> None:
    fc = bundle.manifest.extra["forecaster"]
    np.testing.assert_array_equal(prepared.fc_mean, fc["vitals_mean"])
    np.testing.assert_array_equal(prepared.fc_scale, fc["vitals_scale"])


def test_vote_cut_maximises_tpr_within_the_false_positive_budget() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    y = np.array([False, False, False, True, False, True, True, False])
    # Negatives: 0.1 0.2 0.3 0.5 0.8. FPR <= 0.2 allows one false positive (0.8): flag >= 0.6,
    # TPR 2/3; FPR <= 0.4 allows two: flag >= 0.4 picks up the third positive, TPR 1.
    assert cut_for_max_fpr(scores, y, 0.2) == (pytest.approx(0.55), pytest.approx(0.2))
    assert cut_for_max_fpr(scores, y, 0.4) == (pytest.approx(0.35), pytest.approx(0.4))
    # No false positive allowed, and the top score is a negative: never vote.
    assert cut_for_max_fpr(scores, y, 0.0) == (pytest.approx(0.8), 0.0)


def test_cut_for_precision_also_keeps_the_false_positive_bound() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    y = np.array([True, True, False, True, True, False, True, False, False, False])
    # Negatives: 0.7 0.4 0.2 0.1 0.05. Precision >= 0.75 alone: the lowest qualifying cut.
    cut, reached = cut_for_precision(scores, y, 0.75)
    assert reached
    assert cut == pytest.approx(0.45)  # flags 0.9..0.5: tp 4, fp 1, precision 0.8, FPR 1/5
    # The same precision, but at most 0 false positives: only the top two.
    cut, reached = cut_for_precision(scores, y, 0.75, max_fpr=0.0)
    assert reached
    assert cut == pytest.approx(0.75)
    # With no false positive allowed and a negative on top, no cut qualifies: never alert.
    assert cut_for_precision(np.array([0.9, 0.5, 0.1]), np.array([False, True, False]), 0.9,
                             max_fpr=0.0) == (pytest.approx(0.9), False)


def test_cut_for_precision_maximises_recall_at_the_stated_precision() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([True, True, False, True, False, False])
    cut, reached = cut_for_precision(scores, y, 0.75)
    assert reached
    assert cut == pytest.approx(0.55)  # flags 4 rows: precision 3/4, recall 1
    cut, reached = cut_for_precision(scores, y, 0.99)
    assert reached
    assert cut == pytest.approx(0.75)  # the top two only
    _, reached = cut_for_precision(np.array([0.9, 0.1]), np.array([False, True]), 0.5)
    assert not reached


def test_fit_cli_refuses_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--out", str(tmp_path / "b"), "--preset", "huge"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["fit", "--out", str(tmp_path), "--preset", "tiny"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["fit", "--data", str(tmp_path), "--out", str(tmp_path / "b")]) == 1
    assert "no bedside numerics" in capsys.readouterr().err


def test_calibrate_cli_writes_json_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "calib"
    assert main(["calibrate", "--out", str(out), "--patients", "3", "--hours", "1"]) == 0
    data = json.loads((out / "calibration.json").read_text())
    assert data["source"] == "fixture:mimic3-numerics"
    assert data["sample_period_s"] == 60.0
    assert (out / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_committed_default_bundle_loads_and_verifies() -> None:
    b = load_bundle(DEFAULT_BUNDLE)
    # The vitals bundle `vigil-train fit` writes, plus the ECG beat model that `make bundle`
    # adds with `vigil-train ecg fit` (training/beat_bundle.py).
    assert set(b.manifest.components) == COMPONENTS | {"beat_classifier", "beat_novelty",
                                                       "beat_trees", "beat_trees_two_leads"}
    assert b.manifest.requires["beat_spec_version"] == 4  # lead II and a chest lead
    beat_thresholds = {"beat.v", "beat.s", "beat.f", "beat.novelty_mse", "beat.s_irregularity"}
    assert set(b.manifest.thresholds) == THRESHOLDS | beat_thresholds
    assert b.manifest.training_data["beats"]["records"] == sorted(b.manifest.training_data[
        "beats"]["records"])
    assert len(b.manifest.training_data["beats"]["records"]) == 22
    assert b.manifest.training_data["preset"] == "default"
    assert "synthetic cohort" in b.manifest.training_data["synthetic"]
