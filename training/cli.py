"""`vigil-train`: the workstation side of Vigil.

    vigil-train data fetch NAME --dest DIR [--records R ...] [--base-url URL] [--overwrite]
    vigil-train data list DIR
    vigil-train inspect BUNDLE [--json]
    vigil-train fit [--data DIR] --out BUNDLE [--preset tiny|default] [--seed N] [--reference DIR]
    vigil-train calibrate [--data DIR] --out DIR [--seed N]
    vigil-train evaluate BUNDLE [--data DIR] [--patients N] [--hours H] [--seed S]
                        [--out report.json] [--markdown report.md]
    vigil-train keygen NAME [--force]
    vigil-train sign BUNDLE --key NAME.key
    vigil-train flash BUNDLE --broker HOST[:PORT] (--device ID [--device ID ...] | --all) ...
    vigil-train ecg fit --data DIR --bundle SRC --out DEST ...   (training/ecg_cli.py)
    vigil-train ecg evaluate --data DIR [--folds K] [--out report.json]

`fit` and `calibrate` calibrate on the real numerics found in ``--data`` (MIMIC-III numerics,
BIDMC Numerics), or on the shipped 2 h MIMIC-III excerpt when it is not given.

Exit codes: 0 done, 1 the work failed (network, server, data), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path

from models.bundle import MANIFEST_FILE, BundleError, load_bundle
from training.datasets import DatasetError, discover
from training.fetch import DATABASES, FetchError, fetch

_EXIT_OK, _EXIT_FAILED, _EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vigil-train", description="Vigil training tools")
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = ap.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="datasets").add_subparsers(dest="action", required=True)
    fetch_p = data.add_parser(
        "fetch",
        help="download a PhysioNet database (needs a network)",
        description="Known databases: "
        + "; ".join(f"{d.slug}: {d.title} ({d.use})" for d in DATABASES.values()),
    )
    fetch_p.add_argument("name", help=f"one of: {', '.join(DATABASES)}")
    fetch_p.add_argument("--dest", required=True, help="directory to download into")
    fetch_p.add_argument("--records", nargs="+", help="only these records (default: all)")
    fetch_p.add_argument("--base-url", help="a PhysioNet mirror instead of physionet.org")
    fetch_p.add_argument("--overwrite", action="store_true", help="download complete files again")
    list_p = data.add_parser("list", help="recordings found in a directory, by patient")
    list_p.add_argument("directory")
    inspect_p = sub.add_parser("inspect", help="verify a model bundle and show what it holds")
    inspect_p.add_argument("bundle", help="bundle directory")
    inspect_p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    fit_p = sub.add_parser(
        "fit",
        help="train every model of a vitals bundle and write it (models/BUNDLE.md)",
        description="Calibrate on real numerics, train on a calibrated synthetic cohort split "
        "by patient, and write a verified bundle. Rules: training/fit.py.",
    )
    fit_p.add_argument("--data", help="directory with real numerics (default: shipped excerpt)")
    fit_p.add_argument("--out", required=True, help="bundle directory to create (must not exist)")
    fit_p.add_argument("--preset", default="default", help="tiny (tests, CI) or default")
    fit_p.add_argument("--seed", type=int, help="seed of every random step (default: preset's)")
    fit_p.add_argument("--reference", help="also write the float32 TFLite references here")
    cal_p = sub.add_parser(
        "calibrate",
        help="real-vs-synthetic calibration: calibration.json and calibration.png",
    )
    cal_p.add_argument("--data", help="directory with real numerics (default: shipped excerpt)")
    cal_p.add_argument("--out", required=True, help="directory to write into (created)")
    cal_p.add_argument("--seed", type=int, default=0, help="seed of the synthetic cohort")
    cal_p.add_argument("--patients", type=int, default=20, help="synthetic patients to plot")
    cal_p.add_argument("--hours", type=float, default=6.0, help="hours per synthetic patient")
    ev_p = sub.add_parser(
        "evaluate",
        help="replay held-out patients and real numerics through the edge; alert figures",
        description="Default patients: the bundle's own test split, regenerated (needs the "
        "--data the bundle was fitted with). --patients/--hours/--seed: a fresh cohort with "
        "another seed instead. Real numerics of --data (or the shipped excerpt) are replayed "
        "held piecewise-constant at 1 Hz. Rules: training/evaluate.py.",
    )
    ev_p.add_argument("bundle", help="bundle directory")
    ev_p.add_argument("--data", help="directory with real numerics (default: shipped excerpt)")
    ev_p.add_argument("--patients", type=int, help="fresh synthetic cohort of N patients")
    ev_p.add_argument("--hours", type=float, default=2.0, help="hours per fresh patient")
    ev_p.add_argument("--seed", type=int, default=1, help="seed of the fresh cohort")
    ev_p.add_argument("--onset", type=float, default=5.0, help="alarms.onset_s (s)")
    ev_p.add_argument("--clear", type=float, default=3.0, help="alarms.clear_s (s)")
    ev_p.add_argument("--out", help="write the report as JSON here")
    ev_p.add_argument("--markdown", help="write the report as Markdown here")
    key_p = sub.add_parser("keygen", help="create an Ed25519 key pair for signing bundles")
    key_p.add_argument("name", help="writes NAME.key (private, 0600) and NAME.pub (public)")
    key_p.add_argument("--force", action="store_true", help="overwrite an existing key pair")
    sign_p = sub.add_parser("sign", help="verify a bundle and sign its manifest")
    sign_p.add_argument("bundle", help="bundle directory (manifest.sig is written into it)")
    sign_p.add_argument("--key", required=True, help="private key file (NAME.key)")
    sub.add_parser("flash", add_help=False,
                   help="send a signed bundle to devices over MQTT (vigil-train flash --help)")
    sub.add_parser("ecg", add_help=False,
                   help="beat model: fit into a bundle, evaluate (vigil-train ecg --help)")
    return ap


def _keys(args: argparse.Namespace) -> int:
    from training.signing import generate_keypair, sign_bundle  # noqa: PLC0415 - cryptography

    if args.command == "keygen":
        try:
            private, public, kid = generate_keypair(args.name, overwrite=args.force)
        except FileExistsError as exc:
            print(f"vigil-train keygen: {exc}", file=sys.stderr)
            return _EXIT_USAGE
        print(f"key {kid}: private {private} (keep it secret), public {public} (copy to each "
              "device and list it under [model] trusted_keys)")
        return _EXIT_OK
    try:
        kid = sign_bundle(args.bundle, args.key)
    except ValueError as exc:
        print(f"vigil-train sign: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    except BundleError as exc:
        print(f"vigil-train sign: {args.bundle} refused, not signed: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    print(f"signed {args.bundle} with key {kid}")
    return _EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate, fresh_cohort, split_patients  # noqa: PLC0415
    from training.fit import load_real_numerics  # noqa: PLC0415

    data = Path(args.data) if args.data else None
    try:
        manifest = load_bundle(args.bundle).manifest
        train = []
        if args.patients is not None:
            cohort, what = fresh_cohort(args.patients, args.hours, args.seed, data,
                                        training_seed=manifest.training_data.get("seed"))
        else:
            splits, what = split_patients(args.bundle, data)
            cohort, train = splits["test"], splits["train"]
        real = load_real_numerics(data)
        report = evaluate(args.bundle, cohort=cohort, cohort_description=what,
                          real_patients=list(real.records), real_source=real.source,
                          onset_s=args.onset, clear_s=args.clear, weak_label_train=train)
    except (BundleError, DatasetError, ValueError, OSError) as exc:
        print(f"vigil-train: evaluate failed: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    markdown = report.to_markdown()
    if args.out:
        Path(args.out).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(markdown + "\n", encoding="utf-8")
    print(markdown)
    return _EXIT_OK


def _inspect(path: str, *, as_json: bool) -> int:
    try:
        bundle = load_bundle(path)
    except BundleError as exc:
        print(f"vigil-train: REFUSED {path}: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    m = bundle.manifest
    if as_json:
        print(json.dumps(json.loads((bundle.path / MANIFEST_FILE).read_text()), indent=2))
        return _EXIT_OK
    print(f"bundle {m.bundle_version}  (schema {m.schema_version}, created {m.created})")
    print(f"verified: {len(m.files)} file(s) match their sha256; golden vectors reproduce")
    for name, comp in m.components.items():
        entry = m.files[comp["file"]]
        print(f"  component {name:<12} {comp['kind']:<9} {comp['file']:<24} "
              f"{entry.size:>9,} B  golden atol {m.golden[name]['atol']:.3g}")
    for title, section in (("thresholds", m.thresholds), ("training data", m.training_data),
                           ("metrics", m.metrics), ("requires", m.requires)):
        if section:
            print(f"{title}:")
            for key, value in section.items():
                print(f"  {key:<28} {value}")
    if m.feature_spec:
        print(f"feature spec: {json.dumps(m.feature_spec, sort_keys=True)[:200]}")
    return _EXIT_OK


def _fit(args: argparse.Namespace) -> int:
    from training.fit import PRESETS, fit  # noqa: PLC0415 - TensorFlow only when training

    if args.preset not in PRESETS:
        print(f"vigil-train: unknown preset {args.preset!r}; known: {', '.join(PRESETS)}",
              file=sys.stderr)
        return _EXIT_USAGE
    config = PRESETS[args.preset]
    if args.seed is not None:
        config = config.with_seed(args.seed)
    out = Path(args.out)
    if out.exists():
        print(f"vigil-train: {out} exists; a bundle is never written over another",
              file=sys.stderr)
        return _EXIT_USAGE
    try:
        written = fit(config, Path(args.data) if args.data else None, out,
                      reference_dir=Path(args.reference) if args.reference else None)
    except (DatasetError, ValueError, OSError) as exc:
        print(f"vigil-train: fit failed: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    print(f"bundle written to {written}; check it with: vigil-train inspect {written}")
    return _EXIT_OK


def _calibrate(args: argparse.Namespace) -> int:
    from training.calibration import calibrate, plot_calibration  # noqa: PLC0415
    from training.fit import load_real_numerics  # noqa: PLC0415
    from training.synth import synth_cohort  # noqa: PLC0415

    try:
        real = load_real_numerics(Path(args.data) if args.data else None)
    except (DatasetError, ValueError, OSError) as exc:
        print(f"vigil-train: calibrate failed: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = calibrate(list(real.records))
    (out / "calibration.json").write_text(
        json.dumps({"source": real.source, "files": sorted(p.name for p in real.files),
                    **result.to_dict()}, indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    cohort = synth_cohort(args.patients, args.hours, result, args.seed, event_free_fraction=1.0)
    plot_calibration(
        list(real.records), cohort, out / "calibration.png",
        sample_period_s=result.sample_period_s,
        synth_label=f"synthetic, seed {args.seed}, no events",
    )
    print(f"{real.source}: {len(real.records)} record(s) of {len(real.patients)} patient(s); "
          f"wrote {out / 'calibration.json'} and {out / 'calibration.png'}")
    return _EXIT_OK


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0911 - one return per command
    """Entry point of `vigil-train`; returns the exit code."""
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["flash"]:  # its own flags (training/flash.py)
        from training.flash import flash_main  # noqa: PLC0415 - paho only when flashing

        return flash_main(given[1:])
    if given[:1] == ["ecg"]:  # the beat model (training/ecg_cli.py)
        from training.ecg_cli import ecg_main  # noqa: PLC0415 - TensorFlow only when used

        return ecg_main(given[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "inspect":
        return _inspect(args.bundle, as_json=args.json)
    if args.command == "fit":
        return _fit(args)
    if args.command == "calibrate":
        return _calibrate(args)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command in ("keygen", "sign"):
        return _keys(args)
    if args.action == "fetch":
        if args.name not in DATABASES:
            print(f"vigil-train: unknown database {args.name!r}; known: "
                  f"{', '.join(DATABASES)}", file=sys.stderr)
            return _EXIT_USAGE
        try:
            written = fetch(args.name, args.dest, records=args.records,
                            base_url=args.base_url, overwrite=args.overwrite)
        except FetchError as exc:
            print(f"vigil-train: {exc}", file=sys.stderr)
            return _EXIT_FAILED
        print(f"{args.name}: {len(written)} file(s) written to {args.dest}")
        return _EXIT_OK
    try:
        found = discover(args.directory)
    except DatasetError as exc:
        print(f"vigil-train: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    for rec in found:
        print(f"{rec.patient:<28} {rec.kind:<15} {rec.path}")
    kinds = Counter(r.kind for r in found)
    print(f"{len(found)} recording(s) of {len({r.patient for r in found})} patient(s): "
          + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    return _EXIT_OK
