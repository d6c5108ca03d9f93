"""``vigil-sim``: an emulated Vigil sensor board for development, tests and demos.

Layers, from pure to I/O (each importable without the ones below it):

- `events` — injectable clinical/technical events, `apply_events`, `event_labels` (pure; also
  used to label training data), on the `vitals` column layout;
- `generator` / `profiles` / `synth` — the built-in synthetic patient and ECG/PPG synthesis;
- `replay` — WFDB and BIDMC recordings (``wfdb`` imported lazily) and the shipped fixtures;
- `model.PatientModel` — source + events -> readings, waveforms, status at any time;
- `board.Board` — sans-I/O board: ``advance(t_ms) -> bytes``, ``receive(bytes)``;
- `transport` / `run.SimRunner` — the pty or serial port and the clocked loop; `cli.main`.

Quick start in-process (what the tests do)::

    board = build_board(SimConfig(profile="adult", seed=1, events=(parse_event("lead_off@5:3"),)))
    transport = PtyTransport(link="/tmp/vigil-board")
    transport.open()            # the slave path exists from here: transport.path
    runner = SimRunner(board, transport, speed=1.0, duration_s=30, clock=ManualClock())
    runner.start().join()       # or runner.run() in the current thread
"""

from firmware_bridge.sim.board import Board, BoardConfig, BoardStats
from firmware_bridge.sim.events import (
    Event,
    EventKind,
    apply_events,
    event_labels,
    parse_event,
)
from firmware_bridge.sim.generator import SyntheticPatient
from firmware_bridge.sim.model import PatientModel
from firmware_bridge.sim.profiles import PROFILES, PatientProfile, get_profile
from firmware_bridge.sim.replay import Recording, RecordingSource, load_recording
from firmware_bridge.sim.run import ManualClock, RunResult, SimRunner, SystemClock
from firmware_bridge.sim.scenario import SimConfig, build_board, load_scenario
from firmware_bridge.sim.transport import PtyTransport, SerialTransport
from firmware_bridge.sim.vitals import Vital

__all__ = [
    "PROFILES",
    "Board",
    "BoardConfig",
    "BoardStats",
    "Event",
    "EventKind",
    "ManualClock",
    "PatientModel",
    "PatientProfile",
    "PtyTransport",
    "Recording",
    "RecordingSource",
    "RunResult",
    "SerialTransport",
    "SimConfig",
    "SimRunner",
    "SyntheticPatient",
    "SystemClock",
    "Vital",
    "apply_events",
    "build_board",
    "event_labels",
    "get_profile",
    "load_recording",
    "load_scenario",
    "parse_event",
]
