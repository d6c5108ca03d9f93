"""Fitting the beat model for the device and adding it to a model bundle (issue 8).

`fit_beat_model` trains `training.beat_model` on the labelled beats of the records given (the
non-paced MIT-BIH records: DS1 on a full database), converts it to full int8, fits LightGBM
trees on the same fitting records' whole feature rows (beat spec 3's context scalars
included; `training.beat_eval.lightgbm_fit`, exported to `models.gbdt` for the device, whose
probabilities are averaged with the network's; with a two-lead spec, `models.beats` rule 9,
a second tree model on both leads' rows for the beats that have the chest lead, the first one
then reading lead II's columns) and sets the decision thresholds
``beat.v``, ``beat.s`` and ``beat.f`` (`models.beat_classifier`): F's is tuned on the
*validation records* the training held out for early stopping (beats of patients neither
the fitted weights nor the trees saw, probabilities through the device's loaders); V's and
S's are `FIXED_THRESHOLD`. `add_beat_model`
writes a new bundle: every file, threshold and golden vector of an existing (verified)
bundle, plus the beat model with its golden vectors, ``extra.beats`` and
``requires.beat_spec_version``.

Threshold choice: for each class in `TUNED_CLASSES` (F), the value on a 0.05 grid (0.05 to
0.95) that maximises F1 of "P(class) >= t" on the validation beats (ties: the lowest, the
more sensitive); F1 weighs sensitivity and positive predictivity equally, as the AAMI Se / +P
pair does. A class absent from the validation records keeps 0.5. V and S are not tuned: the
validation records are 3 or 4 patients, too few to place a threshold that must carry to other
patients. Tuned that way, the V threshold went wherever those patients put it (0.30 to 0.90
over 10 benchmark folds; 0.8 to 0.9 whenever 108, whose noisy normal beats look ventricular,
was among them, and that fold's V sensitivity fell to 26 to 48 %). The networks are trained
with balanced class weights, so 0.5 is where a beat is more likely V than not with the
classes weighed equally. Pooled out-of-fold (22 records, 5 folds, two seeds, beat spec 2):
V Se / +P 78.1 / 76.0 and 62.6 / 77.4 % tuned, 80.9 / 80.6 and 81.4 / 84.5 % at 0.5; S
60.4 / 18.4 and 56.4 / 9.2 % tuned, 56.0 / 23.5 and 51.9 / 14.0 % at 0.5 (the S threshold
tuned on 3 or 4 patients ranged over 0.10 to 0.65). Also tried: each ensemble member holding
out its own validation records, thresholds tuned on the members' out-of-fold predictions
over 12 records: V Se / +P 89.1 / 67.7 %, and the ensemble itself got worse (V AUPRC 0.84
against 0.87; 76.8 / 78.8 % at 0.5). F keeps its tuned threshold: the class-weighted
network over-calls F on beats unlike training (`models.beat_classifier`).
``beat.novelty_mse`` is the `NOVELTY_QUANTILE` of the int8 autoencoder's
reconstruction error over the validation beats: about 1 beat in 200 of patients not trained
on is "unlike anything seen", and an N or F call on it becomes Q.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from models.beat_classifier import (
    CLASS_NAMES,
    COMPONENT,
    NOVELTY,
    NOVELTY_KEY,
    ROW_KIND,
    S_IRREGULARITY_KEY,
    TREES,
    TREES_KIND,
    TREES_TWO_LEADS,
    BeatClassifier,
    BeatInput,
    RowModel,
    reconstruction_mse,
    tree_probabilities,
)
from models.beats import AAMI_CLASSES, DEFAULT_SPEC, BeatSpec
from models.bundle import GOLDEN_FILE, MANIFEST_FILE, load_bundle
from models.gbdt import GradientBoostedTrees
from training.beat_eval import FoldScores, lightgbm_fit, scores_from_probs
from training.beat_eval import metrics as beat_metrics
from training.beat_model import (
    TrainedBeatModel,
    novelty_int8,
    predict_tflite,
    to_int8_model,
    train_ensemble,
    train_novelty,
)
from training.bundle import ComponentFile, Golden, write_bundle
from training.ecg_data import BeatDataset, RecordBeats
from training.export import export_lightgbm

__all__ = [
    "GOLDEN_ATOL",
    "GOLDEN_PER_CLASS",
    "BeatModelArtifacts",
    "DeviceScores",
    "add_beat_model",
    "fit_beat_model",
    "tune_threshold",
]

_log = logging.getLogger(__name__)

GOLDEN_PER_CLASS: Final = 8
"""Golden beats per AAMI class (N, S, V, F), from the validation records."""
GOLDEN_ATOL: Final = 2.0 / 256
"""Two output quanta of the int8 softmax: another CPU's int8 kernels may round one step apart."""
TREES_GOLDEN_ATOL: Final = 1e-9
"""The numpy trees reproduce LightGBM's probabilities to 1e-12 (`models.gbdt`); a margin."""
NOVELTY_GOLDEN_ATOL: Final = 0.1
"""The autoencoder's output quantum is about (output range) / 256, some 0.04 for unit-RMS
windows; two quanta and a margin."""
REPRESENTATIVE: Final = 2000
"""Training beats that calibrate the int8 ranges."""
_GRID: Final = np.round(np.arange(0.05, 0.951, 0.05), 2)
NOVELTY_QUANTILE: Final = 0.995
TUNED_CLASSES: Final = ("F",)
"""Classes whose threshold is tuned on the validation records (module docstring)."""
FIXED_THRESHOLD: Final = 0.5
"""Threshold of the other classes (V, S)."""
S_MAX_IRREGULARITY: Final = 0.08
"""``beat.s_irregularity``: no S call when the last 30 intervals' median absolute successive
difference is this fraction of their mean or more (`models.beat_classifier` says why). The
default of the irregular-rhythm alarm (edge rhythm rule 5, ``[ecg] af_irregularity``), not
tuned for S: 0.06 to 0.12 gave S Se at +P 50 % within a point of each other."""
ENSEMBLE_MEMBERS: Final = 3
"""Networks averaged into the shipped one. Pooled out-of-fold over three seed sets, AUROC
abnormal 0.961 / 0.958 / 0.977 with 3 members against 0.965 / 0.937 / 0.966 for one network,
V AUPRC 0.86-0.87 against 0.80-0.82; the head stays far above its speed target."""


@dataclass
class BeatModelArtifacts:
    """What the bundle gets: int8 network, input scaling, thresholds, golden rows, figures."""

    tflite: bytes
    novelty_tflite: bytes
    trees: GradientBoostedTrees | None
    scaling: BeatInput
    thresholds: dict[str, float]
    golden_input: NDArray[np.float32]
    golden_output: NDArray[np.float32]
    novelty_golden_output: NDArray[np.float32]
    trees_golden_input: NDArray[np.float64]
    trees_golden_output: NDArray[np.float64]
    metrics: dict[str, Any]
    trained: TrainedBeatModel
    training_data: dict[str, Any] = field(default_factory=dict)
    spec: BeatSpec = DEFAULT_SPEC
    trees_two_leads: GradientBoostedTrees | None = None
    """Trees on both leads' rows (a two-lead spec); ``trees`` then read the first lead's."""
    trees_two_leads_golden_output: NDArray[np.float64] | None = None

    def runner(self, directory: Path, component: str = COMPONENT) -> RowModel:
        """An int8 network through the device's loader (written into ``directory``)."""
        path = directory / f"{component}.tflite"
        path.write_bytes(self.tflite if component == COMPONENT else self.novelty_tflite)
        return RowModel(path)

    def on_device(self, features: NDArray[np.floating[Any]], *, trees: bool = True
                  ) -> DeviceScores:
        """What the device computes for raw feature rows: int8 probabilities (averaged with
        the trees' unless ``trees`` is False) and novelty MSE through its loaders, and its
        decisions (`BeatClassifier.label`: the thresholds, the novelty rule)."""
        with tempfile.TemporaryDirectory(prefix="vigil-beat-") as tmp:
            clf = BeatClassifier(self.spec, self.scaling, self.runner(Path(tmp)),
                                 self.thresholds, novelty=self.runner(Path(tmp), NOVELTY),
                                 trees=self.trees if trees else None,
                                 trees_two_leads=self.trees_two_leads if trees else None)
            p = clf.probabilities(features).astype(np.float64)
            return _device_scores(clf, p, clf.novelty_mse(features), features)


@dataclass
class DeviceScores:
    """`BeatModelArtifacts.on_device` output: (n, 4) probabilities, (n,) novelty MSE, and the
    `training.beat_eval` scores with the device's decisions; their S score is P(S) where the
    device may call S (`BeatClassifier.s_allowed`), 0 elsewhere, so an S threshold swept over
    it is the device's rule."""

    probabilities: NDArray[np.float64]
    novelty_mse: NDArray[np.float64]
    scores: FoldScores


def tune_threshold(p: NDArray[np.floating[Any]], positive: NDArray[np.bool_]) -> float:
    """The grid value maximising F1 of ``p >= t`` (module docstring); 0.5 without positives."""
    if not np.any(positive):
        return 0.5
    best_t, best_f1 = 0.5, -1.0
    for t in _GRID.tolist():
        called = p >= t
        tp = int(np.sum(called & positive))
        f1 = 2 * tp / (int(np.sum(called)) + int(np.sum(positive)))
        if f1 > best_f1:
            best_t, best_f1 = float(t), f1
    return best_t


def _device_scores(
    clf: BeatClassifier, p: NDArray[np.float64], mse: NDArray[np.float64],
    features: NDArray[np.floating[Any]],
) -> DeviceScores:
    """Scores with the device's own decisions (`BeatClassifier.labels`) as AAMI codes."""
    irregularity = clf.irregularity(features)
    labels = clf.labels(p, mse, irregularity)
    codes = np.array([AAMI_CLASSES.index(c) for c in labels], dtype=np.int8)
    scores = scores_from_probs(p, codes)
    scores.s = np.where(clf.s_allowed(irregularity), scores.s, 0.0)
    return DeviceScores(p, mse, scores)


def fit_beat_model(
    records: Sequence[RecordBeats], *, seed: int = 0, epochs: int = 8,
    members: int = ENSEMBLE_MEMBERS, trees: bool = True, tree_jobs: int = 2,
    spec: BeatSpec = DEFAULT_SPEC, **train_kwargs: Any,
) -> BeatModelArtifacts:
    """Train on every usable N/S/V/F beat of ``records`` (module docstring): an ensemble of
    ``members`` networks (`training.beat_model.train_ensemble`) and, with ``trees``, LightGBM
    on the fitting records' full rows (the validation records stay unseen by both, so the
    thresholds are set on patients neither model was fitted on); ``train_kwargs`` go to
    `training.beat_model.train_fold` (tests train a tiny network). ``spec``: what the
    records' rows were cut by; with two leads a second tree model is fitted on the fitting
    beats that have the chest lead, and the first one on the first lead's columns
    (`models.beat_classifier.tree_probabilities` picks per beat)."""
    if any(rb.paced for rb in records):
        raise ValueError("paced records are left out of beat model training (AAMI EC57)")
    data = BeatDataset.from_records(records)
    if data.features.shape[1] != spec.n_features:
        raise ValueError(f"the records' rows have {data.features.shape[1]} columns, the beat "
                         f"spec {spec.n_features}")
    trained = train_ensemble(data, members=members, seed=seed, epochs=epochs, **train_kwargs)
    rng = np.random.default_rng(seed)
    fit_rows = ~np.isin(data.record, trained.val_records)
    pick = rng.choice(np.flatnonzero(fit_rows), size=min(REPRESENTATIVE, int(fit_rows.sum())),
                      replace=False)
    tflite = to_int8_model(trained, data.features[np.sort(pick)])
    val = data.subset(trained.val_records)
    windows = DEFAULT_SPEC.window_columns
    ae = train_novelty(data.features[fit_rows][:, windows], val.features[:, windows], seed=seed,
                       epochs=max(epochs, 2))
    ae_tflite = novelty_int8(ae, data.features[np.sort(pick)][:, windows])
    first = spec.primary_columns
    gbm, gbm2 = _fit_trees(data, fit_rows, spec, seed=seed, n_jobs=tree_jobs) if trees \
        else (None, None)
    tree_model = None if gbm is None else export_lightgbm(gbm)
    tree_model2 = None if gbm2 is None else export_lightgbm(gbm2)
    with tempfile.TemporaryDirectory(prefix="vigil-beat-") as tmp:
        path = Path(tmp) / "beat.tflite"
        path.write_bytes(tflite)
        runner = RowModel(path)
        p_val = predict_tflite(runner, trained.scaler, val.features)
        if tree_model is not None:
            p_val = 0.5 * (p_val + tree_probabilities(spec, tree_model, tree_model2,
                                                      val.features))
        golden_rows = _golden_rows(val, rng)
        golden_full = val.features[golden_rows].astype(np.float64)
        golden_trees = (np.zeros((0, len(CLASS_NAMES))) if gbm is None
                        else np.asarray(gbm.predict(golden_full[:, first]), dtype=np.float64))
        golden_trees2 = (None if gbm2 is None
                         else np.asarray(gbm2.predict(golden_full), dtype=np.float64))
        golden_in = trained.scaler(val.features[golden_rows])
        golden_out = runner.score(golden_in)
        ae_path = Path(tmp) / "novelty.tflite"
        ae_path.write_bytes(ae_tflite)
        ae_runner = RowModel(ae_path)
        val_windows = val.features[:, windows]
        val_mse = reconstruction_mse(ae_runner, val_windows)
        novelty_golden = ae_runner.score(val_windows[golden_rows].astype(np.float32))
        thresholds = {
            f"beat.{c.lower()}": tune_threshold(p_val[:, k], val.aami == k)
            if c in TUNED_CLASSES else FIXED_THRESHOLD
            for c in ("V", "S", "F") for k in [AAMI_CLASSES.index(c)]
        }
        thresholds[NOVELTY_KEY] = round(float(np.quantile(val_mse, NOVELTY_QUANTILE)), 6)
        thresholds[S_IRREGULARITY_KEY] = S_MAX_IRREGULARITY
        clf = BeatClassifier(spec, trained.scaler, runner, thresholds,
                             novelty=ae_runner, trees=tree_model, trees_two_leads=tree_model2)
        scores = _device_scores(clf, p_val, val_mse, val.features).scores
    figures = {k: round(float(x), 4) for k, x in beat_metrics(val.aami, scores).items()}
    counts = data.counts()
    _log.info("beat model: %d epochs, validation records %s, thresholds %s, %s",
              trained.epochs_run, trained.val_records, thresholds, figures)
    return BeatModelArtifacts(
        tflite=tflite,
        novelty_tflite=ae_tflite,
        trees=tree_model,
        scaling=trained.scaler,
        thresholds=thresholds,
        golden_input=golden_in,
        golden_output=golden_out,
        novelty_golden_output=novelty_golden,
        trees_golden_input=golden_full,
        trees_golden_output=golden_trees,
        spec=spec,
        trees_two_leads=tree_model2,
        trees_two_leads_golden_output=golden_trees2,
        metrics={"validation_records": trained.val_records, "epochs_run": trained.epochs_run,
                 "members": members, "trees": tree_model is not None,
                 "leads": spec.leads,
                 "int8_at_thresholds": figures,
                 "note": "validation records only (early stopping and thresholds); the "
                         "cross-patient figures are benchmarks/beat_classification.py's"},
        trained=trained,
        training_data={"records": sorted({rb.record for rb in records}),
                       "beats": {k: n for k, n in counts.items() if n},
                       "source": "MIT-BIH Arrhythmia Database (PhysioNet, ODC-By 1.0)"},
    )


def _fit_trees(data: BeatDataset, fit_rows: NDArray[np.bool_], spec: BeatSpec, *, seed: int,
               n_jobs: int) -> tuple[Any, Any]:
    """LightGBM on the fitting rows' first-lead columns, and with a two-lead spec a second
    one on the whole rows of the fitting beats that have the chest lead (None otherwise)."""
    gbm = lightgbm_fit(data.features[fit_rows][:, spec.primary_columns], data.aami[fit_rows],
                       seed=seed, n_jobs=n_jobs)
    second = spec.second_lead_columns
    if second is None:
        return gbm, None
    both = fit_rows & np.all(np.isfinite(data.features[:, second]), axis=1)
    if not np.any(both):
        return gbm, None
    return gbm, lightgbm_fit(data.features[both], data.aami[both], seed=seed, n_jobs=n_jobs)


def _golden_rows(val: BeatDataset, rng: np.random.Generator) -> NDArray[np.int64]:
    rows = []
    for c in CLASS_NAMES:
        idx = np.flatnonzero(val.aami == AAMI_CLASSES.index(c))
        if idx.size:
            rows.append(rng.choice(idx, size=min(GOLDEN_PER_CLASS, idx.size), replace=False))
    return np.sort(np.concatenate(rows))


def add_beat_model(
    source: str | Path, dest: str | Path, art: BeatModelArtifacts, *, version: str | None = None
) -> Path:
    """A new bundle at ``dest``: the verified bundle ``source`` plus the beat model.

    ``version`` defaults to the source's version with ``+ecg``. A source that already has a
    beat model gets it replaced.
    """
    src = Path(source)
    load_bundle(src)  # refuses a source the device would refuse
    raw = json.loads((src / MANIFEST_FILE).read_text(encoding="utf-8"))
    with np.load(src / GOLDEN_FILE, allow_pickle=False) as g:
        golden_arrays = {k: g[k] for k in g.files}
    ours = (COMPONENT, NOVELTY, TREES, TREES_TWO_LEADS)
    components = {
        name: ComponentFile(c["kind"], src / c["file"], c["file"])
        for name, c in raw["components"].items() if name not in ours
    }
    golden = {
        name: Golden(golden_arrays[f"{name}.input"], golden_arrays[f"{name}.output"],
                     float(tol["atol"]))
        for name, tol in raw["golden"].items() if name not in ours
    }
    with tempfile.TemporaryDirectory(prefix="vigil-beat-") as tmp:
        for name, blob in ((COMPONENT, art.tflite), (NOVELTY, art.novelty_tflite)):
            model_path = Path(tmp) / f"{name}.tflite"
            model_path.write_bytes(blob)
            components[name] = ComponentFile(ROW_KIND, model_path, model_path.name)
        golden[COMPONENT] = Golden(art.golden_input, art.golden_output, GOLDEN_ATOL)
        windows = art.golden_input[:, DEFAULT_SPEC.window_columns]
        golden[NOVELTY] = Golden(windows, art.novelty_golden_output, NOVELTY_GOLDEN_ATOL)
        for name, model, golden_in, golden_out in (
                (TREES, art.trees, art.trees_golden_input[:, art.spec.primary_columns],
                 art.trees_golden_output),
                (TREES_TWO_LEADS, art.trees_two_leads, art.trees_golden_input,
                 art.trees_two_leads_golden_output)):
            if model is None or golden_out is None:
                continue
            model_path = Path(tmp) / f"{name}.npz"
            model.save(model_path)
            components[name] = ComponentFile(TREES_KIND, model_path, model_path.name)
            golden[name] = Golden(golden_in, golden_out, TREES_GOLDEN_ATOL)
        extra = {**raw.get("extra", {}), "beats": {
            "spec": art.spec.to_dict(),
            "rr_mean": [float(v) for v in art.scaling.rr_mean],
            "rr_std": [float(v) for v in art.scaling.rr_std],
            "rr_clip": art.scaling.clip,
            "classes": list(CLASS_NAMES),
        }}
        return write_bundle(
            dest,
            bundle_version=version or f"{raw['bundle_version']}+ecg",
            components=components,
            golden=golden,
            feature_spec=raw.get("feature_spec"),
            scaler=raw.get("scaler"),
            thresholds={**_without_beats(raw.get("thresholds", {})), **art.thresholds},
            training_data={**raw.get("training_data", {}), "beats": art.training_data},
            metrics={**raw.get("metrics", {}), "beats": art.metrics},
            requires={**raw.get("requires", {}),
                      "beat_spec_version": extra["beats"]["spec"]["version"]},
            extra=extra,
        )


def _without_beats(thresholds: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in thresholds.items() if not k.startswith("beat.")}
