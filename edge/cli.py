"""``vigil-edge``: run the edge runtime, check a configuration, watch alerts.

    vigil-edge run [--config FILE] [--serial [BED=]PATH]... [--broker HOST[:PORT]]
                   [--device-id ID] [--log-level LEVEL]
    vigil-edge config --check FILE
    vigil-edge config --print-default
    vigil-edge alerts --broker HOST[:PORT] [--device ID] [--topic-prefix P] [--json]
                      [--count N] [--timeout S] [--client-id ID]

Exit codes: 0 success; 1 invalid configuration (``config --check``) or ``--count`` not reached
before ``--timeout`` (``alerts``); 2 usage error or a configuration ``run`` cannot start with.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from edge.alerts import run_alerts
from edge.config import ConfigError, default_config_text, load_config
from edge.runtime import Runtime

__all__ = ["main"]

_log = logging.getLogger("edge.cli")  # also under `python -m edge.cli`

_EXIT_OK = 0
_EXIT_INVALID = 1
_EXIT_USAGE = 2


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
    return parser


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

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Runtime(config).run(stop)
    return _EXIT_OK


def _cmd_alerts(args: argparse.Namespace) -> int:
    _setup_logging("WARNING")
    return run_alerts(
        args.broker,
        device=args.device,
        topic_prefix=args.topic_prefix,
        as_json=args.json,
        count=args.count,
        timeout_s=args.timeout,
        client_id=args.client_id,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vigil-edge`` console script; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    if args.command == "config":
        return _cmd_config(args)
    if args.command == "run":
        return _cmd_run(args)
    return _cmd_alerts(args)


if __name__ == "__main__":
    sys.exit(main())
