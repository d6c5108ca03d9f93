"""The beat model on the device: every ECG beat's AAMI class from its `models.beats` row.

What a bundle carries for it (BUNDLE.md, "Beat model"): the components `beat_classifier`
(the class network) and `beat_novelty` (an autoencoder of the shape window), both of kind
``tflite_rows`` (full-int8 TFLite networks run one beat at a time; golden vectors are input
rows), optionally `beat_trees` (gradient-boosted trees on the whole feature row, context
scalars included, kind ``gbdt``: `models.gbdt`), ``extra.beats`` (the beat spec, the RR
scaling constants, the output class names) and the thresholds ``beat.v``, ``beat.s``,
``beat.f`` and ``beat.novelty_mse``. Training (`training.beat_bundle`) fits those; this
module is the one place that turns a feature row into the models' inputs, so training and
device cannot scale differently.

Two leads (beat spec 4, `models.beats` rule 9): the network reads lead II's columns; the
bundle's `TREES_TWO_LEADS` read the whole row and score every beat whose chest-lead block is
finite, `TREES` (lead II's row) the others, so a board without a chest lead, or a beat whose
chest-lead samples were lost, is classed as by a one-lead model (`tree_probabilities`).

Probabilities: the network's, or with trees the mean of the network's and the trees'. The two
rank beats differently (the network sees the waveform, the trees the context scalars of beat
spec 3); on the 22 non-paced MIT-BIH records (5 patient-wise folds, out of fold, EC57) V Se /
+P at 0.5 went from 78.1 / 83.0 % (network) and 86.3 / 84.9 % (trees) to 86.5 / 88.7 %
averaged.

Decision rule (`BeatClassifier.label`), thresholds from the bundle (training sets V's and S's
at 0.5 and tunes F's on validation patients, `training.beat_bundle`): V when
P(V) >= ``beat.v``; else S when P(S) >= ``beat.s`` and the rhythm before the beat is regular
(its ``irregularity30`` context scalar, `models.beat_context`, below ``beat.s_irregularity``
when the bundle sets it); else F when P(F) >= ``beat.f``; else N.
A ventricular call comes first because it is the one that drives the high-priority alarms.
The regularity condition: a supraventricular *premature* beat is early against a regular
rhythm; in atrial fibrillation every beat is early or late, and the models, which see no P
wave, called S on normal beats there. Scratch analysis (2026-12-08, networks and trees
averaged, pooled out of fold over the 22 non-paced records): 201 and 203 (atrial
fibrillation) and 106 (ventricular bigeminy) held 608 of the 1,042 S calls at 0.5, 36 of them
right. With the condition at 0.08 (the irregular-rhythm alarm's default), S +P at 0.5 went
from 38 % to 82 % and S Se at +P 50 % (threshold chosen on the test beats) from 21 % to 57 %;
S Se at 0.5 from 42 % to 37 %.

Novelty: a beat whose shape window the autoencoder reconstructs with a mean squared error
above ``beat.novelty_mse`` (unit-RMS window units; the 99.5th percentile of validation
patients' beats) is unlike anything in training, so an N or F call on it is not trusted:
it is classed Q (unclassifiable). V and S calls stand: a ventricular beat of a shape never
seen is still one (missing a run costs more than a false one), and on patients not trained
on the novel beats the network calls S are mostly real S beats (letting novelty override S
too cut pooled out-of-fold S sensitivity from 62 % to 35 % and lowered S +P as well).
Every class has its own threshold because training weighs the classes equally (F beats are
under 1 % of the data, so they weigh about 30 times a normal beat): the most probable class
over-calls the rare ones on patients unlike the training set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from models.beats import CONTEXT_FEATURE_NAMES, DEFAULT_SPEC, RR_FEATURE_NAMES, BeatSpec
from models.gbdt import GradientBoostedTrees

__all__ = [
    "COMPONENT",
    "NOVELTY",
    "ROW_KIND",
    "TREES",
    "TREES_KIND",
    "TREES_TWO_LEADS",
    "BeatClassifier",
    "BeatClassifierError",
    "BeatInput",
    "RowModel",
    "reconstruction_mse",
    "scale_rows",
    "tree_probabilities",
]

COMPONENT: Final = "beat_classifier"
"""Component name of the class network in a bundle."""
NOVELTY: Final = "beat_novelty"
"""Component name of the shape autoencoder."""
ROW_KIND: Final = "tflite_rows"
"""Loader kind of both: `RowModel`."""
TREES: Final = "beat_trees"
"""Component name of the gradient-boosted trees (optional)."""
TREES_KIND: Final = "gbdt"
"""Loader kind of the trees: `models.gbdt.GradientBoostedTrees`."""
TREES_TWO_LEADS: Final = "beat_trees_two_leads"
"""Component name of the trees on both leads' rows (optional; a two-lead spec: beats with a
chest lead use them, beats without it `TREES`)."""
CLASS_NAMES: Final = ("N", "S", "V", "F")
THRESHOLD_KEYS: Final = ("beat.v", "beat.s", "beat.f")
NOVELTY_KEY: Final = "beat.novelty_mse"
S_IRREGULARITY_KEY: Final = "beat.s_irregularity"


class BeatClassifierError(ValueError):
    """A bundle's beat model that this device cannot run; the message names the field."""


@dataclass(frozen=True)
class BeatInput:
    """Feature row -> network input: the spec's `BeatSpec.network_columns` (the context
    scalars are the tree model's), shape columns as they are, RR columns standardised with
    the training beats' mean and std (s or ratio, per `RR_FEATURE_NAMES`) and clipped to
    +-``clip``, so one int8 input scale fits them and the unit-RMS windows alike."""

    rr_mean: NDArray[np.float64]
    rr_std: NDArray[np.float64]
    clip: float
    spec: BeatSpec = DEFAULT_SPEC

    def __post_init__(self) -> None:
        n = len(RR_FEATURE_NAMES)
        if self.rr_mean.shape != (n,) or self.rr_std.shape != (n,):
            raise BeatClassifierError(f"rr_mean and rr_std must hold {n} values each")
        if not (np.all(np.isfinite(self.rr_mean)) and np.all(self.rr_std > 0)):
            raise BeatClassifierError("rr_mean must be finite and rr_std > 0")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise BeatClassifierError(f"rr_clip must be a finite number > 0, got {self.clip}")

    def __call__(self, rows: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """(n, n_features) raw rows -> (n, network inputs) float32 inputs."""
        return scale_rows(rows, self)


def scale_rows(rows: NDArray[np.floating[Any]], scaling: BeatInput) -> NDArray[np.float32]:
    """The network input of raw `models.beats` rows (one row or a batch)."""
    spec = scaling.spec
    out = np.array(np.asarray(rows)[..., spec.network_columns], dtype=np.float32, ndmin=2)
    rr = spec.rr_columns
    z = (out[:, rr] - scaling.rr_mean) / scaling.rr_std
    out[:, rr] = np.clip(z, -scaling.clip, scaling.clip)
    return out


class RowModel:
    """Bundle loader of kind ``tflite_rows``: a batch-1 TFLite model scored row by row.

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
        """(n, n_inputs) float32 rows -> (n, n_outputs) outputs."""
        rows = np.asarray(x, dtype=np.float32)
        out = np.empty((rows.shape[0], int(self.model.output_shape[-1])), dtype=np.float32)
        for i in range(rows.shape[0]):
            out[i] = self.model.predict_into(rows[i : i + 1])[0]
        return out


def reconstruction_mse(model: RowModel, windows: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """(n,) mean squared error of an autoencoder's reconstruction of (n, points) windows."""
    x = np.asarray(windows, dtype=np.float32)
    diff = model.score(x).astype(np.float64) - x
    return np.asarray(np.mean(diff * diff, axis=1), dtype=np.float64)


class BeatClassifier:
    """A bundle's beat model, ready for the edge: spec, input scaling, network, thresholds."""

    def __init__(
        self, spec: BeatSpec, scaling: BeatInput, model: RowModel, thresholds: Mapping[str, float],
        *, novelty: RowModel | None = None, trees: GradientBoostedTrees | None = None,
        trees_two_leads: GradientBoostedTrees | None = None, version: str = "",
    ) -> None:
        if model.n_inputs != spec.network_columns.stop:
            raise BeatClassifierError(
                f"{COMPONENT}: network takes {model.n_inputs} inputs, the beat spec gives it "
                f"{spec.network_columns.stop}"
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
        n_first = int(spec.primary_columns.stop)
        for name, model_, n in ((TREES, trees, n_first),
                                (TREES_TWO_LEADS, trees_two_leads, spec.n_features)):
            if model_ is not None and (model_.n_features != n
                                       or model_.n_classes != len(CLASS_NAMES)):
                raise BeatClassifierError(
                    f"{name}: takes {model_.n_features} features into {model_.n_classes} "
                    f"classes; the beat spec gives it {n} features, the classes are "
                    f"{len(CLASS_NAMES)} (N, S, V, F)"
                )
        if trees_two_leads is not None and (trees is None or spec.leads < 2):
            raise BeatClassifierError(
                f"{TREES_TWO_LEADS} needs a two-lead beat spec and {TREES} for beats without "
                "the chest lead")
        if novelty is not None:
            if novelty.model.input_shape != (1, spec.n_points) or \
                    novelty.model.output_shape != (1, spec.n_points):
                raise BeatClassifierError(
                    f"{NOVELTY}: must map (1, {spec.n_points}) to (1, {spec.n_points}), got "
                    f"{novelty.model.input_shape} -> {novelty.model.output_shape}"
                )
            t = thresholds.get(NOVELTY_KEY)
            if t is None or not (math.isfinite(t) and t > 0):
                raise BeatClassifierError(f"thresholds.{NOVELTY_KEY} must be > 0, got {t!r}")
            self._t_novel = float(t)
        self.spec = spec
        self.scaling = scaling
        self.model = model
        self.novelty = novelty
        self.trees = trees
        self.trees_two_leads = trees_two_leads
        self.version = version
        t_irr = thresholds.get(S_IRREGULARITY_KEY)
        if t_irr is not None and not (math.isfinite(t_irr) and t_irr > 0):
            raise BeatClassifierError(f"thresholds.{S_IRREGULARITY_KEY} must be > 0, "
                                      f"got {t_irr!r}")
        self._t_irregular = math.inf if t_irr is None else float(t_irr)
        self._irregularity = spec.context_columns.start + \
            CONTEXT_FEATURE_NAMES.index("irregularity30")
        self._t_v = float(thresholds["beat.v"])
        self._t_s = float(thresholds["beat.s"])
        self._t_f = float(thresholds["beat.f"])

    @classmethod
    def from_bundle(cls, manifest_extra: Mapping[str, Any], thresholds: Mapping[str, float],
                    component: Any, *, novelty: Any = None, trees: Any = None,
                    trees_two_leads: Any = None, version: str = "") -> BeatClassifier:
        """From a loaded bundle's ``extra`` and thresholds and its `RowModel` components;
        BeatClassifierError names what does not fit."""
        raw = manifest_extra.get("beats")
        if not isinstance(raw, Mapping):
            raise BeatClassifierError("extra.beats is missing (spec, rr_mean, rr_std, rr_clip)")
        for name, comp in ((COMPONENT, component), (NOVELTY, novelty)):
            if comp is not None and not isinstance(comp, RowModel):
                raise BeatClassifierError(f"component {name} must be of kind {ROW_KIND}")
        for name, comp in ((TREES, trees), (TREES_TWO_LEADS, trees_two_leads)):
            if comp is not None and not isinstance(comp, GradientBoostedTrees):
                raise BeatClassifierError(f"component {name} must be of kind {TREES_KIND}")
        try:
            spec = BeatSpec.from_dict(raw["spec"])
            scaling = BeatInput(
                np.asarray(raw["rr_mean"], dtype=np.float64),
                np.asarray(raw["rr_std"], dtype=np.float64),
                float(raw["rr_clip"]),
                spec,
            )
            classes = tuple(raw["classes"])
        except KeyError as exc:
            raise BeatClassifierError(f"extra.beats.{exc.args[0]} is missing") from None
        except (TypeError, ValueError) as exc:
            raise BeatClassifierError(f"extra.beats: {exc}") from exc
        if classes != CLASS_NAMES:
            raise BeatClassifierError(f"extra.beats.classes must be {list(CLASS_NAMES)}")
        return cls(spec, scaling, component, thresholds, novelty=novelty, trees=trees,
                   trees_two_leads=trees_two_leads, version=version)

    def probabilities(self, rows: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """(n, 4) P(N, S, V, F) of raw `models.beats` rows (module docstring)."""
        p = self.model.score(self.scaling(rows))
        if self.trees is None:
            return p
        return (0.5 * (p.astype(np.float64) + self.tree_probabilities(rows))).astype(np.float32)

    def tree_probabilities(self, rows: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """(n, 4) the trees' P(N, S, V, F): the two-lead trees where a row's chest-lead block
        is finite and the bundle has them, the one-lead trees on the first lead's columns
        elsewhere (`models.beats` rule 9)."""
        if self.trees is None:
            raise BeatClassifierError(f"this beat model has no {TREES}")
        return tree_probabilities(self.spec, self.trees, self.trees_two_leads, rows)

    def novelty_mse(self, rows: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """(n,) reconstruction MSE of the rows' shape windows; NaN without a novelty model."""
        x = _as_rows(rows)[:, self.spec.window_columns].astype(np.float32)
        if self.novelty is None:
            return np.full(x.shape[0], np.nan)
        return reconstruction_mse(self.novelty, x)

    def label(self, probs: Sequence[float] | NDArray[np.floating[Any]],
              novelty_mse: float = math.nan, irregularity: float = math.nan) -> str:
        """The decision rule of the module docstring for one beat's probabilities, novelty
        error and context irregularity (NaN: unknown, which does not hold an S call back)."""
        _, p_s, p_v, p_f = (float(v) for v in probs)
        if p_v >= self._t_v:
            return "V"
        if p_s >= self._t_s and not irregularity >= self._t_irregular:
            return "S"
        if self.novelty is not None and novelty_mse > self._t_novel:
            return "Q"
        return "F" if p_f >= self._t_f else "N"

    def s_allowed(self, irregularity: NDArray[np.floating[Any]]) -> NDArray[np.bool_]:
        """Where the rule lets a beat be called S: context irregularity below
        ``beat.s_irregularity``, or unknown (NaN)."""
        return ~(np.asarray(irregularity, dtype=np.float64) >= self._t_irregular)

    def irregularity(self, rows: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """(n,) the rows' ``irregularity30`` context scalar (the S rule's input)."""
        return _as_rows(rows)[:, self._irregularity]

    def labels(self, probs: NDArray[np.floating[Any]], novelty_mse: NDArray[np.floating[Any]],
               irregularity: NDArray[np.floating[Any]]) -> list[str]:
        """`label` of each of many beats ((n, 4) probabilities, (n,) novelty MSE and context
        irregularity)."""
        return [self.label(p, float(m), float(i))
                for p, m, i in zip(probs, novelty_mse, irregularity, strict=True)]

    def classify(self, row: NDArray[np.floating[Any]]) -> tuple[str, NDArray[np.float32]]:
        """One beat's class and its probabilities."""
        x = _as_rows(row)
        p = self.probabilities(x)[0]
        return self.label(p, float(self.novelty_mse(x)[0]), float(self.irregularity(x)[0])), p


def tree_probabilities(spec: BeatSpec, trees: GradientBoostedTrees,
                       trees_two_leads: GradientBoostedTrees | None,
                       rows: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """`BeatClassifier.tree_probabilities` for trees not (yet) in a classifier (training sets
    thresholds with it)."""
    x = _as_rows(rows)
    first = x[:, spec.primary_columns]
    second = spec.second_lead_columns
    if trees_two_leads is None or second is None:
        return trees.predict_proba(first)
    both = np.all(np.isfinite(x[:, second]), axis=1)
    q = np.empty((x.shape[0], len(CLASS_NAMES)))
    if both.any():
        q[both] = trees_two_leads.predict_proba(x[both])
    if not both.all():
        q[~both] = trees.predict_proba(first[~both])
    return q


def _as_rows(rows: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """Raw rows as a float64 (n, n_features) array; no copy when they already are (a
    `models.beats.BeatStream` row is)."""
    return np.atleast_2d(np.asarray(rows, dtype=np.float64))

