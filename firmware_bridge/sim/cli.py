"""``vigil-sim``: the Vigil sensor board, emulated on a pseudo-terminal or a serial port.

Prints ``PTY /dev/pts/N`` (flushed) on stdout every time the pseudo-terminal is (re)created;
everything else goes to the log on stderr. Stops cleanly on SIGINT/SIGTERM or after
``--duration`` simulated seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

from firmware_bridge.sim.events import DEFAULT_MAGNITUDE, EVENT_SYNTAX, EventKind, parse_event
from firmware_bridge.sim.profiles import PROFILES
from firmware_bridge.sim.replay import FIXTURES
from firmware_bridge.sim.run import SimRunner
from firmware_bridge.sim.scenario import (
    SCENARIO_DIR,
    ScenarioError,
    SimConfig,
    build_board,
    load_scenario,
)
from firmware_bridge.sim.transport import PtyTransport, SerialTransport, Transport

__all__ = ["main"]

_log = logging.getLogger(__name__)

_EXIT_OK: Final = 0
_EXIT_RUNTIME: Final = 1
_EXIT_USAGE: Final = 2

_MAGNITUDE_UNITS: Final[dict[EventKind, str]] = {
    EventKind.DESATURATION: "SpO2 drop, % points",
    EventKind.TACHYCARDIA: "HR rise, bpm",
    EventKind.BRADYCARDIA: "HR fall, bpm",
    EventKind.TACHYPNOEA: "RR rise, breaths/min",
    EventKind.BRADYPNOEA: "RR fall, breaths/min",
    EventKind.APNOEA: "fraction of breathing stopped, 1 = RR 0",
    EventKind.HYPOTENSION: "systolic fall, mmHg (diastolic 0.6 of it)",
    EventKind.FEVER: "temperature rise, degC (HR +10 bpm/degC)",
    EventKind.PROBE_OFF: "SpO2 invalid, PPG flat, STATUS probe off",
    EventKind.LEAD_OFF: "HR invalid, ECG flat, STATUS lead off",
    EventKind.NOISE_BURST: "noise level, 1 = typical motion artefact",
    EventKind.BOARD_RESET: "board silent for DURATION, then boots (0x00, HELLO seq 0)",
    EventKind.CABLE_UNPLUG: "port gone for DURATION, then back (board reboots)",
}


def _epilog() -> str:
    kinds = "\n".join(
        f"  {k.value:<13} default {DEFAULT_MAGNITUDE[k]:g}: {_MAGNITUDE_UNITS[k]}"
        for k in EventKind
    )
    scenarios = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
    return (
        f"events (--event, repeatable):\n  {EVENT_SYNTAX}\n"
        "  The effect ramps up over RAMP, holds DURATION, ramps down over RAMP. Technical kinds\n"
        "  are on from ONSET for RAMP+DURATION+RAMP.\n"
        f"{kinds}\n\n"
        f"scenarios shipped (--scenario NAME): {scenarios}\n"
        f"fixtures (--replay fixture:NAME): {', '.join(FIXTURES)}\n"
        f"profiles: {', '.join(PROFILES)}\n\n"
        "examples:\n"
        "  vigil-sim --scenario demo --link /tmp/vigil-board\n"
        "  vigil-sim --profile septic --event desaturation@60+30:120=15 --speed 10 --duration 600\n"
        "  vigil-sim --replay fixture:bidmc-01 --event cable_unplug@20:5 --link /tmp/vigil-board\n"
        "  vigil-sim --port /dev/ttyUSB0 --baud 115200 --profile copd"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vigil-sim",
        description="Emulate the Vigil sensor board: HELLO, VITALS, WAVEFORM and STATUS frames "
        "(and PACE when a replayed record has paced beats) over a pseudo-terminal (default) "
        "or a serial port, from a synthetic patient or a "
        "replayed recording, with injectable clinical and technical events.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("patient")
    src.add_argument("--scenario", metavar="FILE", help="TOML scenario (or a shipped name: demo)")
    src.add_argument("--profile", choices=sorted(PROFILES), help="patient profile (adult)")
    src.add_argument("--replay", metavar="PATH", help="WFDB record, BIDMC CSV or fixture:NAME")
    src.add_argument("--replay-start", type=float, metavar="S", help="skip S s of the recording")
    src.add_argument("--no-loop", action="store_true", help="stop when the recording ends")
    src.add_argument(
        "--event", action="append", default=[], metavar="SPEC", help="inject an event (below)"
    )
    src.add_argument("--seed", type=int, help="random seed (0)")
    run = p.add_argument_group("time")
    run.add_argument("--speed", type=float, help="simulated seconds per wall second (1)")
    run.add_argument("--duration", type=float, metavar="S", help="stop after S simulated s")
    link = p.add_argument_group("link")
    link.add_argument("--port", metavar="DEV", help="write to this serial port instead of a pty")
    link.add_argument("--baud", type=int, default=115200, help="serial baud rate (115200)")
    link.add_argument("--link", metavar="PATH", help="symlink kept pointing at the current pty")
    link.add_argument("--path-file", metavar="FILE", help="file that gets the current pty path")
    board = p.add_argument_group("board")
    board.add_argument("--ecg-rate", type=int, metavar="HZ", help="synthetic ECG rate (250)")
    board.add_argument("--ppg-rate", type=int, metavar="HZ", help="synthetic PPG rate (125)")
    board.add_argument("--chunk-ms", type=int, metavar="MS", help="waveform chunk period (200)")
    board.add_argument("--vitals-period-ms", type=int, metavar="MS", help="VITALS period (1000)")
    board.add_argument("--board-id", type=int, metavar="N", help="board id in HELLO")
    info = p.add_argument_group("information")
    info.add_argument("--list-profiles", action="store_true", help="print profiles and exit")
    info.add_argument("-v", "--verbose", action="count", default=0, help="more log (-vv debug)")
    info.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p


def _resolve_scenario(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    shipped = SCENARIO_DIR / f"{name}.toml"
    if shipped.exists():
        return shipped
    raise ScenarioError(f"no scenario file {name!r} (and no shipped scenario of that name)")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Defaults, then the scenario file, then command-line flags (flags win; events add up)."""
    cfg = SimConfig()
    if args.scenario:
        cfg = load_scenario(_resolve_scenario(args.scenario), cfg)
    changes: dict[str, Any] = {}
    for attr, key in (
        ("profile", "profile"),
        ("seed", "seed"),
        ("speed", "speed"),
        ("duration", "duration_s"),
        ("replay", "replay"),
        ("replay_start", "replay_start_s"),
    ):
        value = getattr(args, attr)
        if value is not None:
            changes[key] = value
    if args.no_loop:
        changes["loop"] = False
    board: dict[str, Any] = {}
    for attr, key in (
        ("ecg_rate", "ecg_rate_hz"),
        ("ppg_rate", "ppg_rate_hz"),
        ("chunk_ms", "chunk_ms"),
        ("vitals_period_ms", "vitals_period_ms"),
        ("board_id", "board_id"),
    ):
        value = getattr(args, attr)
        if value is not None:
            board[key] = value
    events = cfg.events + tuple(parse_event(spec) for spec in args.event)
    return dataclasses.replace(
        cfg, **changes, events=events, board=dataclasses.replace(cfg.board, **board)
    )


def _announce(path: str) -> None:
    print(f"PTY {path}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator; returns the process exit code (0 ok, 1 runtime error, 2 usage)."""
    args = _parser().parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.list_profiles:
        for name, prof in PROFILES.items():
            print(f"{name:<8} {prof.description}")
        return _EXIT_OK
    try:
        config = config_from_args(args)
        board = build_board(config)
    except (ValueError, OSError, ImportError) as exc:
        print(f"vigil-sim: error: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    for ev in config.events:
        _log.info("event %s", ev.to_spec())
    transport: Transport
    if args.port:
        transport = SerialTransport(args.port, args.baud)
    else:
        transport = PtyTransport(link=args.link, path_file=args.path_file, on_open=_announce)
    runner = SimRunner(board, transport, speed=config.speed, duration_s=config.duration_s)

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        _log.info("signal %d: stopping", signum)
        runner.stop()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        result = runner.run()
    except OSError as exc:
        print(f"vigil-sim: error: {exc}", file=sys.stderr)
        return _EXIT_RUNTIME
    finally:
        transport.shutdown()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _log.info(
        "done (%s): %.1f s simulated, %d frames, %d boots",
        result.reason,
        result.sim_ms / 1000,
        board.stats.frames_sent,
        board.stats.boots,
    )
    return _EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
