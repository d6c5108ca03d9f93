"""Simulation settings: a TOML scenario file, command-line overrides, and building the board.

Scenario file (every key optional; unknown keys are an error that names them)::

    [sim]
    profile = "adult"          # patient profile (see profiles.py) for the built-in generator
    seed = 7                   # same seed, same patient, same events
    speed = 10.0               # simulated seconds per wall-clock second
    duration_s = 600           # stop after this much simulated time (omit: run until stopped)
    replay = "fixture:mitdb-100"   # or a path: WFDB record or BIDMC CSV (omit: generator)
    replay_start_s = 0.0
    loop = true                # replay: start again at the end

    [board]
    board_id = 1447642929
    ecg_rate_hz = 250          # synthesised waveforms only; replay keeps the recorded rate
    ppg_rate_hz = 125
    vitals_period_ms = 1000
    chunk_ms = 200
    status_period_ms = 4000

    [[events]]
    kind = "desaturation"      # see events.EventKind
    onset_s = 30.0
    ramp_s = 15.0
    duration_s = 60.0
    magnitude = 12.0           # unit depends on the kind (events.DEFAULT_MAGNITUDE)

A relative ``replay`` path is resolved against the scenario file's folder.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from firmware_bridge.sim.board import Board, BoardConfig
from firmware_bridge.sim.events import DEFAULT_DURATION_S, Event, EventKind
from firmware_bridge.sim.generator import SyntheticPatient
from firmware_bridge.sim.model import PatientModel, Source
from firmware_bridge.sim.profiles import get_profile
from firmware_bridge.sim.replay import DEFAULT_MAX_DURATION_S, RecordingSource, load_recording

__all__ = [
    "SCENARIO_DIR",
    "ScenarioError",
    "SimConfig",
    "build_board",
    "build_source",
    "load_scenario",
]

_log = logging.getLogger(__name__)

SCENARIO_DIR: Final = Path(__file__).resolve().parent / "scenarios"
_HISTORY_S: Final = 600  # seconds of generator state kept by a running board
_SIM_KEYS: Final = {
    "profile": str,
    "seed": int,
    "speed": float,
    "duration_s": float,
    "replay": str,
    "replay_start_s": float,
    "loop": bool,
}
_BOARD_KEYS: Final = {
    "board_id": int,
    "ecg_rate_hz": int,
    "ppg_rate_hz": int,
    "vitals_period_ms": int,
    "chunk_ms": int,
    "status_period_ms": int,
}
_EVENT_KEYS: Final = {"kind", "onset_s", "ramp_s", "duration_s", "magnitude"}


class ScenarioError(ValueError):
    """A scenario or setting is wrong; the message names the key and the value."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything that defines a simulation run (what `build_board` and the runner need)."""

    profile: str = "adult"
    seed: int = 0
    speed: float = 1.0
    duration_s: float | None = None
    replay: str | None = None
    replay_start_s: float = 0.0
    loop: bool = True
    events: tuple[Event, ...] = ()
    board: BoardConfig = field(default_factory=BoardConfig)

    def __post_init__(self) -> None:
        """Check ranges so a bad value fails at start-up with its name."""
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ScenarioError(f"speed={self.speed}: must be a number > 0")
        if self.duration_s is not None and not self.duration_s >= 0:
            raise ScenarioError(f"duration_s={self.duration_s}: must be >= 0")
        if self.replay_start_s < 0:
            raise ScenarioError(f"replay_start_s={self.replay_start_s}: must be >= 0")
        b = self.board
        for name in ("ecg_rate_hz", "ppg_rate_hz"):
            value = getattr(b, name)
            if not 1 <= value <= 0xFFFF:
                raise ScenarioError(f"board.{name}={value}: must be 1..65535 Hz")
        for name in ("vitals_period_ms", "chunk_ms", "status_period_ms"):
            value = getattr(b, name)
            if not 1 <= value <= 0xFFFF:
                raise ScenarioError(f"board.{name}={value}: must be 1..65535 ms")
        if not 0 <= b.board_id <= 0xFFFFFFFF:
            raise ScenarioError(f"board.board_id={b.board_id}: must fit 32 bits")
        get_profile(self.profile)


def _typed(section: str, key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ScenarioError(f"{section}.{key}={value!r}: expected {kind.__name__}")
    return value


def _event_from_table(i: int, table: dict[str, Any]) -> Event:
    where = f"events[{i}]"
    unknown = set(table) - _EVENT_KEYS
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key(s) {sorted(unknown)}; known {sorted(_EVENT_KEYS)}"
        )
    if "kind" not in table or "onset_s" not in table:
        raise ScenarioError(f"{where}: 'kind' and 'onset_s' are required")
    try:
        kind = EventKind(str(table["kind"]).replace("-", "_"))
    except ValueError:
        known = ", ".join(k.value for k in EventKind)
        raise ScenarioError(f"{where}.kind={table['kind']!r}: known kinds {known}") from None
    try:
        return Event(
            kind,
            onset_s=_typed(where, "onset_s", table["onset_s"], float),
            duration_s=_typed(
                where, "duration_s", table.get("duration_s", DEFAULT_DURATION_S[kind]), float
            ),
            ramp_s=_typed(where, "ramp_s", table.get("ramp_s", 0.0), float),
            magnitude=_typed(where, "magnitude", table.get("magnitude", math.nan), float),
        )
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def load_scenario(path: str | Path, base: SimConfig | None = None) -> SimConfig:
    """Read a TOML scenario on top of ``base`` (defaults if None); ScenarioError if invalid."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"scenario {p}: {exc}") from None
    unknown = set(doc) - {"sim", "board", "events"}
    if unknown:
        raise ScenarioError(f"scenario {p}: unknown table(s) {sorted(unknown)}")
    cfg = base or SimConfig()
    sim = doc.get("sim", {})
    changes: dict[str, Any] = {}
    for key, value in sim.items():
        if key not in _SIM_KEYS:
            raise ScenarioError(f"scenario {p}: unknown key sim.{key}; known {sorted(_SIM_KEYS)}")
        changes[key] = _typed("sim", key, value, _SIM_KEYS[key])
    replay = changes.get("replay")
    if replay and not replay.startswith("fixture:") and not Path(replay).is_absolute():
        changes["replay"] = str(p.parent / replay)
    board_changes: dict[str, Any] = {}
    for key, value in doc.get("board", {}).items():
        if key not in _BOARD_KEYS:
            raise ScenarioError(
                f"scenario {p}: unknown key board.{key}; known {sorted(_BOARD_KEYS)}"
            )
        board_changes[key] = _typed("board", key, value, _BOARD_KEYS[key])
    events = tuple(_event_from_table(i, t) for i, t in enumerate(doc.get("events", [])))
    return dataclasses.replace(
        cfg,
        **changes,
        events=cfg.events + events,
        board=dataclasses.replace(cfg.board, **board_changes),
    )


def build_source(config: SimConfig) -> Source:
    """The generator or the replayed recording the configuration asks for."""
    if config.replay:
        max_s = DEFAULT_MAX_DURATION_S
        if config.duration_s is not None and not config.loop:
            max_s = max(config.duration_s, 1.0)
        rec = load_recording(config.replay, start_s=config.replay_start_s, max_duration_s=max_s)
        _log.info("replaying %s (%.0f s)", rec.name, rec.duration_s)
        return RecordingSource(rec, loop=config.loop)
    return SyntheticPatient(get_profile(config.profile), seed=config.seed, history_s=_HISTORY_S)


def build_board(config: SimConfig) -> Board:
    """A ready-to-run board for the configuration (source, events, seed, board settings)."""
    model = PatientModel(build_source(config), config.events, seed=config.seed)
    return Board(model, config.board)
