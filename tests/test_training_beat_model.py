"""training.beat_model: a tiny beat CNN trained on real MIT-BIH beats, run as int8 on LiteRT.

The model trains once per module on the beats of three records (119: many V; 209: many S;
208: V and F), 2 epochs, seed fixed, then is converted to full int8 and run beat by beat
through `models.tflite.load_interpreter` (the device's code path). Tolerances and why:
- int8 vs float Keras probabilities: mean absolute difference <= 0.02 and 99th percentile
  <= 0.08 per class, and the decided class agrees on >= 97 % of beats. The output tensor has
  a quantum of 1/256 (softmax range [0, 1]); the rest is activation rounding through three
  layers. Measured here (TF 2.21, seed 0): mean 0.004, p99 0.023, max 0.033, 99.7 % agree;
- probabilities sum to 1 within 4 output quanta plus 1e-3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _data import shared_data_dir

pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is in vigil[edge]")
pytest.importorskip("tensorflow", reason="tensorflow-cpu is in vigil[train]")

from models.beat_classifier import RowModel
from models.tflite import load_interpreter
from training.beat_model import (
    CLASS_NAMES,
    N_INPUT,
    N_POINTS,
    N_RR,
    RR_CLIP,
    BeatInputScaler,
    TrainedBeatModel,
    _AugmentedBeats,
    class_weights,
    predict_float,
    predict_tflite,
    split_validation_records,
    to_int8_model,
    train_fold,
)
from training.ecg_data import BeatDataset, load_mitdb
from training.quantize import assert_builtin_only, io_types

RECORDS = ("119", "208", "209")
N_PROBE = 600
TINY = {"filters": (8, 16), "kernel_size": 5, "dense": 16, "dropout": 0.0}


@pytest.fixture(scope="module")
def beats() -> BeatDataset:
    mitdb = shared_data_dir("mitdb")
    return BeatDataset.from_records(load_mitdb(mitdb, RECORDS))


@pytest.fixture(scope="module")
def trained(beats: BeatDataset) -> TrainedBeatModel:
    return train_fold(beats, seed=0, epochs=2, batch_size=256, **TINY)


@pytest.fixture(scope="module")
def int8_bytes(trained: TrainedBeatModel, beats: BeatDataset) -> bytes:
    return to_int8_model(trained, beats.features)


def _probe(beats: BeatDataset) -> np.ndarray:
    """Evenly spaced beats plus every F and S beat up to N_PROBE: all classes appear."""
    rare = np.flatnonzero(np.isin(beats.aami, (1, 3)))[: N_PROBE // 3]
    spaced = np.linspace(0, beats.aami.size - 1, N_PROBE - rare.size).astype(int)
    return beats.features[np.union1d(rare, spaced)]


def test_validation_records_come_from_training_records_only(beats: BeatDataset) -> None:
    fit, val = split_validation_records(beats.record, seed=0)
    assert set(fit) | set(val) == set(RECORDS)
    assert not set(fit) & set(val)
    assert fit
    assert val
    with pytest.raises(ValueError, match="two training records"):
        split_validation_records(np.array(["119", "119"]), seed=0)


def test_class_weights_balance_present_classes() -> None:
    y = np.array([0] * 90 + [2] * 10)
    w = class_weights(y)
    assert set(w) == {0, 2}
    assert w[0] * 90 == pytest.approx(w[2] * 10)
    soft = class_weights(y, power=0.5)
    assert soft[0] == pytest.approx(w[0] ** 0.5)
    assert soft[2] == pytest.approx(w[2] ** 0.5)


def test_augmented_batches_perturb_windows_and_move_deviations_with_them() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, N_INPUT)).astype(np.float32)
    y = rng.integers(0, len(CLASS_NAMES), size=300)
    w = np.ones(300, dtype=np.float32)
    data = _AugmentedBeats(x, y, w, batch_size=128, strength=0.1, seed=0)
    assert len(data) == 3
    seen = []
    for i in range(len(data)):
        xb, yb, wb = data[i]
        assert xb.shape[1] == N_INPUT
        assert len(xb) == len(yb) == len(wb)
        rows = data.order[i * 128 : (i + 1) * 128]
        rr = slice(2 * N_POINTS, N_INPUT)
        np.testing.assert_array_equal(xb[:, rr], x[rows, rr])
        np.testing.assert_array_equal(yb, y[rows])
        assert not np.allclose(xb[:, :N_POINTS], x[rows, :N_POINTS])
        # The template is the patient's: window change == deviation change.
        np.testing.assert_allclose(
            xb[:, N_POINTS : 2 * N_POINTS] - x[rows, N_POINTS : 2 * N_POINTS],
            xb[:, :N_POINTS] - x[rows, :N_POINTS],
            atol=1e-5,
        )
        seen.append(rows)
    assert sorted(np.concatenate(seen).tolist()) == list(range(300))


def test_scaler_standardises_and_clips_rr_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, N_INPUT))
    scaler = BeatInputScaler.fit(x)
    x[0, -1] = 1e6
    z = scaler(x)
    np.testing.assert_array_equal(z[:, :N_POINTS], x[:, :N_POINTS].astype(np.float32))
    assert z[0, -1] == pytest.approx(RR_CLIP)
    assert np.abs(z[1:, -N_RR:].mean(axis=0)).max() < 0.2


def test_trained_model_learned_something(trained: TrainedBeatModel, beats: BeatDataset) -> None:
    """Not a quality claim: the float model beats chance at telling V from the rest."""
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415

    p = predict_float(trained, beats.features)
    assert p.shape == (beats.aami.size, len(CLASS_NAMES))
    assert roc_auc_score(beats.aami == 2, p[:, 2]) > 0.8
    assert trained.val_records
    assert 1 <= trained.epochs_run <= 2


def test_int8_matches_float_through_device_adapter(
    trained: TrainedBeatModel, beats: BeatDataset, int8_bytes: bytes, tmp_path: Path
) -> None:
    assert_builtin_only(int8_bytes)
    assert io_types(int8_bytes) == (["INT8"], ["INT8"])
    path = tmp_path / "beat.tflite"
    path.write_bytes(int8_bytes)
    runner = load_interpreter(path)
    assert runner.input_shape == (1, N_INPUT)
    assert runner.output_shape == (1, len(CLASS_NAMES))

    x = _probe(beats)
    q = predict_tflite(RowModel(path), trained.scaler, x)
    p = predict_float(trained, x)
    assert q.shape == p.shape == (len(x), len(CLASS_NAMES))
    quantum = 1.0 / 256
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=4 * quantum + 1e-3)
    diff = np.abs(q - p)
    assert diff.mean() <= 0.02, f"mean |int8 - float| {diff.mean():.4f}"
    assert np.quantile(diff, 0.99) <= 0.08, f"p99 |int8 - float| {np.quantile(diff, 0.99):.4f}"
    agree = np.mean(q.argmax(axis=1) == p.argmax(axis=1))
    assert agree >= 0.97, f"class decisions agree on {agree:.3f}"
    # bytes in, same numbers out: the helper's temporary-file path runs the same model.
    np.testing.assert_array_equal(predict_tflite(int8_bytes, trained.scaler, x[:20]), q[:20])


def test_an_ensemble_is_one_int8_network_averaging_its_members(
    beats: BeatDataset, tmp_path: Path
) -> None:
    from training.beat_model import train_ensemble  # noqa: PLC0415

    ens = train_ensemble(beats, members=2, seed=0, epochs=1, batch_size=256, **TINY)
    one = train_fold(beats, seed=0, epochs=1, batch_size=256, **TINY)
    assert ens.val_records == one.val_records  # members share the held-out records
    x = _probe(beats)[:200]
    p = predict_float(ens, x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    path = tmp_path / "ens.tflite"
    blob = to_int8_model(ens, beats.features)
    assert_builtin_only(blob)
    path.write_bytes(blob)
    q = predict_tflite(RowModel(path), ens.scaler, x)
    assert np.mean(np.abs(q - p)) <= 0.02
    assert np.mean(np.argmax(q, 1) == np.argmax(p, 1)) >= 0.97
