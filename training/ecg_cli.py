"""`vigil-train ecg`: the beat model, from WFDB records to a bundle, and its evaluation.

    vigil-train ecg fit --data DIR --bundle SRC --out DEST [--epochs N] [--seed S]
                        [--version V] [--records R ...]
    vigil-train ecg evaluate --data DIR [--folds K] [--epochs N] [--seed S] [--out report.json]

``--data`` is any directory of WFDB records with ``.atr`` reference annotations (MIT-BIH
Arrhythmia: the full database, or the 26-record subset in ../shared/data/mitdb).

``fit`` trains on every non-paced annotated record present, or on ``--records``, and writes
bundle SRC plus the beat model to DEST (training/beat_bundle.py).

``evaluate`` is the standard inter-patient evaluation of de Chazal et al. (2004) on whatever is
present: train on the DS1 records found, test on the DS2 records found. When either set is
missing entirely it says so and falls back to ``--folds`` leave-records-out folds over the
records that are there (never a beat-level split). It trains what ``fit`` ships (the int8
network; V and S thresholds 0.5, F's tuned on training-side validation records) and scores
the test beats through the device's loader, beside a LightGBM baseline on the same split; it
prints which records it used and their beat counts.

Exit codes: 0 done, 1 the data cannot support the run, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.beats import BeatSpec
from training.ecg_data import (
    PACED_RECORDS,
    BeatDataset,
    class_counts,
    find_records,
    load_mitdb,
    record_folds,
)

__all__ = ["ecg_main"]

_log = logging.getLogger(__name__)
_EXIT_OK, _EXIT_FAILED, _EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vigil-train ecg", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = ap.add_subparsers(dest="action", required=True)
    fit_p = sub.add_parser("fit", help="train the beat model and add it to a bundle")
    fit_p.add_argument("--data", required=True, help="directory of WFDB records with .atr")
    fit_p.add_argument("--bundle", required=True, help="bundle to extend (verified first)")
    fit_p.add_argument("--out", required=True, help="bundle directory to create (must not exist)")
    fit_p.add_argument("--records", nargs="+", help="train on these records only")
    fit_p.add_argument("--version", help="bundle version (default: the source's + '+ecg')")
    ev_p = sub.add_parser("evaluate", help="inter-patient evaluation (DS1 -> DS2, else folds)")
    ev_p.add_argument("--data", required=True, help="directory of WFDB records with .atr")
    ev_p.add_argument("--folds", type=int, default=5, help="folds when DS1 or DS2 is absent")
    ev_p.add_argument("--out", help="write the report as JSON here")
    for p in (fit_p, ev_p):
        p.add_argument("--epochs", type=int, default=8, help="maximum training epochs")
        p.add_argument("--members", type=int, default=3, help="networks averaged (>= 1)")
        p.add_argument("--seed", type=int, default=0, help="seed of every random step")
        p.add_argument("--leads", type=int, choices=(1, 2), default=2,
                       help="1: lead II (MLII) only; 2 (default): also the chest lead (V1 to "
                            "V6) where a record has one (models/beats.py rule 9)")
    return ap


def _spec(args: argparse.Namespace) -> BeatSpec:
    return BeatSpec(leads=args.leads)


def _usable(names: list[str]) -> list[str]:
    return [n for n in names if n not in PACED_RECORDS]


def _fit(args: argparse.Namespace) -> int:
    from models.bundle import BundleError  # noqa: PLC0415
    from training.beat_bundle import add_beat_model, fit_beat_model  # noqa: PLC0415

    inv = find_records(args.data)
    names = _usable(list(args.records or inv.annotated))
    missing = sorted(set(names) - set(inv.annotated))
    if missing:
        print(f"vigil-train ecg fit: no annotated record {missing} in {args.data}",
              file=sys.stderr)
        return _EXIT_USAGE
    if len(names) < 2:
        print("vigil-train ecg fit: need at least two non-paced annotated records "
              "(one is held out for validation)", file=sys.stderr)
        return _EXIT_FAILED
    spec = _spec(args)
    records = load_mitdb(args.data, names, spec=spec)
    print(f"training on {len(names)} record(s): {' '.join(names)}; leads "
          f"{', '.join(sorted({r.lead for r in records}))}")
    art = fit_beat_model(records, seed=args.seed, epochs=args.epochs, members=args.members,
                         spec=spec)
    try:
        out = add_beat_model(args.bundle, args.out, art, version=args.version)
    except (BundleError, FileExistsError) as exc:
        print(f"vigil-train ecg fit: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    print(f"validation records {' '.join(art.metrics['validation_records'])}; thresholds "
          f"{art.thresholds}; validation figures {art.metrics['int8_at_thresholds']}")
    print(f"wrote {out}")
    return _EXIT_OK


def _splits(args: argparse.Namespace) -> tuple[str, list[tuple[list[str], list[str]]]]:
    inv = find_records(args.data)
    ds1, ds2 = _usable(list(inv.ds1_found)), list(inv.ds2_found)
    print(inv.summary())
    if ds1 and ds2:
        return "DS1 -> DS2 (de Chazal et al. 2004)", [(ds1, ds2)]
    names = _usable(list(inv.annotated))
    absent = "DS2" if ds1 else "DS1"
    if len(names) < args.folds or args.folds < 2:
        raise ValueError(f"{absent} is absent and {len(names)} non-paced annotated record(s) "
                         f"cannot make {args.folds} leave-records-out folds")
    folds = record_folds(class_counts(args.data, names), args.folds)
    how = (f"{absent} absent: {args.folds} leave-records-out folds over the {len(names)} "
           "non-paced annotated records present")
    return how, [([r for r in names if r not in f], list(f)) for f in folds]


def _evaluate(args: argparse.Namespace) -> int:
    from training.beat_bundle import fit_beat_model  # noqa: PLC0415
    from training.beat_eval import (  # noqa: PLC0415
        FoldScores,
        concat_scores,
        lightgbm_probs,
        metrics,
        scores_from_probs,
    )

    try:
        how, splits = _splits(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"vigil-train ecg evaluate: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    print(f"evaluation: {how}")
    used = sorted({r for tr, te in splits for r in tr + te})
    spec = _spec(args)
    data = BeatDataset.from_records(load_mitdb(args.data, used, spec=spec))
    scores: dict[str, list[FoldScores]] = {"beat_model": [], "lightgbm": []}
    labels = []
    report: dict[str, Any] = {"evaluation": how, "splits": []}
    for i, (train_names, test_names) in enumerate(splits):
        t0 = time.perf_counter()
        train, test = data.subset(train_names), data.subset(test_names)
        art = fit_beat_model(load_mitdb(args.data, train_names, spec=spec), seed=args.seed + i,
                             epochs=args.epochs, members=args.members, spec=spec)
        scores["beat_model"].append(art.on_device(test.features).scores)  # as the edge runs it
        scores["lightgbm"].append(
            scores_from_probs(lightgbm_probs(train, test, seed=args.seed + i, n_jobs=2)))
        labels.append(test.aami)
        report["splits"].append({
            "train": train_names, "test": test_names, "test_beats": test.counts(),
            "thresholds": art.thresholds,
            "validation_records": art.metrics["validation_records"],
            "seconds": round(time.perf_counter() - t0, 1),
        })
        print(f"split {i + 1}/{len(splits)}: train {' '.join(train_names)}; test "
              f"{' '.join(test_names)} {test.counts()}; thresholds {art.thresholds}")
    y = np.concatenate(labels)
    rows = {name: metrics(y, concat_scores(parts)) for name, parts in scores.items()}
    report["test_beats"] = {c: int(np.sum(y == k)) for k, c in enumerate("NSVF")}
    report["metrics"] = rows
    print(f"test beats {report['test_beats']} (Q left out)")
    for name, m in rows.items():
        print(f"{name:10} " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return _EXIT_OK


def ecg_main(argv: list[str]) -> int:
    """``vigil-train ecg ...``; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return _fit(args) if args.action == "fit" else _evaluate(args)
    except FileNotFoundError as exc:
        print(f"vigil-train ecg {args.action}: {exc}", file=sys.stderr)
        return _EXIT_USAGE
