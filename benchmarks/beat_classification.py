"""Beat classification, patient-wise: the CNN beat model beside LightGBM, kNN, kNN distance,
IsolationForest.

Data: the MIT-BIH records in DATA/mitdb (here the 22 non-paced records, which are exactly de
Chazal's DS1; the paced 102, 104, 107, 217 are excluded as is customary), MLII lead (V5 where a
record has none) and, with ``--leads 2`` (the default, as shipped), the chest lead V1 (V5 in
114, V4 in 124) for the beat model's two-lead trees (`models.beats` rule 9; ``shipped_lead_ii``
is the same fitted model on the same beats with the chest lead removed, as on a board without
one); reference beats with AAMI classes, Q beats left out. Features: `models.beats` rows; the
kNN, IsolationForest and LightGBM baselines read lead II's row. Leave-records-out folds
(`training.ecg_data.record_folds`, default 5), every model on the same folds in this run;
metrics per fold and pooled over all out-of-fold beats (definitions: `training.beat_eval`). The
CNN (`training.beat_model`, issue 8) is trained on the same folds in the same run (early
stopping on training records only), scored as float Keras (``cnn_float``) and as the full-int8
TFLite model run beat by beat through the device adapter (``cnn_int8``), with the int8-vs-float
AUROC drop per fold and pooled (export target: <= 0.005). ECG5000 is benchmarks/ecg5000.py.

Targets for the CNN beat model (issue 8): AUROC abnormal vs normal >= 0.96 across patients,
V Se and +P >= 90 %, S Se >= 75 % at +P >= 50 %.

Run: .venv/bin/python benchmarks/beat_classification.py [--data ../shared/data] [--folds 5]
     [--cnn-epochs 8] [--no-cnn] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.beat_classifier import tree_probabilities
from models.beats import AAMI_CLASSES, DEFAULT_SPEC, BeatSpec
from training.beat_eval import (
    CLASS_MODELS,
    FoldScores,
    concat_scores,
    evaluate_folds,
    metrics,
    scores_from_probs,
)
from training.ecg_data import (
    BeatDataset,
    find_records,
    load_mitdb,
    record_folds,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA_MITDB = DEFAULT_DATA / "mitdb"  # set from --data in main


def pct(x: float) -> str:
    return "  n/a" if math.isnan(x) else f"{100 * x:5.1f}"


def f3(x: float) -> str:
    return "  n/a" if math.isnan(x) else f"{x:.3f}"


def table(rows: dict[str, dict[str, float]]) -> list[str]:
    head = (
        f"{'model':12} {'AUROC abn':>9} {'AUPRC abn':>9} {'AUROC V':>8} {'AUPRC V':>8} "
        f"{'AUROC S':>8} {'AUPRC S':>8} {'V Se%':>6} {'V +P%':>6} {'EC57':>6} {'S Se%':>6} "
        f"{'S +P%':>6} {'S Se%@+P50':>10}"
    )
    lines = [head, "(V +P: strict, then EC57's: a fusion beat called V is not a false V)"]
    for name, m in rows.items():
        get = m.get
        lines.append(
            f"{name:12} {f3(m['auroc_abnormal']):>9} {f3(m['auprc_abnormal']):>9} "
            f"{f3(m['auroc_v']):>8} {f3(m['auprc_v']):>8} {f3(m['auroc_s']):>8} "
            f"{f3(m['auprc_s']):>8} {pct(get('v_se', math.nan)):>6} "
            f"{pct(get('v_ppv', math.nan)):>6} {pct(get('v_ppv_ec57', math.nan)):>6} "
            f"{pct(get('s_se', math.nan)):>6} "
            f"{pct(get('s_ppv', math.nan)):>6} {pct(m['s_se_at_ppv50']):>10}"
        )
    return lines


CNN_MODELS = ("shipped", "shipped_lead_ii", "cnn_float", "cnn_int8", "trees", "novelty_int8")
AUROC_KEYS = ("auroc_abnormal", "auroc_v", "auroc_s")


def evaluate_cnn(
    data: BeatDataset, folds: Sequence[Sequence[str]], *, seed: int, epochs: int,
    scores_out: Path | None = None, spec: BeatSpec = DEFAULT_SPEC,
) -> dict[str, Any]:
    """Per fold, what `vigil-train ecg fit` ships, trained on the other folds' records
    (`training.beat_bundle.fit_beat_model`: early stopping and the F threshold on its own
    validation records): the beat model as the device runs it (``shipped``: the int8
    network's probabilities averaged with the numpy trees', at its thresholds, V and S 0.5,
    F tuned, with the novelty rule), the float network (``cnn_float``, decision = most
    probable class), the int8 network alone at the same thresholds (``cnn_int8``), the trees
    alone (``trees``, most probable class) and the int8 novelty autoencoder's MSE as a
    one-class score (``novelty_int8``). ``shipped``'s S score is P(S) where the device may call
    S (no S call in an irregular rhythm), 0 elsewhere; ``cnn_int8``'s is the raw P(S).
    ``scores_out``: every test beat's record, R sample, AAMI code and the three models'
    class probabilities (device, int8 network, trees) and novelty MSE, as an ``.npz`` for
    error analysis."""

    from training.beat_bundle import fit_beat_model  # noqa: PLC0415 - TensorFlow only here
    from training.beat_model import predict_float  # noqa: PLC0415
    from training.ecg_data import load_mitdb  # noqa: PLC0415

    per_fold: list[dict[str, Any]] = []
    scores: dict[str, list[FoldScores]] = {m: [] for m in CNN_MODELS}
    labels = []
    dump: dict[str, list[Any]] = {k: [] for k in ("record", "r_sample", "aami", "fold",
                                                  "p_device", "p_int8", "p_trees",
                                                  "novelty_mse")}
    for i, test_records in enumerate(folds):
        t0 = time.perf_counter()
        train_records = [r for j, f in enumerate(folds) if j != i for r in f]
        test = data.subset(test_records)
        art = fit_beat_model(load_mitdb(DATA_MITDB, train_records, spec=spec), seed=seed + i,
                             epochs=epochs, spec=spec)
        p_float = predict_float(art.trained, test.features)
        device = art.on_device(test.features)
        lead_ii = test.features.copy()
        if spec.second_lead_columns is not None:
            lead_ii[:, spec.second_lead_columns] = np.nan  # a board without the chest lead
        device_ii = art.on_device(lead_ii)
        network = art.on_device(test.features, trees=False)
        assert art.trees is not None
        mse = device.novelty_mse
        p_trees = tree_probabilities(spec, art.trees, art.trees_two_leads, test.features)
        decision = device.scores.decision
        assert decision is not None
        fold_scores = {
            "shipped": device.scores,
            "shipped_lead_ii": device_ii.scores,
            "cnn_float": scores_from_probs(p_float),
            # Raw int8 P(S) as the S score (not the device's rule-gated one), so that the
            # int8-vs-float AUROC drop compares like with like; decisions are the device's.
            "cnn_int8": FoldScores(network.scores.abnormal, network.scores.v,
                                   network.probabilities[:, AAMI_CLASSES.index("S")],
                                   network.scores.decision),
            "trees": scores_from_probs(p_trees),
            "novelty_int8": FoldScores(mse, mse, mse, None),
        }
        for name, sc in fold_scores.items():
            scores[name].append(sc)
        labels.append(test.aami)
        for key, value in (("record", test.record), ("r_sample", test.r_samples),
                           ("aami", test.aami), ("fold", np.full(test.aami.size, i)),
                           ("p_device", device.probabilities),
                           ("p_int8", network.probabilities),
                           ("p_trees", p_trees),
                           ("novelty_mse", mse)):
            dump[key].append(value)
        per_fold.append(
            {
                "metrics": {name: metrics(test.aami, sc) for name, sc in fold_scores.items()},
                "val_records": art.metrics["validation_records"],
                "epochs_run": art.metrics["epochs_run"],
                "thresholds": art.thresholds,
                "novel_fraction": float(np.mean(decision == AAMI_CLASSES.index("Q"))),
                "seconds": time.perf_counter() - t0,
            }
        )
    y = np.concatenate(labels)
    if scores_out is not None:
        np.savez_compressed(scores_out, **{k: np.concatenate(v) for k, v in dump.items()})
    pooled = {m: metrics(y, concat_scores(scores[m])) for m in CNN_MODELS}
    return {"folds": per_fold, "pooled": pooled}


def _drops(rows: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{k} {rows['cnn_float'][k] - rows['cnn_int8'][k]:+.4f}" for k in AUROC_KEYS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    parser.add_argument("--folds", type=int, default=5, help="leave-records-out folds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="threads for the models")
    parser.add_argument("--cnn-epochs", type=int, default=8, help="CNN epochs (max)")
    parser.add_argument("--no-cnn", action="store_true", help="baselines only")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--leads", type=int, choices=(1, 2), default=2,
                        help="beat model on lead II alone or with the chest lead (default 2)")
    parser.add_argument("--scores", type=Path,
                        help="also write every test beat's probabilities here (.npz)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    global DATA_MITDB  # noqa: PLW0603 - evaluate_cnn reads the records again per fold
    mitdb = DATA_MITDB = args.data / "mitdb"
    print(find_records(mitdb).summary())
    spec = BeatSpec(leads=args.leads)
    records = load_mitdb(mitdb, spec=spec)  # paced records excluded
    leads = sorted({(r.record, r.lead) for r in records})
    print("leads:", ", ".join(f"{rec}:{lead}" for rec, lead in leads))
    data = BeatDataset.from_records(records)
    folds = record_folds({r.record: r.counts() for r in records}, args.folds)
    t_load = time.perf_counter() - t0
    print(
        f"{len(records)} records, {data.aami.size} usable beats {data.counts()} "
        f"(loaded in {t_load:.1f} s)"
    )

    t_base = time.perf_counter()
    result = evaluate_folds(  # the baselines read lead II's row, as before rule 9
        BeatDataset(data.features[:, spec.primary_columns], data.aami, data.record,
                    data.r_samples), folds, seed=args.seed, n_jobs=args.jobs)
    t_base = time.perf_counter() - t_base
    t_cnn = 0.0
    if not args.no_cnn:
        t_cnn = time.perf_counter()
        cnn = evaluate_cnn(data, folds, seed=args.seed, epochs=args.cnn_epochs,
                           scores_out=args.scores, spec=spec)
        t_cnn = time.perf_counter() - t_cnn
        for fold, extra in zip(result["folds"], cnn["folds"], strict=True):
            fold["metrics"].update(extra.pop("metrics"))
            fold["cnn"] = extra
        result["pooled"]["metrics"].update(cnn["pooled"])
        result["models"] = [*CNN_MODELS, *result["models"]]
    for fold in result["folds"]:
        print(
            f"\nfold {fold['fold']}: test records {' '.join(fold['test_records'])}; "
            f"{fold['train_beats']} training beats; test {fold['test_counts']}"
        )
        print("\n".join(table(fold["metrics"])))
        if "cnn" in fold:
            c = fold["cnn"]
            print(
                f"cnn: validation records {' '.join(c['val_records'])}, {c['epochs_run']} "
                f"epochs, {c['seconds']:.1f} s; thresholds {c['thresholds']}; novel (Q) "
                f"{100 * c['novel_fraction']:.2f} % of beats; int8 AUROC drop "
                f"{_drops(fold['metrics'])}"
            )
    pooled = result["pooled"]
    print(
        f"\npooled out-of-fold, {pooled['records']} records, beats {pooled['counts']} "
        f"(class decisions only for {', '.join(CLASS_MODELS)}; S Se@+P50 uses an oracle "
        "threshold)"
    )
    print("\n".join(table(pooled["metrics"])))
    if not args.no_cnn:
        print(f"cnn int8 vs float pooled AUROC drop (target <= 0.005): {_drops(pooled['metrics'])}")

    total = time.perf_counter() - t0
    print(
        f"\ntotal {total:.1f} s (loading {t_load:.1f} s, baselines {t_base:.1f} s, "
        f"cnn {t_cnn:.1f} s)"
    )
    if args.json:
        result["seconds"] = total
        args.json.write_text(json.dumps(result, indent=1, allow_nan=True), encoding="utf-8")


if __name__ == "__main__":
    main()
