"""Per-feature standardisation whose statistics travel in the model bundle (JSON, no pickle).

Training fits it on the training features (``fit``); the edge only loads it (``from_dict``) and
calls ``transform``, so the device scales exactly as training did. Vocabulary follows
scikit-learn: learned state ends in ``_``.

A feature that is constant in the training data (for example a vital that was never measured,
whose level is always its fill value) gets scale 1, so it maps to ``x - mean`` instead of a
division by zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["SCALER_VERSION", "ScalerError", "Standardizer"]

SCALER_VERSION: Final = 1
_KEYS: Final = ("version", "n_features", "mean", "scale", "feature_names")


class ScalerError(ValueError):
    """Wrong input for a Standardizer: feature-count or name mismatch, not fitted, bad dict."""


def _finite_floats(values: object, key: str, n: int) -> NDArray[np.float64]:
    if not isinstance(values, list) or len(values) != n:
        raise ScalerError(f"scaler.{key}: must be a list of {n} numbers")
    for i, v in enumerate(values):
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise ScalerError(f"scaler.{key}[{i}]: {v!r}; must be a finite number")
    return np.array(values, dtype=np.float64)


class Standardizer:
    """``(x - mean_) / scale_`` per feature; ``scale_`` is the training std (1 if constant)."""

    def __init__(self) -> None:
        """Unfitted; call `fit` or build one with `from_dict`."""
        self.mean_: NDArray[np.float64] | None = None
        self.scale_: NDArray[np.float64] | None = None
        self.feature_names_: tuple[str, ...] | None = None

    @property
    def n_features_(self) -> int:
        """Number of features it was fitted on."""
        return int(self._fitted()[0].shape[0])

    def _fitted(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if self.mean_ is None or self.scale_ is None:
            raise ScalerError("Standardizer is not fitted: call fit() or from_dict() first")
        return self.mean_, self.scale_

    def fit(self, x: ArrayLike, feature_names: Sequence[str] | None = None) -> Self:
        """Learn mean and std of each column of ``x`` (n_samples, n_features), all finite.

        ``feature_names`` (optional, e.g. ``FeatureSpec.feature_names()``) are stored so a
        bundle can be checked against the pipeline that feeds it (`check_feature_names`).
        """
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
            raise ScalerError(f"fit needs a non-empty (n_samples, n_features) array, got {a.shape}")
        if not np.isfinite(a).all():
            bad = np.flatnonzero(~np.isfinite(a).all(axis=0))
            raise ScalerError(f"fit needs finite values; non-finite in columns {bad[:10].tolist()}")
        if feature_names is not None and len(feature_names) != a.shape[1]:
            raise ScalerError(f"{len(feature_names)} feature names for {a.shape[1]} features")
        mean = a.mean(axis=0)
        scale = a.std(axis=0)
        constant = a.min(axis=0) == a.max(axis=0)
        scale[constant | ~(scale > 0)] = 1.0
        self.mean_, self.scale_ = mean, scale
        self.feature_names_ = None if feature_names is None else tuple(feature_names)
        return self

    def transform(
        self, x: NDArray[np.float64], out: NDArray[np.float64] | None = None
    ) -> NDArray[np.float64]:
        """Standardise ``x`` of shape (n_features,) or (n, n_features).

        With ``out`` (same shape, float64) the result is written there and nothing is allocated:
        the per-tick path on the edge. Raises `ScalerError` on a feature-count mismatch.
        """
        mean, scale = self._fitted()
        if x.ndim not in (1, 2) or x.shape[-1] != mean.shape[0]:
            raise ScalerError(
                f"expected {mean.shape[0]} features (shape (n, {mean.shape[0]}) or "
                f"({mean.shape[0]},)), got shape {x.shape}"
            )
        if out is None:
            out = np.empty(x.shape, dtype=np.float64)
        elif out.shape != x.shape:
            raise ScalerError(f"out has shape {out.shape}, input {x.shape}")
        np.subtract(x, mean, out=out)
        np.divide(out, scale, out=out)
        return out

    def fit_transform(
        self, x: ArrayLike, feature_names: Sequence[str] | None = None
    ) -> NDArray[np.float64]:
        """`fit` then `transform` the same data."""
        return self.fit(x, feature_names).transform(np.asarray(x, dtype=np.float64))

    def check_feature_names(self, names: Sequence[str]) -> None:
        """Raise `ScalerError` unless ``names`` match the fitted features (count, and names if
        stored), naming the first difference. Call it when loading a bundle."""
        n = self.n_features_
        if len(names) != n:
            raise ScalerError(f"pipeline gives {len(names)} features, scaler has {n}")
        if self.feature_names_ is None:
            return
        for i, (got, want) in enumerate(zip(names, self.feature_names_, strict=True)):
            if got != want:
                raise ScalerError(f"feature {i} is {got!r} in the pipeline, {want!r} in the scaler")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: plain floats (exact through ``json``), lists and strings."""
        mean, scale = self._fitted()
        return {
            "version": SCALER_VERSION,
            "n_features": int(mean.shape[0]),
            "mean": [float(v) for v in mean],
            "scale": [float(v) for v in scale],
            "feature_names": None if self.feature_names_ is None else list(self.feature_names_),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Standardizer:
        """Read `to_dict` output back, checking every field (`ScalerError` names it)."""
        if not isinstance(data, Mapping):
            raise ScalerError(f"scaler: expected a JSON object, got {type(data).__name__}")
        for key in data:
            if key not in _KEYS:
                raise ScalerError(f"scaler.{key}: unknown key; known: {', '.join(_KEYS)}")
        for key in _KEYS:
            if key not in data:
                raise ScalerError(f"scaler.{key}: missing")
        if data["version"] != SCALER_VERSION:
            raise ScalerError(
                f"scaler.version: {data['version']!r} is not supported (reads {SCALER_VERSION})"
            )
        n = data["n_features"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ScalerError(f"scaler.n_features: {n!r}; must be an integer >= 1")
        arrays = {key: _finite_floats(data[key], key, n) for key in ("mean", "scale")}
        if not (arrays["scale"] > 0).all():
            i = int(np.flatnonzero(~(arrays["scale"] > 0))[0])
            raise ScalerError(f"scaler.scale[{i}]: {arrays['scale'][i]!r}; must be > 0")
        names = data["feature_names"]
        if names is not None and (
            not isinstance(names, list)
            or len(names) != n
            or not all(isinstance(s, str) for s in names)
        ):
            raise ScalerError(f"scaler.feature_names: must be null or a list of {n} strings")
        scaler = cls()
        scaler.mean_, scaler.scale_ = arrays["mean"], arrays["scale"]
        scaler.feature_names_ = None if names is None else tuple(names)
        return scaler
