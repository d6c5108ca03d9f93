"""Risk score from a StandardScaler + binary LogisticRegression, in numpy, equal to sklearn's.

Why exported rather than pickled: the device has no scikit-learn, and the whole model is four
arrays. What sklearn 1.9 computes, and this module reproduces operation for operation:

- ``StandardScaler.transform``: ``z = (x - mean_) / scale_`` (``mean_`` = 0 when
  ``with_mean=False``, ``scale_`` = 1 when ``with_std=False``; zero variances already
  replaced by 1 in ``scale_``).
- ``decision_function``: ``z @ coef_.T + intercept_`` (the same (n, F) @ (F, 1) product).
- ``predict_proba[:, 1]`` for a binary model: ``expit(decision_function)``, i.e. P(classes_[1]).

The sigmoid here is the stable two-branch form: ``1 / (1 + e)`` for logit >= 0 and
``e / (1 + e)`` for logit < 0, with ``e = exp(-|logit|)``, which never overflows and keeps
relative precision for very negative logits. It equals scipy's ``expit`` to about one ulp.

`contributions` explains a risk: ``coef_j * z_j`` is how far feature j pushed the logit away
from the intercept (the logit is the intercept plus their sum), so the largest terms are "the
factors that drove it", in the model's own units.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from models.npz import ArraySpec, NpzModel
from models.tflite import ModelError

__all__ = ["LogisticScorer", "stable_sigmoid"]

FORMAT: Final = "vigil.logistic/1"
"""Written into every file (`models.npz.FORMAT_KEY`); bump when the layout changes."""

_MAX_CACHED_WORKSPACES: Final = 4

_REQUIRED: Final[dict[str, ArraySpec]] = {
    "mean": ("f", 1),
    "scale": ("f", 1),
    "coef": ("f", 1),
    "intercept": ("f", 0),
}

FloatArray = npt.NDArray[np.float64]


_NAME: Final = "logistic"
"""Prefix of this scorer's ModelError messages."""


def _model_error(message: str) -> ModelError:
    return ModelError(f"{_NAME}: {message}")


class _Workspace:
    """Buffers for ``rows`` rows; reused across calls."""

    __slots__ = ("e", "logit", "negative", "rows", "t", "z")

    def __init__(self, rows: int, n_features: int) -> None:
        self.rows = rows
        self.z = np.empty((rows, n_features), dtype=np.float64)
        self.logit = np.empty((rows, 1), dtype=np.float64)
        self.e = np.empty(rows, dtype=np.float64)
        self.t = np.empty(rows, dtype=np.float64)
        self.negative = np.empty(rows, dtype=np.bool_)


def _sigmoid_into(
    logit: FloatArray,
    out: FloatArray,
    e: FloatArray,
    t: FloatArray,
    negative: npt.NDArray[np.bool_],
) -> None:
    """Stable logistic function of ``logit`` into ``out`` using the given scratch buffers."""
    np.less(logit, 0.0, out=negative)
    np.abs(logit, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)  # exp(-|logit|) in (0, 1]: cannot overflow
    np.add(e, 1.0, out=t)
    np.divide(1.0, t, out=out)
    np.divide(e, t, out=out, where=negative)


def stable_sigmoid(logit: npt.ArrayLike) -> FloatArray:
    """1 / (1 + exp(-logit)) without overflow; NaN stays NaN."""
    x = np.array(logit, dtype=np.float64, ndmin=1)
    out = np.empty_like(x)
    _sigmoid_into(x, out, np.empty_like(x), np.empty_like(x), np.empty(x.shape, dtype=np.bool_))
    return out


class LogisticScorer(NpzModel):
    """P(class 1) of a scaled binary logistic regression, plus per-feature contributions.

    Build with `training.export.export_logistic` (or `from_arrays` / `load`). Batch methods take
    (n_rows, n_features) and return new arrays; `update` scores one row per tick. Calls are
    serialized by a lock because the buffers are shared.
    """

    model_format: ClassVar[str] = FORMAT
    required_arrays: ClassVar[Mapping[str, ArraySpec]] = _REQUIRED
    model_name: ClassVar[str] = _NAME

    def __init__(
        self, mean: npt.ArrayLike, scale: npt.ArrayLike, coef: npt.ArrayLike, intercept: float
    ) -> None:
        """Copy and check the model; raises ModelError on mismatched lengths, non-finite values
        or a zero scale (sklearn's scaler never stores one, so it means a damaged model).
        """
        mean_a = np.array(mean, dtype=np.float64)
        scale_a = np.array(scale, dtype=np.float64)
        coef_a = np.array(coef, dtype=np.float64)
        if coef_a.ndim == 2 and coef_a.shape[0] == 1:
            coef_a = coef_a[0]  # sklearn's binary coef_ is (1, n_features)
        if coef_a.ndim != 1 or coef_a.size < 1:
            raise _model_error(f"coef must be (n_features,), got shape {coef_a.shape}")
        n_features = coef_a.size
        for name, arr in (("mean", mean_a), ("scale", scale_a)):
            if arr.shape != (n_features,):
                raise _model_error(f"{name} has shape {arr.shape}, expected ({n_features},)")
        intercept_value = float(intercept)
        for name, arr in (("mean", mean_a), ("scale", scale_a), ("coef", coef_a),
                          ("intercept", np.array(intercept_value))):
            if not np.isfinite(arr).all():
                raise _model_error(f"{name} contains NaN or infinity")
        if (scale_a == 0.0).any():
            raise _model_error(f"scale is 0 at feature(s) {np.flatnonzero(scale_a == 0.0)}")
        self._mean, self._scale, self._coef = mean_a, scale_a, coef_a
        for arr in (self._mean, self._scale, self._coef):
            arr.setflags(write=False)
        self._coef_column = np.ascontiguousarray(coef_a.reshape(-1, 1))
        self._intercept = intercept_value
        self._lock = threading.Lock()
        self._z1 = np.empty(n_features, dtype=np.float64)
        self._workspaces: dict[int, _Workspace] = {}

    @property
    def n_features(self) -> int:
        """Length of an input row."""
        return int(self._coef.size)

    @property
    def mean(self) -> FloatArray:
        """Scaler mean per feature (read-only)."""
        return self._mean

    @property
    def scale(self) -> FloatArray:
        """Scaler standard deviation per feature (read-only)."""
        return self._scale

    @property
    def coef(self) -> FloatArray:
        """Logit weight per standardized feature (read-only)."""
        return self._coef

    @property
    def intercept(self) -> float:
        """Logit at the training mean (all z = 0)."""
        return self._intercept

    def __repr__(self) -> str:
        """Size, for logs."""
        return f"LogisticScorer(n_features={self.n_features}, intercept={self._intercept:.6g})"

    def _workspace(self, rows: int) -> _Workspace:
        ws = self._workspaces.get(rows)
        if ws is None:
            if len(self._workspaces) >= _MAX_CACHED_WORKSPACES:
                self._workspaces.clear()
            ws = _Workspace(rows, self.n_features)
            self._workspaces[rows] = ws
        return ws

    def _check_batch(self, x: npt.ArrayLike) -> npt.NDArray[Any]:
        arr = np.asarray(x)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise _model_error(f"input must be (n_rows, {self.n_features}), got shape {arr.shape}")
        if arr.dtype.kind not in "fiub":
            raise _model_error(f"input must be numeric, got dtype {arr.dtype}")
        return arr

    def _logit_into(self, ws: _Workspace, rows_in: npt.NDArray[Any]) -> None:
        np.subtract(rows_in, self._mean, out=ws.z, casting="unsafe")
        np.divide(ws.z, self._scale, out=ws.z)
        np.matmul(ws.z, self._coef_column, out=ws.logit)
        ws.logit += self._intercept

    def decision_function(self, x: npt.ArrayLike) -> FloatArray:
        """The logit, sklearn's ``decision_function`` after the scaler."""
        arr = self._check_batch(x)
        with self._lock:
            ws = self._workspace(arr.shape[0])
            self._logit_into(ws, arr)
            return ws.logit[:, 0].copy()

    def predict_proba(self, x: npt.ArrayLike) -> FloatArray:
        """P(class 1) per row: sklearn's ``predict_proba(x)[:, 1]`` to 1e-12 (about one ulp)."""
        arr = self._check_batch(x)
        out = np.empty(arr.shape[0], dtype=np.float64)
        with self._lock:
            ws = self._workspace(arr.shape[0])
            self._logit_into(ws, arr)
            _sigmoid_into(ws.logit[:, 0], out, ws.e, ws.t, ws.negative)
        return out

    def score(self, x: npt.ArrayLike) -> FloatArray:
        """The batch method of the scorer protocol: same as `predict_proba`."""
        return self.predict_proba(x)

    def update(self, sample: npt.ArrayLike) -> float:
        """P(class 1) of one row (n_features,) for this tick; equals ``predict_proba([sample])``.

        The same arithmetic as the batch path on a buffer allocated at construction, with
        the sigmoid of the one logit in Python floats (same formula, no array calls).
        """
        arr = np.asarray(sample)
        if arr.shape != (self.n_features,):
            raise _model_error(f"sample must be ({self.n_features},), got shape {arr.shape}")
        z = self._z1
        with self._lock:
            np.subtract(arr, self._mean, out=z, casting="unsafe")
            np.divide(z, self._scale, out=z)
            logit = float(z.dot(self._coef)) + self._intercept
        e = math.exp(-abs(logit))
        return e / (1.0 + e) if logit < 0.0 else 1.0 / (1.0 + e)

    def contributions(self, x: npt.ArrayLike, out: FloatArray | None = None) -> FloatArray:
        """Per-feature push on the logit, ``coef_j * (x_j - mean_j) / scale_j``.

        ``x`` is one row (n_features,) or a batch (n_rows, n_features); the result has the same
        shape, written into ``out`` when given (no allocation: the edge explains alerts with
        it). ``intercept + contributions(x).sum(-1)`` is the logit (up to summation order).
        """
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.n_features:
            raise _model_error(
                f"x must be ({self.n_features},) or (n_rows, {self.n_features}), "
                f"got shape {arr.shape}"
            )
        z = np.empty_like(arr) if out is None else out
        np.subtract(arr, self._mean, out=z)
        np.divide(z, self._scale, out=z)
        np.multiply(z, self._coef, out=z)
        return z

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The model as plain arrays (copies), the inverse of `from_arrays`."""
        return {
            "mean": self._mean.copy(),
            "scale": self._scale.copy(),
            "coef": self._coef.copy(),
            "intercept": np.array(self._intercept, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.ArrayLike]) -> LogisticScorer:
        """Rebuild from `to_arrays` output; raises ModelError if an array is missing or bad."""
        cls.check_arrays(arrays)
        return cls(
            arrays["mean"], arrays["scale"], arrays["coef"], float(np.asarray(arrays["intercept"]))
        )


