"""Supervised beat classifier (issue 8): a small 1-D CNN on the beat window plus RR features.

Input: one `models.beats` feature row (128-point shape window, its 128-point deviation from
the patient's running template, then the 9 RR features). Output:
softmax over the AAMI classes N, S, V, F, in that order (their codes 0 to 3, `TRAIN_CLASSES`;
Q is left out: too few beats). Scores as in `training.beat_eval`: abnormal = 1 - P(N),
V = P(V), S = P(S); decision = the most probable class.

Choices, and why:

- **One packed input.** The device adapter (`models.tflite`) runs single-input models only,
  so the window, the deviation and the RR features travel as one (265,) vector: the network
  splits it with ``Cropping1D`` layers (builtin STRIDED_SLICE), stacks window and deviation
  as two channels of one conv stack and concatenates the RR features after it, so the RR
  features are a second input in all but the tensor count.
- **RR features are standardised and clipped** (training-beat mean and std, then to
  +-`RR_CLIP`) before packing: a full-int8 model has one (scale, zero point) for the whole
  input tensor, so the RR columns must live on the same scale as the unit-RMS window (raw
  seconds near 0.8 with ratios near 1 would get a handful of int8 steps). `BeatInputScaler`
  holds the constants the device needs.
- **Class-weighted loss**: balanced weights (``n / (4 * n_class)``), as the LightGBM baseline
  uses; S and V are 2 % to 8 % of beats, F under 1 %.
- **Validation split of training records only**: whole training records (`VAL_FRACTION` of
  them, a seeded choice) are held out for early stopping on the class-weighted validation
  loss, so neither the test records nor beats of the records being fitted decide when to
  stop.
- **Augmented training windows** (`AUGMENT`): each batch's windows get a fresh random
  amplitude scale, baseline shift, white noise and shift by up to 2 samples, so the network
  does not learn one patient's exact morphology; the deviation moves with its window (the
  template is the patient's, not the beat's); RR columns and validation beats untouched.
  The loss weights then travel as per-beat sample weights. Tried and not kept (pooled
  out-of-fold, beat spec 1): square-root class weights (``weight_power=0.5``: AUROC 0.925
  -> 0.910); batch normalisation after the convs (0.928 alone, within noise; 0.882
  together with the augmentation). Beat spec 2, 3-network ensemble: two more scalar inputs,
  the beat's RMS and its QRS RMS (+-0.06 s) over the patient's running averages (rule 2
  throws a beat's size away, and LightGBM gained from them: AUROC abnormal 0.973 -> 0.977,
  V +P 73.9 -> 75.7 %): pooled V AUPRC 0.871 -> 0.851, V Se / +P at 0.5 80.9 / 80.6 ->
  74.8 / 80.6 % (seed 0; per fold within the seed-to-seed spread).
- **Deterministic**: `keras.utils.set_random_seed` and op determinism before building.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import keras
import numpy as np
from keras import layers
from numpy.typing import NDArray

from models.beat_classifier import BeatInput, RowModel
from models.beats import AAMI_CLASSES, DEFAULT_SPEC, RR_FEATURE_NAMES
from training.ecg_data import BeatDataset
from training.nets import inference_copy
from training.quantize import to_tflite_int8

__all__ = [
    "CLASS_NAMES",
    "N_POINTS",
    "N_RR",
    "RR_CLIP",
    "BeatInputScaler",
    "TrainedBeatModel",
    "build_model",
    "class_weights",
    "novelty_int8",
    "predict_float",
    "predict_tflite",
    "split_validation_records",
    "to_int8_model",
    "train_ensemble",
    "train_fold",
    "train_novelty",
]

CLASS_NAMES: Final = ("N", "S", "V", "F")
"""Output columns, in order; column k is AAMI code k (`models.beats.AAMI_CLASSES`)."""
assert AAMI_CLASSES[: len(CLASS_NAMES)] == CLASS_NAMES
N_RR: Final = len(RR_FEATURE_NAMES)
N_POINTS: Final = DEFAULT_SPEC.n_points
N_INPUT: Final = DEFAULT_SPEC.network_columns.stop
RR_CLIP: Final = 5.0
"""Standardised RR features are clipped to +-5 std: one outlier interval (a missed beat, a
pause) must not widen the int8 input range for every other beat."""
VAL_FRACTION: Final = 0.2
AUGMENT: Final = 0.1
"""Default `train_fold` augmentation strength (`_AugmentedBeats`): pooled out-of-fold AUROC
abnormal 0.925 -> 0.940, V +P 32 % -> 49 %, S Se at +P 50 % 0 -> 24 % (5 folds, 22 records)."""
PREDICT_BATCH: Final = 2048


class BeatInputScaler:
    """Fits the device's input scaling (`models.beat_classifier.BeatInput`) on training beats."""

    @staticmethod
    def fit(features: NDArray[np.floating[Any]]) -> BeatInput:
        """Mean and std of the RR columns of training beats (std 0 -> 1), clip `RR_CLIP`."""
        rr = np.asarray(features[:, DEFAULT_SPEC.rr_columns], dtype=np.float64)
        std = rr.std(axis=0)
        return BeatInput(rr.mean(axis=0), np.where(std > 0, std, 1.0), RR_CLIP)


def build_model(
    n_points: int = N_POINTS,
    n_rr: int = N_RR,
    *,
    filters: tuple[int, ...] = (16, 32, 32),
    kernel_size: int = 7,
    dense: int = 32,
    dropout: float = 0.2,
    batch_size: int | None = None,
    name: str = "beat_cnn",
) -> keras.Model:
    """(batch, 2 n_points + n_rr) -> (batch, 4) softmax over N, S, V, F.

    Shape branch: window and deviation as two channels; per filter count, Conv1D (same
    padding, ReLU) then MaxPool 2, flattened (positions matter for a beat aligned on R, so
    no global pooling). The RR features join after the conv stack; one ReLU dense layer and
    dropout precede the softmax.
    """
    if n_points < 2 ** len(filters) or n_rr < 1 or not filters:
        raise ValueError("n_points must allow one halving per conv layer; n_rr >= 1")
    total = 2 * n_points + n_rr
    inputs = keras.Input((total,), batch_size=batch_size, name="beat")
    x = layers.Reshape((total, 1), name="as_sequence")(inputs)
    window = layers.Cropping1D((0, n_points + n_rr), name="window")(x)
    deviation = layers.Cropping1D((n_points, n_rr), name="deviation")(x)
    rr = layers.Flatten(name="rr")(layers.Cropping1D((2 * n_points, 0), name="rr_slice")(x))
    h = layers.Concatenate(axis=-1, name="channels")([window, deviation])
    for i, f in enumerate(filters):
        h = layers.Conv1D(f, kernel_size, padding="same", activation="relu", name=f"conv_{i}")(h)
        h = layers.MaxPooling1D(2, name=f"pool_{i}")(h)
    h = layers.Flatten(name="shape_features")(h)
    h = layers.Concatenate(name="with_rr")([h, rr])
    h = layers.Dense(dense, activation="relu", name="dense")(h)
    if dropout > 0:
        h = layers.Dropout(dropout, name="dropout")(h)
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax", name="classes")(h)
    return keras.Model(inputs, outputs, name=name)


def class_weights(y: NDArray[np.integer[Any]], power: float = 1.0) -> dict[int, float]:
    """Balanced weights (n / (k * n_c)) ** power over the classes present (absent ones get
    none); power 0.5 is the softer square-root balancing."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(CLASS_NAMES))
    present = np.flatnonzero(counts)
    return {int(c): float((y.size / (present.size * counts[c])) ** power) for c in present}


def split_validation_records(
    records: NDArray[np.str_], seed: int, fraction: float = VAL_FRACTION
) -> tuple[list[str], list[str]]:
    """(fit records, validation records): a seeded choice of whole training records.

    At least one record each way when there are two or more.
    """
    names = sorted(set(records.tolist()))
    if len(names) < 2:
        raise ValueError("need at least two training records for a record-wise validation split")
    rng = np.random.default_rng(seed)
    n_val = min(len(names) - 1, max(1, round(fraction * len(names))))
    val = sorted(rng.choice(names, size=n_val, replace=False).tolist())
    return [n for n in names if n not in val], val


@dataclass
class TrainedBeatModel:
    """A fitted network with its input scaler and what training did."""

    model: keras.Model
    scaler: BeatInput
    val_records: list[str]
    epochs_run: int
    best_val_loss: float


def train_fold(
    train: BeatDataset,
    *,
    seed: int = 0,
    epochs: int = 8,
    patience: int = 2,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    weight_power: float = 1.0,
    augment: float = AUGMENT,
    verbose: int = 0,
    split_seed: int | None = None,
    **model_kwargs: Any,
) -> TrainedBeatModel:
    """Fit `build_model` on ``train`` (N/S/V/F beats of the training records only).

    Early stopping (best weights restored) on the loss of validation records drawn from
    ``train`` itself (`split_validation_records` with ``split_seed``, default ``seed``); the
    scaler is fitted on the fitting records.
    """
    keep = np.isin(train.aami, range(len(CLASS_NAMES)))
    fit_names, val_names = split_validation_records(
        train.record[keep], seed if split_seed is None else split_seed
    )
    fit_mask = keep & np.isin(train.record, fit_names)
    val_mask = keep & np.isin(train.record, val_names)
    scaler = BeatInputScaler.fit(train.features[fit_mask])
    x_fit, y_fit = scaler(train.features[fit_mask]), train.aami[fit_mask].astype(np.int64)
    x_val, y_val = scaler(train.features[val_mask]), train.aami[val_mask].astype(np.int64)

    keras.utils.set_random_seed(seed)
    model = build_model(**model_kwargs)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    weights = class_weights(y_fit, weight_power)
    # The validation loss is weighted like the training loss, so early stopping judges the
    # objective being fitted rather than (mostly) how well N beats are told apart.
    w_val = np.array([weights.get(int(c), 0.0) for c in y_val], dtype=np.float32)
    fit_data: Any = x_fit
    fit_kwargs: dict[str, Any] = {"y": y_fit, "batch_size": batch_size, "shuffle": True}
    if augment > 0:
        w_fit = np.array([weights[int(c)] for c in y_fit], dtype=np.float32)
        fit_data = _AugmentedBeats(
            x_fit, y_fit, w_fit, batch_size=batch_size, strength=augment, seed=seed
        )
        fit_kwargs = {}
    else:
        fit_kwargs["class_weight"] = weights
    history = model.fit(
        fit_data,
        validation_data=(x_val, y_val, w_val),
        epochs=epochs,
        callbacks=[stop],
        verbose=verbose,
        **fit_kwargs,
    )
    val_loss = [float(v) for v in history.history["val_loss"]]
    return TrainedBeatModel(model, scaler, val_names, len(val_loss), min(val_loss))


def train_ensemble(
    train: BeatDataset, *, members: int = 3, seed: int = 0, **kwargs: Any
) -> TrainedBeatModel:
    """``members`` networks (`train_fold`, initial seeds ``seed``, ``seed + 1``, ...) on the same
    fitting and validation records, averaged into one network (a Keras ``Average`` layer:
    one TFLite file, ``members`` times the arithmetic).

    Why: with 22 patients a single network's cross-patient figures swing with its random
    initialisation (pooled out-of-fold AUROC abnormal 0.937 to 0.966 over three seeds);
    averaging members narrows that. They share the validation records, so those stay
    unseen by every member for threshold tuning, and the scaler (fitted on the same
    records).
    """
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    fitted = [train_fold(train, seed=seed + k, split_seed=seed, name=f"beat_cnn_{k}", **kwargs)
              for k in range(members)]
    if members == 1:
        return fitted[0]
    first = fitted[0]
    inputs = keras.Input(first.model.input_shape[1:], name="beat")
    outputs = layers.Average(name="mean_probability")([m.model(inputs) for m in fitted])
    return TrainedBeatModel(
        keras.Model(inputs, outputs, name="beat_cnn_ensemble"), first.scaler,
        first.val_records, max(m.epochs_run for m in fitted),
        float(np.mean([m.best_val_loss for m in fitted])),
    )


class _AugmentedBeats(keras.utils.PyDataset):  # type: ignore[misc]
    """Shuffled weighted batches whose windows get a fresh random perturbation each time.

    ``strength`` s: amplitude scale 1 + U(-s, s), baseline shift N(0, s / 2), white noise
    N(0, s / 4), shift by up to 2 samples (edge repeated). RR columns are left alone.
    """

    def __init__(
        self,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        w: NDArray[np.float32],
        *,
        batch_size: int,
        strength: float,
        seed: int,
    ) -> None:
        super().__init__()
        self.x, self.y, self.w = x, y, w
        self.batch_size, self.strength = batch_size, strength
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))

    def __getitem__(self, i: int) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        x = self.x[idx].copy()
        n, s, rng = len(idx), self.strength, self.rng
        before: NDArray[Any] = x[:, :N_POINTS]
        shift = rng.integers(-2, 3, size=n)
        cols = np.clip(np.arange(N_POINTS)[None, :] - shift[:, None], 0, N_POINTS - 1)
        win = np.take_along_axis(before, cols, axis=1)
        win = win * (1 + rng.uniform(-s, s, (n, 1))) + rng.normal(0, s / 2, (n, 1))
        win = win + rng.normal(0, s / 4, win.shape)
        x[:, N_POINTS : 2 * N_POINTS] += win - before
        x[:, :N_POINTS] = win
        return x, self.y[idx], self.w[idx]


def predict_float(trained: TrainedBeatModel, features: NDArray[np.floating[Any]]) -> NDArray[Any]:
    """(n, 4) float Keras probabilities for raw feature rows."""
    x = trained.scaler(features)
    return np.asarray(trained.model.predict(x, batch_size=PREDICT_BATCH, verbose=0), np.float64)


def to_int8_model(
    trained: TrainedBeatModel, representative_features: NDArray[np.floating[Any]]
) -> bytes:
    """Full-integer int8 TFLite bytes of the batch-1 inference copy (what the device runs),
    calibrated on ``representative_features`` (raw rows of training beats)."""
    twin = inference_copy(trained.model, batch_size=1)
    return to_tflite_int8(twin, trained.scaler(representative_features))


NOVELTY_HIDDEN: Final = (64,)
NOVELTY_LATENT: Final = 16


def train_novelty(
    windows: NDArray[np.floating[Any]],
    val_windows: NDArray[np.floating[Any]],
    *,
    seed: int = 0,
    epochs: int = 10,
    patience: int = 2,
    batch_size: int = 256,
) -> keras.Model:
    """Dense autoencoder of unit-RMS shape windows (`models.beat_classifier` novelty): 128 ->
    64 -> 16 -> 64 -> 128, MSE loss, early stopping on ``val_windows`` (validation records).

    Trained on beats of every class: a novel beat is one unlike any class. Tried on the 22
    records, window only: its 99.5th percentile of validation MSE is about 0.14 with normal
    beats at a median of 0.01 and V beats at 0.05.
    """
    from training.nets import build_autoencoder  # noqa: PLC0415

    x = np.asarray(windows, dtype=np.float32)
    xv = np.asarray(val_windows, dtype=np.float32)
    keras.utils.set_random_seed(seed)
    model = build_autoencoder(x.shape[1], NOVELTY_LATENT, 0.0, hidden=NOVELTY_HIDDEN)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="mse")
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    model.fit(x, x, validation_data=(xv, xv), epochs=epochs, batch_size=batch_size,
              callbacks=[stop], verbose=0)
    return model


def novelty_int8(model: keras.Model, representative: NDArray[np.floating[Any]]) -> bytes:
    """Full-int8 TFLite bytes of the autoencoder's batch-1 copy (what the device runs)."""
    return to_tflite_int8(inference_copy(model, batch_size=1),
                          np.asarray(representative, dtype=np.float32))


def predict_tflite(
    tflite: bytes | RowModel,
    scaler: BeatInput,
    features: NDArray[np.floating[Any]],
) -> NDArray[np.float64]:
    """(n, 4) probabilities through the device's beat model loader (`RowModel`: one beat per
    call, as on the device)."""
    if isinstance(tflite, bytes):
        with tempfile.TemporaryDirectory(prefix="vigil-beat-") as tmp:
            path = Path(tmp) / "beat_cnn.tflite"
            path.write_bytes(tflite)
            runner = RowModel(path)
    else:
        runner = tflite
    return runner.score(scaler(features)).astype(np.float64)
