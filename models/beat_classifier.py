"""The beat model on the device: every ECG beat's AAMI class from its `models.beats` row.

What a bundle carries for it (BUNDLE.md, "Beat model"): the component `beat_classifier`
(kind ``beat_classifier``: a full-int8 TFLite network run one beat at a time, its golden
vectors scaled input rows), ``extra.beats`` (the beat spec, the RR scaling constants, the
output class names) and the thresholds ``beat.v`` and ``beat.s``. Training
(`training.beat_model`) fits those; this module is the one place that turns a feature row
into the network's input, so training and device cannot scale differently.

Decision rule (`BeatClassifier.label`), thresholds tuned on validation patients: V when
P(V) >= ``beat.v``; else S when P(S) >= ``beat.s``; else the most probable of N and F. A
ventricular call comes first because it is the one that drives the high-priority alarms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from models.beats import RR_FEATURE_NAMES, BeatSpec

__all__ = [
    "COMPONENT",
    "BeatClassifier",
    "BeatClassifierError",
    "BeatInput",
    "RowModel",
    "scale_rows",
]

COMPONENT: Final = "beat_classifier"
"""Component name (and loader kind) of the beat model in a bundle."""
CLASS_NAMES: Final = ("N", "S", "V", "F")
THRESHOLD_KEYS: Final = ("beat.v", "beat.s")


class BeatClassifierError(ValueError):
    """A bundle's beat model that this device cannot run; the message names the field."""


@dataclass(frozen=True)
class BeatInput:
    """Feature row -> network input: shape columns as they are, RR columns standardised with
    the training beats' mean and std (s or ratio, per `RR_FEATURE_NAMES`) and clipped to
    +-``clip``, so one int8 input scale fits them and the unit-RMS windows alike."""

    rr_mean: NDArray[np.float64]
    rr_std: NDArray[np.float64]
    clip: float

    def __post_init__(self) -> None:
        n = len(RR_FEATURE_NAMES)
        if self.rr_mean.shape != (n,) or self.rr_std.shape != (n,):
            raise BeatClassifierError(f"rr_mean and rr_std must hold {n} values each")
        if not (np.all(np.isfinite(self.rr_mean)) and np.all(self.rr_std > 0)):
            raise BeatClassifierError("rr_mean must be finite and rr_std > 0")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise BeatClassifierError(f"rr_clip must be a finite number > 0, got {self.clip}")

    def __call__(self, rows: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """(n, n_features) raw rows -> (n, n_features) float32 inputs."""
        return scale_rows(rows, self)


def scale_rows(rows: NDArray[np.floating[Any]], scaling: BeatInput) -> NDArray[np.float32]:
    """The network input of raw `models.beats` rows (the RR block is the last columns)."""
    out = np.array(rows, dtype=np.float32, ndmin=2)
    n = len(RR_FEATURE_NAMES)
    z = (out[:, -n:] - scaling.rr_mean) / scaling.rr_std
    out[:, -n:] = np.clip(z, -scaling.clip, scaling.clip)
    return out


class RowModel:
    """Bundle loader of kind ``beat_classifier``: a batch-1 TFLite model scored row by row.

    The golden check and `BeatClassifier` both go through `score`, the device's code path.
    """

    def __init__(self, path: Path) -> None:
        from models.tflite import load_interpreter  # noqa: PLC0415 - only when a bundle has one

        self.model = load_interpreter(path)
        if len(self.model.input_shape) != 2 or self.model.input_shape[0] != 1:
            raise BeatClassifierError(
                f"{path.name}: input must be (1, n_features), got {self.model.input_shape}"
            )

    @property
    def n_inputs(self) -> int:
        """Input columns the network takes."""
        return int(self.model.input_shape[1])

    def score(self, x: NDArray[Any]) -> NDArray[np.float32]:
        """(n, n_inputs) scaled float32 rows -> (n, n_outputs) probabilities."""
        rows = np.asarray(x, dtype=np.float32)
        out = np.empty((rows.shape[0], int(self.model.output_shape[-1])), dtype=np.float32)
        for i in range(rows.shape[0]):
            out[i] = self.model.predict_into(rows[i : i + 1])[0]
        return out


class BeatClassifier:
    """A bundle's beat model, ready for the edge: spec, input scaling, network, thresholds."""

    def __init__(
        self, spec: BeatSpec, scaling: BeatInput, model: RowModel, thresholds: Mapping[str, float],
        *, version: str = "",
    ) -> None:
        if model.n_inputs != spec.n_features:
            raise BeatClassifierError(
                f"{COMPONENT}: network takes {model.n_inputs} inputs, the beat spec makes "
                f"{spec.n_features}"
            )
        if model.model.output_shape != (1, len(CLASS_NAMES)):
            raise BeatClassifierError(
                f"{COMPONENT}: output must be (1, {len(CLASS_NAMES)}) (N, S, V, F), got "
                f"{model.model.output_shape}"
            )
        for key in THRESHOLD_KEYS:
            t = thresholds.get(key)
            if t is None or not 0.0 < t < 1.0:
                raise BeatClassifierError(f"thresholds.{key} must be in (0, 1), got {t!r}")
        self.spec = spec
        self.scaling = scaling
        self.model = model
        self.version = version
        self._t_v = float(thresholds["beat.v"])
        self._t_s = float(thresholds["beat.s"])

    @classmethod
    def from_bundle(cls, manifest_extra: Mapping[str, Any], thresholds: Mapping[str, float],
                    component: Any, *, version: str = "") -> BeatClassifier:
        """From a loaded bundle's ``extra`` and thresholds and its `RowModel` component;
        BeatClassifierError names what does not fit."""
        raw = manifest_extra.get("beats")
        if not isinstance(raw, Mapping):
            raise BeatClassifierError("extra.beats is missing (spec, rr_mean, rr_std, rr_clip)")
        if not isinstance(component, RowModel):
            raise BeatClassifierError(f"component {COMPONENT} must be of kind {COMPONENT}")
        try:
            spec = BeatSpec.from_dict(raw["spec"])
            scaling = BeatInput(
                np.asarray(raw["rr_mean"], dtype=np.float64),
                np.asarray(raw["rr_std"], dtype=np.float64),
                float(raw["rr_clip"]),
            )
            classes = tuple(raw["classes"])
        except KeyError as exc:
            raise BeatClassifierError(f"extra.beats.{exc.args[0]} is missing") from None
        except (TypeError, ValueError) as exc:
            raise BeatClassifierError(f"extra.beats: {exc}") from exc
        if classes != CLASS_NAMES:
            raise BeatClassifierError(f"extra.beats.classes must be {list(CLASS_NAMES)}")
        return cls(spec, scaling, component, thresholds, version=version)

    def probabilities(self, rows: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """(n, 4) P(N, S, V, F) of raw `models.beats` rows."""
        return self.model.score(self.scaling(rows))

    def label(self, probs: Sequence[float] | NDArray[np.floating[Any]]) -> str:
        """The decision rule of the module docstring for one beat's probabilities."""
        p_n, p_s, p_v, p_f = (float(v) for v in probs)
        if p_v >= self._t_v:
            return "V"
        if p_s >= self._t_s:
            return "S"
        return "F" if p_f > p_n else "N"

    def classify(self, row: NDArray[np.floating[Any]]) -> tuple[str, NDArray[np.float32]]:
        """One beat's class and its probabilities."""
        p = self.probabilities(row)[0]
        return self.label(p), p

