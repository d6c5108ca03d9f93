"""``vigil-edge``: run the edge runtime, check a configuration, watch alerts.

    vigil-edge run [--config FILE] [--serial [BED=]PATH]... [--broker HOST[:PORT]]
                   [--device-id ID] [--log-level LEVEL]
    vigil-edge config --check FILE
    vigil-edge config --print-default
    vigil-edge alerts --broker HOST[:PORT] [--device ID] [--topic-prefix P] [--json]
                      [--count N] [--timeout S] [--client-id ID]
    vigil-edge assess [--config FILE | --bundle DIR] --hr N --spo2 N --rr N --sbp N [--dbp N]
                      --temp N [--glucose N] [--glucose-unit mmol/L|mg/dL] [--json]
    vigil-edge ack --broker HOST[:PORT] --device ID --bed BED [--id ALERT] [--timeout S]
    vigil-edge silence --broker HOST[:PORT] --device ID --bed BED --seconds N [--timeout S]
    vigil-edge status --broker HOST[:PORT] --device ID [--json] [--timeout S]
    vigil-edge model [--config FILE] list | install PATH | rollback
    vigil-edge reading --broker HOST[:PORT] --device ID --bed BED [--consciousness A|C|V|P|U]
                       [--oxygen yes|no] [--hr N] [--spo2 N] [--rr N] [--sbp N] [--dbp N]
                       [--temp N] [--age YEARS] [--glucose N [--glucose-unit mmol/L|mg/dL]]
                       [--timeout S]
    vigil-edge reload --broker HOST[:PORT] --device ID [--timeout S]

Exit codes: 0 success; 1 invalid configuration (``config --check``), ``--count`` not reached
before ``--timeout`` (``alerts``), or no usable bundle (``assess``: none configured, invalid
configuration, bundle refused); 2 usage error, a configuration ``run`` cannot start with, or a
manual value that is not a number or outside its plausible range (``assess``). ``ack``,
``silence``, ``reading`` and ``reload``: 0 applied, 1 refused by the edge (the reason is
printed), 2 a bad flag or value (checked before sending), 3 no answer (broker unreachable,
edge not running).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType

from edge.alerts import parse_broker, run_alerts
from edge.assess import GLUCOSE_UNITS, AssessError, assess, format_assessment, parse_manual
from edge.commands import COMMANDS, CommandError
from edge.config import ConfigError, default_config_text, load_config
from edge.remote import (
    CommandTimeoutError,
    add_security_flags,
    fetch_status,
    format_status,
    security_from_args,
    send_command,
)
from edge.runtime import Runtime
from models.bundle import BundleError, bundle_location, load_bundle
from models.tflite import ModelError

__all__ = ["main"]

_log = logging.getLogger("edge.cli")  # also under `python -m edge.cli`

_EXIT_OK = 0
_EXIT_INVALID = 1
_EXIT_USAGE = 2
_EXIT_NO_ANSWER = 3


_READING_FLAGS = (  # flag, command field, help (`vigil-edge reading`)
    ("--hr", "hr_bpm", "heart rate, bpm"),
    ("--spo2", "spo2_pct", "SpO2, %%"),
    ("--rr", "rr_per_min", "respiration rate, /min"),
    ("--sbp", "sbp_mmhg", "systolic blood pressure (cuff), mmHg"),
    ("--dbp", "dbp_mmhg", "diastolic blood pressure (cuff), mmHg"),
    ("--temp", "temp_c", "temperature, degC"),
    ("--age", "age_years", "patient age, years (named as a band in alert explanations)"),
)

_ASSESS_FIELDS = (  # flag, help, required (`vigil-edge assess`)
    ("--hr", "heart rate, bpm", True),
    ("--spo2", "SpO2, %%", True),
    ("--rr", "respiratory rate, /min", True),
    ("--sbp", "systolic blood pressure, mmHg", True),
    ("--dbp", "diastolic blood pressure, mmHg (MAP is derived from it)", False),
    ("--temp", "temperature, degC", True),
    ("--glucose", "blood glucose, mmol/L or see --glucose-unit (not used by a vitals bundle)",
     False),
)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil-edge",
        description="Vigil edge runtime: serial boards in, clinical alerts out over MQTT.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="read the boards, detect, publish over MQTT")
    run.add_argument(
        "--config", metavar="FILE", help="TOML configuration (default: packaged default.toml)"
    )
    run.add_argument(
        "--serial",
        metavar="[BED=]PATH",
        action="append",
        default=[],
        help="serial port of a bed; PATH alone when exactly one bed is configured (repeatable)",
    )
    run.add_argument("--broker", metavar="HOST[:PORT]", help="MQTT broker (overrides [mqtt])")
    run.add_argument("--device-id", metavar="ID", help="device id (overrides device.id)")
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold (default INFO)",
    )

    cfg = sub.add_parser("config", help="validate or show a configuration")
    group = cfg.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", metavar="FILE", help="validate FILE: print OK or every error")
    group.add_argument(
        "--print-default", action="store_true", help="print the documented default configuration"
    )

    alerts = sub.add_parser("alerts", help="print alerts for a nurse-station terminal")
    alerts.add_argument("--broker", metavar="HOST[:PORT]", required=True, help="MQTT broker")
    add_security_flags(alerts)
    alerts.add_argument("--device", metavar="ID", default="+", help="one device (default: all)")
    alerts.add_argument("--topic-prefix", metavar="P", default="vigil", help="default: vigil")
    alerts.add_argument("--json", action="store_true", help="one JSON object per line")
    alerts.add_argument("--count", metavar="N", type=int, help="exit after N distinct alerts")
    alerts.add_argument("--timeout", metavar="S", type=float, help="exit after S seconds")
    alerts.add_argument(
        "--client-id",
        metavar="ID",
        help="use a persistent session under this id (alerts missed while away are delivered)",
    )

    manual = sub.add_parser(
        "assess", help="risk of deterioration for manually entered vitals, with its factors"
    )
    source = manual.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="use the bundle of [model] bundle")
    source.add_argument("--bundle", metavar="DIR", help="use this vitals bundle directory")
    for flag, what, required in _ASSESS_FIELDS:
        # Text, not type=float: edge.assess names the flag and the plausible range on errors.
        manual.add_argument(flag, metavar="N", required=required, help=what)
    manual.add_argument(
        "--glucose-unit", default=GLUCOSE_UNITS[0], choices=GLUCOSE_UNITS,
        help=f"unit of --glucose (default {GLUCOSE_UNITS[0]})",
    )
    manual.add_argument("--json", action="store_true", help="one JSON object")

    _add_remote_parsers(sub)
    model = sub.add_parser("model", help="the model store on this device: list, install, roll back")
    model.add_argument("--config", metavar="FILE",
                       help="the edge's configuration ([model] store_dir, trusted_keys, beds)")
    actions = model.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="installed bundles and which one runs")
    install = actions.add_parser(
        "install", help="verify, stage, self-test and switch to a signed bundle (e.g. on USB)")
    install.add_argument("path", help="bundle directory")
    actions.add_parser("rollback", help="back to the previous bundle")
    return parser


def _add_remote_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``status`` and the commands sent to a running edge over MQTT."""
    status = sub.add_parser("status", help="show an edge's health from its retained status")
    status.add_argument("--broker", metavar="HOST[:PORT]", required=True, help="MQTT broker")
    add_security_flags(status)
    status.add_argument("--device", metavar="ID", required=True, help="the edge's device id")
    status.add_argument("--topic-prefix", metavar="P", default="vigil", help="default: vigil")
    status.add_argument("--timeout", metavar="S", type=float, default=5.0)
    status.add_argument("--json", action="store_true", help="the status object as JSON")

    for name, what in (("ack", "acknowledge a bed's alerts (or one, by --id)"),
                       ("silence", "pause the audio of a bed's active alerts"),
                       ("reading", "send manual readings of a bed (they enter NEWS2)"),
                       ("reload", "make the edge re-read its configuration file (as SIGHUP)")):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("--broker", metavar="HOST[:PORT]", required=True, help="MQTT broker")
        add_security_flags(cmd)
        cmd.add_argument("--device", metavar="ID", required=True, help="the edge's device id")
        cmd.add_argument("--topic-prefix", metavar="P", default="vigil", help="default: vigil")
        cmd.add_argument("--timeout", metavar="S", type=float, default=5.0,
                         help="seconds to wait for the edge's answer (default 5)")
        if name != "reload":
            cmd.add_argument("--bed", required=True, help="bed id")
        if name == "ack":
            cmd.add_argument("--id", metavar="ALERT", help="one alert id (default: all)")
        elif name == "silence":
            cmd.add_argument("--seconds", metavar="N", type=float, required=True,
                             help="pause length, s (at most the edge's alarms.max_silence_s)")
        elif name == "reading":
            for flag, field, unit in _READING_FLAGS:
                cmd.add_argument(flag, metavar="N", type=float, dest=field, help=unit)
            cmd.add_argument("--consciousness", choices=list("ACVPU"),
                             help="ACVPU: Alert, new Confusion, Voice, Pain, Unresponsive")
            cmd.add_argument("--oxygen", choices=["yes", "no"],
                             help="supplemental oxygen (NEWS2 scores 2 for yes)")
            cmd.add_argument("--glucose", metavar="N", type=float, help="blood glucose")
            cmd.add_argument("--glucose-unit", default=GLUCOSE_UNITS[0], choices=GLUCOSE_UNITS,
                             help=f"unit of --glucose (default {GLUCOSE_UNITS[0]})")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _cmd_config(args: argparse.Namespace) -> int:
    if args.print_default:
        print(default_config_text(), end="")
        return _EXIT_OK
    try:
        config = load_config(args.check)
    except ConfigError as exc:
        print(f"{args.check}: {len(exc.errors)} error(s)")
        for error in exc.errors:
            print(f"  {error}")
        return _EXIT_INVALID
    beds = ", ".join(b.id for b in config.beds)
    print(f"OK {args.check}: device {config.device.id}, beds {beds}")
    return _EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    try:
        config = load_config(
            args.config, serial=args.serial, broker=args.broker, device_id=args.device_id
        )
    except ConfigError as exc:
        for error in exc.errors:
            _log.error("configuration: %s", error)
        return _EXIT_USAGE
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    # Before the runtime is built (loading a model takes a second): a SIGTERM then still
    # stops cleanly, at the first tick.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runtime = Runtime(config, reload_config=lambda: load_config(
        args.config, serial=args.serial, broker=args.broker, device_id=args.device_id
    ))
    # Only queues the request: the runtime thread reloads between two ticks (edge/reload.py).
    signal.signal(signal.SIGHUP, lambda signum, frame: runtime.request_reload())
    runtime.run(stop)
    return _EXIT_OK


def _cmd_alerts(args: argparse.Namespace) -> int:
    _setup_logging("WARNING")
    try:
        security = security_from_args(args)
    except ValueError as exc:
        print(f"vigil-edge alerts: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    return run_alerts(
        args.broker,
        security=security,
        device=args.device,
        topic_prefix=args.topic_prefix,
        as_json=args.json,
        count=args.count,
        timeout_s=args.timeout,
        client_id=args.client_id,
    )


def _cmd_assess(args: argparse.Namespace) -> int:
    _setup_logging("WARNING")
    raw = {f[2:]: getattr(args, f[2:]) for f, _, _ in _ASSESS_FIELDS
           if getattr(args, f[2:]) is not None}
    raw["glucose_unit"] = args.glucose_unit
    try:
        manual = parse_manual(raw)
    except AssessError as exc:
        print(f"vigil-edge assess: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    path = args.bundle
    if path is None:
        try:
            path = load_config(args.config).model.bundle
        except ConfigError as exc:
            where = args.config or "the packaged default configuration"
            print(f"vigil-edge assess: {where}: {'; '.join(exc.errors)}", file=sys.stderr)
            return _EXIT_INVALID
        if not path:
            where = f"{args.config} sets" if args.config else "the packaged default sets"
            print(
                f"vigil-edge assess: no model bundle: {where} [model] bundle = \"\" (fixed "
                "limits only); pass --bundle DIR or a --config FILE that names one",
                file=sys.stderr,
            )
            return _EXIT_INVALID
    try:
        result = assess(load_bundle(bundle_location(path)), manual)
    except (BundleError, ModelError, OSError, ValueError) as exc:
        print(f"vigil-edge assess: bundle {path} refused: {exc}", file=sys.stderr)
        return _EXIT_INVALID
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_assessment(result), end="")
    return _EXIT_OK


def _reading_body(args: argparse.Namespace) -> dict[str, object]:
    body: dict[str, object] = {
        field: getattr(args, field) for _, field, _ in _READING_FLAGS
        if getattr(args, field) is not None
    }
    if args.consciousness:
        body["consciousness"] = args.consciousness
    if args.oxygen:
        body["on_oxygen"] = args.oxygen == "yes"
    if args.glucose is not None:
        body["glucose"] = args.glucose
        body["glucose_unit"] = args.glucose_unit
    return body


def _cmd_remote(args: argparse.Namespace) -> int:
    _setup_logging("WARNING")
    body: dict[str, object] = {} if args.command == "reload" else {"bed": args.bed}
    if args.command == "ack" and args.id:
        body["id"] = args.id
    if args.command == "silence":
        body["seconds"] = args.seconds
    if args.command == "reading":
        body.update(_reading_body(args))
    try:
        host, port = parse_broker(args.broker)
        result = send_command(host, port, topic_prefix=args.topic_prefix, device=args.device,
                              name=args.command, body=body, timeout_s=args.timeout,
                              security=security_from_args(args))
    except (ValueError, CommandError) as exc:
        print(f"vigil-edge {args.command}: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    except CommandTimeoutError as exc:
        print(f"vigil-edge {args.command}: {exc}", file=sys.stderr)
        return _EXIT_NO_ANSWER
    ok = bool(result.get("ok"))
    print(f"{'OK' if ok else 'REFUSED'} {args.command} on {args.device}: {result.get('detail')}",
          file=sys.stdout if ok else sys.stderr)
    return _EXIT_OK if ok else _EXIT_INVALID


def _cmd_status(args: argparse.Namespace) -> int:
    _setup_logging("WARNING")
    try:
        host, port = parse_broker(args.broker)
        status = fetch_status(host, port, topic_prefix=args.topic_prefix, device=args.device,
                              timeout_s=args.timeout, security=security_from_args(args))
    except ValueError as exc:
        print(f"vigil-edge status: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    except CommandTimeoutError as exc:
        print(f"vigil-edge status: {exc}", file=sys.stderr)
        return _EXIT_NO_ANSWER
    print(json.dumps(status, indent=2) if args.json else format_status(args.device, status),
          end="\n" if args.json else "")
    return _EXIT_OK if status.get("state") == "online" else _EXIT_INVALID


def _cmd_model(args: argparse.Namespace) -> int:
    """``vigil-edge model``: the store's files are changed here; a running edge follows the
    switch within a few seconds (edge/activation.py)."""
    from edge.learned import check_bundle  # noqa: PLC0415 - loads TFLite only when needed
    from edge.modelstore import InstallError, ModelStore  # noqa: PLC0415
    from models.signing import load_public_key  # noqa: PLC0415

    _setup_logging("WARNING")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"vigil-edge model: configuration: {error}", file=sys.stderr)
        return _EXIT_USAGE
    m = config.model
    if not m.store_dir:
        print("vigil-edge model: [model] store_dir is not set: there is no model store",
              file=sys.stderr)
        return _EXIT_USAGE
    store = ModelStore(m.store_dir, keep=m.keep, max_trial_boots=m.max_trial_boots)
    try:
        if args.action == "install":
            keys = [load_public_key(k) for k in m.trusted_keys]
            done = store.install(args.path, trusted=keys,
                                 check=lambda p: check_bundle(p, [b.id for b in config.beds]))
            what = "already active" if done.before == done.bundle_id else "installed"
            was = done.before or "the configured bundle"
            print(f"{what} {done.bundle_id} (version {done.version}; was {was}); a running edge "
                  "switches to it within a few seconds")
            return _EXIT_OK
        if args.action == "rollback":
            ptr = store.rollback("asked with vigil-edge model rollback")
            print(f"now active: {ptr.active or 'the configured bundle (' + m.bundle + ')'}")
            return _EXIT_OK
    except (InstallError, ValueError) as exc:
        print(f"vigil-edge model {args.action}: refused: {exc}", file=sys.stderr)
        return _EXIT_INVALID
    ptr = store.pointer()
    print(f"active: {ptr.active or 'the configured bundle (' + m.bundle + ')'}"
          + (f" [{ptr.state}]" if ptr.active else "") + (f"; {ptr.reason}" if ptr.reason else ""))
    for bid in store.installed():
        mark = "*" if bid == ptr.active else ("previous" if bid in ptr.previous else "")
        print(f"  {mark:<9}{bid}")
    return _EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vigil-edge`` console script; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    if args.command in COMMANDS:
        return _cmd_remote(args)
    handlers = {"config": _cmd_config, "run": _cmd_run, "assess": _cmd_assess,
                "status": _cmd_status, "model": _cmd_model, "alerts": _cmd_alerts}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
