"""Memory of the edge process after a long accelerated run (24 simulated hours) against its start.

What runs, in this process, on an injected fake clock so that a simulated day takes minutes:
the real `edge.runtime.Runtime` loop (`Runtime.run`, unchanged) configured from the packaged
edge/default.toml. So: the shipped model bundle (``[model] bundle = "default"``, i.e.
models/bundles/default, artefact gate on), the fixed-limit, technical and NEWS2 detectors, the
alarm manager, the vitals / alert / state / news2 / status payloads, the outbox journalled to
SQLite in a temporary directory, and `edge.mqtt.MqttPublisher` publishing to a real mosquitto on
127.0.0.1 (tests/mosquitto.py). A subscriber in a child process drains every topic and checks
that every alert event arrived. Changed from the default: ``--beds`` beds,
``alarms.latch_high = true`` and ``alarms.escalate_after_s = 300`` (more alarm-manager paths).

Frames: each bed is a simulator board (`firmware_bridge.sim.scenario.build_board`: the
synthetic generator with a patient profile, plus injected events). The boards run in a child
process, as ``vigil-sim`` does on a pty, and stream each simulated second's bytes through a
pipe; this process decodes them with the codec's `Decoder` and hands frames and link changes to
the runtime's reader callbacks, as `SerialReader` does. VITALS at 1 Hz, STATUS on flag changes
and every 4 s, HELLO after each boot. The first ``--waveform-beds`` beds also send ECG (250 Hz)
and PPG (125 Hz) in one chunk a second (boards default to five; a third of the simulator's
cost), which also gives the probe-off / lead-off STATUS flags; the other beds are vitals-only
boards, where a probe off only blanks SpO2. Events per bed, random but seeded: a clinical event
(desaturation, tachycardia, apnoea, hypotension, ...) every ``--event-every`` minutes on
average, 1-10 min long; probe off or lead off every 30 min and a noise burst every 90 min on
average; a board reset every ~6 h and a cable unplug every ~8 h (link lost). A nurse client
sends over MQTT an ``ack`` for each bed every 10 simulated minutes, a ``silence`` every 2 h and
a manual ``reading`` every 4 h.

Driving: the `Notifier` given to the runtime has a watchdog interval of 0, so the loop pings it
once per iteration; each ping advances the clock one second and delivers that second's bytes.
The loop runs one iteration per simulated second and stops by itself after ``--hours`` (plus
the tracing tail); a wall-clock limit (``--max-wall``) stops it early and says so. When paho's
outgoing queue holds more than `_BACKLOG_HIGH` messages the driver waits for it to drain (in
real time the broker has a whole second per step); the time waited is reported.

Measured, after a ``gc.collect()``, every ``--sample-minutes`` simulated minutes: VmRSS and
RssAnon (/proc/self/status), gc-tracked objects, alerts, alarm-manager tracks, outbox, journal
rows and paho's queue; gc object counts by type one sample after the baseline and at the end;
the sizes of every container that could grow, at the end. Then a tail of ``--trace-hours``
(default 0.5) with tracemalloc on (4 frames, ~5x slower, so not during the measured run):
live allocations at the end of the tail against half-way, grouped by the most recent line of
this repository, show what keeps growing in an already aged process.

Baseline (same run): the sample at the end of the warm-up (``--warmup-hours``, default the first
simulated hour: bundle loaded, every feature window full, first alerts raised and delivered).
Reported: end / baseline RSS, and the RSS slope over the second half of the run in kB per
simulated hour, against the first half (warm-up settles, a leak keeps climbing).

Run: .venv/bin/python benchmarks/edge_memory.py [--hours 24] [--beds 4] [--json PATH]
(needs mosquitto; the defaults take about 7 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.config import EdgeConfig, default_config_text, parse_config
from edge.journal import FILE_NAME as JOURNAL_FILE
from edge.learned import LearnedDetector
from edge.runtime import Runtime
from edge.systemd import Notifier
from firmware_bridge.codec import Decoder, DecoderStats
from firmware_bridge.frames import Frame
from tests.mosquitto import MosquittoBroker, find_mosquitto

if TYPE_CHECKING:  # the simulator runs in a child process: not imported by the measured one
    from firmware_bridge.sim.board import Board
    from firmware_bridge.sim.events import Event, EventKind

_log = logging.getLogger("edge_memory")

HOUR_S: Final = 3600
_PORT_PREFIX: Final = "sim:bed"
DEVICE_ID: Final = "bench-mem"
_PROFILES: Final = ("adult", "elderly", "copd", "septic")
_BACKLOG_HIGH: Final = 200
"""paho messages (QoS 1 waiting + packets not yet written) above which the driver waits."""
_BACKLOG_LOW: Final = 20
_EVENT_MARGIN_S: Final = 5
_CONNECT_TIMEOUT_S: Final = 10.0
_ACK_EVERY_S: Final = 600
_SILENCE_EVERY_S: Final = 2 * HOUR_S
_READING_EVERY_S: Final = 4 * HOUR_S
_TOP: Final = 10
_MIB: Final = 1024.0
_TRACE_FRAMES: Final = 4
_RECORD: Final = struct.Struct("<BBI")
"""Board stream record header: bed index, port up, byte count."""
_SIM_SITE: Final = "(this benchmark's driver, all lines)"


# ------------------------------------------------------------------------------ measurements


def proc_memory_kb() -> tuple[int, int]:
    """(VmRSS, RssAnon) of this process in kB, from /proc/self/status."""
    fields: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields.get("RssAnon", 0)


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (hour, value) points; None for fewer than two hours."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx


def type_counts() -> Counter[str]:
    """gc-tracked objects by type (module.qualname)."""
    return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def paho_queues(runtime: Runtime) -> tuple[int, int, int]:
    """(QoS>0 messages held, packets not yet written, incoming QoS 2) of the edge's paho client.

    Private paho state (2.2): the client exposes no queue length."""
    client = runtime.publisher._client
    return len(client._out_messages), len(client._out_packet), len(client._in_messages)


@dataclass(slots=True)
class Sample:
    """Memory and container sizes at one simulated time (after gc.collect())."""

    hour: float
    wall_s: float
    rss_kb: int
    anon_kb: int
    traced_kb: float | None  # tracemalloc's current traced size (None: not tracing)
    gc_objects: int
    alert_events: int  # alert messages pushed to the outbox so far
    active_alerts: int
    alarm_tracks: int
    outbox: int
    journal_rows: int
    paho_backlog: int


# ------------------------------------------------------------------------------ simulation


class FakeClock:
    """`edge.runtime.Clock` of the benchmark: monotonic = simulated seconds since start."""

    def __init__(self, epoch_s: float) -> None:
        self.now = 0.0
        self._epoch_s = epoch_s

    def monotonic(self) -> float:
        """Simulated seconds."""
        return self.now

    def time(self) -> float:
        """Wall-clock epoch of the start plus simulated seconds."""
        return self._epoch_s + self.now


def _poisson(
    rng: random.Random, kinds: Sequence[EventKind], *, mean_s: float,
    duration_s: tuple[float, float], ramp_s: tuple[float, float], end_s: float,
) -> list[Event]:
    from firmware_bridge.sim.events import Event  # noqa: PLC0415

    out: list[Event] = []
    t = 120.0 + rng.expovariate(1.0 / mean_s)
    while t < end_s - 60.0:
        out.append(Event(rng.choice(kinds), t, rng.uniform(*duration_s), rng.uniform(*ramp_s)))
        t += rng.expovariate(1.0 / mean_s)
    return out


def bed_events(seed: int, duration_s: float, event_every_min: float) -> list[Event]:
    """One bed's injected events over the run (see the module docstring), sorted by onset."""
    from firmware_bridge.sim.events import CLINICAL_KINDS, EventKind  # noqa: PLC0415

    rng = random.Random(seed)
    events = [
        *_poisson(rng, sorted(CLINICAL_KINDS), mean_s=event_every_min * 60.0,
                  duration_s=(60.0, 600.0), ramp_s=(10.0, 90.0), end_s=duration_s),
        *_poisson(rng, [EventKind.PROBE_OFF, EventKind.LEAD_OFF], mean_s=HOUR_S / 2,
                  duration_s=(10.0, 60.0), ramp_s=(0.0, 0.0), end_s=duration_s),
        *_poisson(rng, [EventKind.NOISE_BURST], mean_s=1.5 * HOUR_S,
                  duration_s=(5.0, 20.0), ramp_s=(0.0, 0.0), end_s=duration_s),
        *_poisson(rng, [EventKind.BOARD_RESET], mean_s=6 * HOUR_S,
                  duration_s=(2.0, 20.0), ramp_s=(0.0, 0.0), end_s=duration_s),
        *_poisson(rng, [EventKind.CABLE_UNPLUG], mean_s=8 * HOUR_S,
                  duration_s=(5.0, 30.0), ramp_s=(0.0, 0.0), end_s=duration_s),
    ]
    return sorted(events, key=lambda e: e.onset_s)


class BoardFeed:
    """One bed's port as the runtime's reader interface (`SerialReader`'s) sees it: the bytes
    of each simulated second are decoded here and handed to the runtime's callbacks, with the
    link changes, on the calling (runtime) thread."""

    def __init__(self, on_frame: Callable[[Frame], None], on_link: Callable[[bool], None]) -> None:
        self._decoder = Decoder()
        self._on_frame = on_frame
        self._on_link = on_link
        self._link: bool | None = None

    @property
    def stats(self) -> DecoderStats:
        """The decoder's link counters."""
        return self._decoder.stats

    @property
    def connected(self) -> bool:
        """The simulated port exists (not unplugged)."""
        return bool(self._link)

    def start(self) -> None:
        """Nothing to start: the driver delivers the bytes."""

    def stop(self, timeout: float = 2.0) -> None:
        """Nothing to stop."""
        del timeout

    def deliver(self, up: bool, data: bytes) -> int:
        """One simulated second: the port is ``up`` and the board sent ``data``; frames."""
        if up and self._link is not True:
            self._on_link(True)
        frames = self._decoder.feed(data)
        for frame in frames:
            self._on_frame(frame)
        if not up and self._link is not False:
            self._on_link(False)
        self._link = up
        return len(frames)


def make_boards(opts: Options) -> list[tuple[Board, list[Event]]]:
    """One simulator board per bed with its events (profiles cycle through `_PROFILES`)."""
    from firmware_bridge.frames import Sensor  # noqa: PLC0415
    from firmware_bridge.sim.board import BoardConfig  # noqa: PLC0415
    from firmware_bridge.sim.scenario import SimConfig, build_board  # noqa: PLC0415

    boards: list[tuple[Board, list[Event]]] = []
    duration = (opts.hours + opts.trace_hours) * HOUR_S
    for i in range(opts.beds):
        events = bed_events(opts.seed * 1000 + i, duration, opts.event_every_min)
        # One waveform chunk a second (boards default to five): a third of the simulator's cost.
        board = build_board(SimConfig(profile=_PROFILES[i % len(_PROFILES)],
                                      seed=opts.seed * 1000 + i, events=tuple(events),
                                      board=BoardConfig(chunk_ms=1000)))
        if i >= opts.waveform_beds:  # a vitals-only board: no ECG / PPG sensors
            source = board.model.source
            source.sensors = source.sensors & ~(Sensor.ECG | Sensor.PPG)
        boards.append((board, events))
    return boards


def _boards_main(raw_options: str) -> None:
    """Child process: every bed's board, second by second, as records on stdout."""
    opts = Options(**json.loads(raw_options))
    boards = make_boards(opts)
    out = sys.stdout.buffer
    last = round((opts.hours + opts.trace_hours + 1.0) * HOUR_S)  # bounded; killed before
    try:
        for t in range(1, last + 1):
            if (t - 1) % HOUR_S == 0:
                # The patient model scans all its events for every second; a day of them would
                # cost more than the edge itself. Resets and unplugs were taken from the full
                # list when each board was built.
                lo, hi = t - 1 - _EVENT_MARGIN_S, t - 1 + HOUR_S + _EVENT_MARGIN_S
                for board, events in boards:
                    board.model.events = tuple(
                        e for e in events if e.onset_s < hi and e.end_s > lo)
            for i, (board, _) in enumerate(boards):
                data = board.advance(t * 1000)
                out.write(_RECORD.pack(i, board.link_up, len(data)))
                out.write(data)
        out.flush()
    except BrokenPipeError:
        pass


class BoardStream:
    """The boards run in a child process (this file with ``--boards``), like a board
    simulator on a pty: the edge process reads each second's bytes from a pipe."""

    def __init__(self, opts: Options) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--boards", json.dumps(asdict(opts))],
            stdout=subprocess.PIPE, bufsize=1 << 20,
        )
        assert self._proc.stdout is not None
        self._out = self._proc.stdout
        self._beds = opts.beds

    def read_second(self) -> list[tuple[int, bool, bytes]]:
        """(bed index, port up, bytes) of every bed for the next simulated second."""
        out = []
        for _ in range(self._beds):
            head = self._out.read(_RECORD.size)
            if len(head) < _RECORD.size:
                raise RuntimeError("the board simulator stopped early")
            bed, up, n = _RECORD.unpack(head)
            out.append((bed, bool(up), self._out.read(n) if n else b""))
        return out

    def close(self) -> None:
        """Stop the child."""
        self._proc.kill()
        self._proc.wait()


class Nurse:
    """Commands over MQTT, as `vigil-edge ack` / `silence` / `reading` would send them."""

    def __init__(self, broker: MosquittoBroker, command_base: str, beds: Sequence[str]) -> None:
        self.base = command_base
        self.beds = tuple(beds)
        self.sent: Counter[str] = Counter()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-mem-nurse-{os.getpid()}")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def tick(self, t: int) -> None:
        """Send what is due at simulated second ``t`` (each bed on its own phase)."""
        for i, bed in enumerate(self.beds):
            phase = t + 97 * (i + 1)
            if phase % _ACK_EVERY_S == 0:
                self._send("ack", {"bed": bed})
            if phase % _SILENCE_EVERY_S == 0:
                self._send("silence", {"bed": bed, "seconds": 60})
            if phase % _READING_EVERY_S == 0:
                self._send("reading", {"bed": bed, "consciousness": "A", "on_oxygen": i % 2 == 1,
                                       "temp_c": 37.2, "sbp_mmhg": 118, "dbp_mmhg": 74})

    def _send(self, name: str, body: dict[str, Any]) -> None:
        self.client.publish(f"{self.base}/{name}", json.dumps(body), qos=1)
        self.sent[name] += 1

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


class Subscriber:
    """This file run as ``--subscriber`` in a child process: counts what the broker delivers."""

    def __init__(self, broker: MosquittoBroker, prefix: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--subscriber", broker.address, prefix],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if line != "ready":
            self._proc.kill()
            raise RuntimeError(f"subscriber did not start: {line!r}")

    def finish(self) -> dict[str, Any]:
        """Let it drain (until 1 s without messages), stop it; its counts."""
        out, _ = self._proc.communicate(timeout=60)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


def _subscriber_main(address: str, prefix: str) -> None:
    host, port = address.rsplit(":", 1)
    lock = threading.Lock()
    counts: Counter[str] = Counter()
    alerts: set[tuple[str, int]] = set()
    refused: list[str] = []
    last = [time.monotonic()]
    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic[len(prefix) + 1 :].split("/")
        key = "/".join(parts[:2]) if parts[0] == "cmd" else parts[0]
        with lock:
            counts[key] += 1
            last[0] = time.monotonic()
            if key == "alert":
                body = json.loads(msg.payload)
                alerts.add((body["id"], body["seq"]))
            elif key == "cmd/result":
                body = json.loads(msg.payload)
                if not body["ok"]:
                    refused.append(body["detail"])

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"bench-mem-sub-{os.getpid()}")
    client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect(host, int(port))
    client.loop_start()
    if not subscribed.wait(_CONNECT_TIMEOUT_S):
        print("no SUBACK", flush=True)
        return
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        with lock:
            if time.monotonic() - last[0] > 1.0:
                break
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    with lock:
        print(json.dumps({"counts": dict(counts), "alert_events": len(alerts),
                          "refused": len(refused), "refused_first": refused[:3]}), flush=True)


# ------------------------------------------------------------------------------ the driver


@dataclass(slots=True)
class Options:
    """What to run (see `main` for the meaning of each)."""

    hours: float = 24.0
    beds: int = 4
    waveform_beds: int = 1
    warmup_hours: float = 1.0
    sample_minutes: float = 60.0
    event_every_min: float = 20.0
    trace_hours: float = 0.5
    seed: int = 1
    max_wall_s: float = 1800.0


class Driver(Notifier):
    """The runtime's notifier: its watchdog ping (every loop iteration, interval 0) is where
    the simulated second advances, frames are fed, memory is sampled and the run ends."""

    def __init__(
        self, opts: Options, clock: FakeClock, stream: BoardStream, snapshot_dir: Path
    ) -> None:
        super().__init__(env={})
        self.watchdog_interval_s = 0.0
        self.opts = opts
        self.clock = clock
        self.stop = threading.Event()
        self.sample_s = max(1, round(opts.sample_minutes * 60))
        self.warmup_s = round(opts.warmup_hours * HOUR_S / self.sample_s) * self.sample_s
        self.duration_s = round(opts.hours * HOUR_S / self.sample_s) * self.sample_s
        self.trace_s = round(opts.trace_hours * HOUR_S / 2) * 2  # tracing tail, even seconds
        self.total_s = self.duration_s + self.trace_s
        self.stream = stream
        self.snapshot_dir = snapshot_dir
        self.feeds: dict[int, BoardFeed] = {}
        self.runtime: Runtime | None = None
        self.nurse: Nurse | None = None
        self.t = 0
        self.frames = 0
        self.samples: list[Sample] = []
        self.types: dict[str, Counter[str]] = {}
        self.snapshots: dict[str, Path] = {}
        self.containers: dict[str, Any] = {}
        self.waited_s = 0.0
        self.max_backlog = 0
        self.completed = False
        self._wall0 = time.perf_counter()

    def reader_factory(self, port: str, on_frame: Callable[[Frame], None], *, baudrate: int,
                       on_link: Callable[[bool], None], name: str) -> BoardFeed:
        """The `Runtime` reader factory: port ``sim:bed<N>`` is the stream's bed N - 1."""
        del baudrate, name
        feed = BoardFeed(on_frame, on_link)
        self.feeds[int(port.removeprefix(_PORT_PREFIX)) - 1] = feed
        return feed

    def notify(self, message: str) -> bool:
        """`Notifier.notify`; the watchdog ping drives the simulation."""
        if message == "WATCHDOG=1":
            self._step()
        return True

    def _step(self) -> None:
        rt = self.runtime
        assert rt is not None
        if self.stop.is_set():
            return
        if self.t == 0:
            self._connect(rt)
        if self._checkpoint(rt):
            self.stop.set()
            return
        self._throttle(rt)
        self.t += 1
        self.clock.now = float(self.t)
        for bed, up, data in self.stream.read_second():
            self.frames += self.feeds[bed].deliver(up, data)
        if self.nurse is not None:
            self.nurse.tick(self.t)

    def _connect(self, rt: Runtime) -> None:
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while not rt.publisher.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        if not rt.publisher.connected:
            raise RuntimeError("the edge did not connect to mosquitto")
        self._wall0 = time.perf_counter()

    def _checkpoint(self, rt: Runtime) -> bool:
        """Samples, snapshots and the end of the run at the current second; True: stop now."""
        timeout = time.perf_counter() - self._wall0 > self.opts.max_wall_s
        if timeout and self.t < self.duration_s:
            _log.error("wall-clock limit reached at %.2f simulated h", self.t / HOUR_S)
            self.duration_s = self.total_s = self.t  # measure here, then stop
        if self.t % self.sample_s == 0 or self.t in (self.duration_s, self.total_s):
            self._sample(rt)
        if self.t == self.duration_s:
            self.completed = not timeout
            self._at_end(rt)
        if self.trace_s and self.t == self.duration_s + self.trace_s // 2:
            self._snapshot("first")
        if self.t >= self.total_s or timeout:
            self._snapshot("end")
            return True
        return False

    def _throttle(self, rt: Runtime) -> None:
        held, packets, _ = paho_queues(rt)
        backlog = held + packets
        self.max_backlog = max(self.max_backlog, backlog)
        if backlog <= _BACKLOG_HIGH:
            return
        t0 = time.perf_counter()
        while backlog > _BACKLOG_LOW and time.perf_counter() - t0 < _CONNECT_TIMEOUT_S:
            time.sleep(0.0005)
            held, packets, _ = paho_queues(rt)
            backlog = held + packets
        self.waited_s += time.perf_counter() - t0

    def _sample(self, rt: Runtime) -> None:
        gc.collect()
        rss, anon = proc_memory_kb()
        traced = tracemalloc.get_traced_memory()[0] / 1024 if tracemalloc.is_tracing() else None
        held, packets, _ = paho_queues(rt)
        self.samples.append(Sample(
            hour=self.t / HOUR_S,
            wall_s=round(time.perf_counter() - self._wall0, 1),
            rss_kb=rss, anon_kb=anon, traced_kb=traced,
            gc_objects=len(gc.get_objects()),
            alert_events=rt.outbox.pushed,
            active_alerts=len(rt.core.alarms.active()),
            alarm_tracks=len(rt.core.alarms._tracks),
            outbox=len(rt.outbox),
            journal_rows=len(rt.journal) if rt.journal is not None else 0,
            paho_backlog=held + packets,
        ))
        if self.t == self.warmup_s + self.sample_s and self.t < self.duration_s:
            self.types["first"] = type_counts()

    def _at_end(self, rt: Runtime) -> None:
        """End of the measured run: containers, object types, then the tracing tail."""
        self.containers = containers(rt, list(self.feeds.values()))
        if "first" in self.types:
            self.types["end"] = type_counts()
        if self.total_s > self.duration_s:
            tracemalloc.start(_TRACE_FRAMES)

    def _snapshot(self, label: str) -> None:
        if not tracemalloc.is_tracing():
            return
        gc.collect()
        # On disk, not in memory: a snapshot held until the end would be measured.
        path = self.snapshot_dir / f"{label}.tracemalloc"
        tracemalloc.take_snapshot().dump(str(path))
        self.snapshots[label] = path
        if label == "end":
            tracemalloc.stop()


def containers(rt: Runtime, feeds: Sequence[BoardFeed]) -> dict[str, Any]:
    """Sizes of everything in the runtime that could grow with time (some private)."""
    core = rt.core
    held, packets, incoming = paho_queues(rt)
    learned = [d for d in core.detectors if isinstance(d, LearnedDetector)]
    beds = list(core.beds.values())
    wave = {f"{b.bed_id}:{ch.name}": f"{r.count}/{r.capacity}"
            for b in beds for ch, r in b.waveforms.items()}
    out: dict[str, Any] = {
        "alarm manager tracks (bed, kind)": len(core.alarms._tracks),
        "  of which announced": len(core.alarms.active()),
        "  latched (waiting for an ack)": sum(t.latched for t in core.alarms._tracks.values()),
        "outbox held (waiting + in flight)": len(rt.outbox),
        "outbox in flight (by-mid index)": len(rt.outbox._by_mid),
        "journal rows": len(rt.journal) if rt.journal is not None else None,
        "alert events pushed / acked / dropped": (
            f"{rt.outbox.pushed} / {rt.outbox.acked} / {rt.outbox.dropped_total}"),
        "paho QoS 1 messages held / packets to write / incoming": (
            f"{held} / {packets} / {incoming}"),
        "publisher PUBACK queue": rt.publisher._acks.qsize(),
        "runtime frame inbox / command queue": (
            f"{rt._inbox.qsize()} / {rt._commands.qsize()}"),
        "runtime frames-seen entries / eval-time ring": (
            f"{len(rt._frames_seen)} / {rt._eval_ms.size}"),
        "core per-bed dicts (last_eval, last_vitals_out, vitals_pending, dirty, news2_now)": (
            f"{len(core._last_eval)}, {len(core._last_vitals_out)}, {len(core._vitals_pending)},"
            f" {len(core._dirty)}, {len(core._news2_now)}"),
        "vitals ring rows per bed (count/capacity)": ", ".join(
            f"{b.vitals.count}/{b.vitals.capacity}" for b in beds),
        "waveform ring samples (count/capacity)": ", ".join(
            f"{k} {v}" for k, v in wave.items()) or "none",
        "manual readings per bed (max)": max((len(b.manual) for b in beds), default=0),
        "learned detector bed states": len(learned[0]._beds) if learned else None,
        "decoder errors (all beds)": sum(f.stats.errors for f in feeds),
        "detector errors / frames dropped": f"{core.detector_errors} / {rt.frames_dropped}",
    }
    if rt.journal is not None:
        base = rt.journal.path
        wal = base.with_name(base.name + "-wal")
        out["journal file + WAL bytes"] = (
            f"{base.stat().st_size} + {wal.stat().st_size if wal.exists() else 0}")
    return out


# ------------------------------------------------------------------------------ the run


@dataclass(slots=True)
class Report:
    """Everything measured; `render` prints it."""

    options: dict[str, Any]
    bundle: str
    completed: bool
    simulated_hours: float
    wall_s: float
    frames: int
    samples: list[Sample]
    baseline_hour: float
    end_hour: float
    rss_ratio: float
    rss_slope_first_half_kb_h: float | None
    rss_slope_second_half_kb_h: float | None
    anon_slope_second_half_kb_h: float | None
    traced_slope_second_half_kb_h: float | None
    gc_objects_slope_second_half_h: float | None
    top_allocations: list[dict[str, Any]]
    top_types: list[dict[str, Any]]
    containers: dict[str, Any]
    journal_rows_after_shutdown: int
    delivered: dict[str, Any]
    commands_sent: dict[str, int]
    throttle_wait_s: float
    max_paho_backlog: int
    notes: list[str] = field(default_factory=list)
    log_records: dict[str, int] = field(default_factory=dict)


def make_config(opts: Options, broker: MosquittoBroker, state_dir: Path) -> EdgeConfig:
    """The packaged edge/default.toml with this run's beds, broker, journal and alarm policy."""
    data = tomllib.loads(default_config_text())
    data["device"]["id"] = DEVICE_ID
    data["mqtt"].update(host=broker.host, port=broker.port, client_id=f"bench-mem-{os.getpid()}")
    data["beds"] = [{"id": f"bed{i}", "serial": f"{_PORT_PREFIX}{i}"}
                    for i in range(1, opts.beds + 1)]
    data["journal"]["state_dir"] = str(state_dir)
    data["alarms"].update(latch_high=True, escalate_after_s=300.0)
    return parse_config(data)


def _site(traceback: tracemalloc.Traceback, root: str) -> str:
    """Where an allocation belongs: the most recent frame in this repository (this driver's
    lines lumped together), else the most recent frame, shortened."""
    frames = list(traceback)[::-1]  # most recent first
    for frame in frames:
        name = frame.filename
        if name.startswith(root) and f"{os.sep}.venv{os.sep}" not in name:
            rel = name[len(root):]
            if rel.startswith(("firmware_bridge/sim/", "benchmarks/")):
                return _SIM_SITE
            return f"{rel}:{frame.lineno}"
    name = frames[0].filename
    for marker in ("site-packages/", "lib/python3"):
        if marker in name:
            name = name[name.index(marker) + len(marker):]
            break
    return f"{name}:{frames[0].lineno}"


def _allocation_diffs(first: Path, end: Path) -> list[dict[str, Any]]:
    """Growth of live allocations from ``first`` to ``end``, by `_site`, largest first."""
    skip = [tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
            tracemalloc.Filter(False, "<unknown>")]
    a = tracemalloc.Snapshot.load(str(first)).filter_traces(skip)
    b = tracemalloc.Snapshot.load(str(end)).filter_traces(skip)
    root = str(Path(__file__).resolve().parents[1]) + os.sep
    growth: Counter[str] = Counter()
    size: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for stat in b.compare_to(a, "traceback"):
        site = _site(stat.traceback, root)
        growth[site] += stat.size_diff
        size[site] += stat.size
        blocks[site] += stat.count_diff
    top = [k for k, v in growth.most_common() if v > 0 and k != _SIM_SITE][:_TOP]
    if growth[_SIM_SITE] > 0:
        top.append(_SIM_SITE)
    return [{"where": k, "growth_kb": round(growth[k] / 1024, 1),
             "size_kb": round(size[k] / 1024, 1), "blocks_growth": blocks[k]} for k in top]


def _type_diffs(first: Counter[str], end: Counter[str]) -> list[dict[str, Any]]:
    growth = Counter(end)
    growth.subtract(first)
    return [{"type": k, "growth": v, "count": end[k]}
            for k, v in growth.most_common(_TOP) if v > 0]


def _journal_rows(state_dir: Path) -> int:
    db = sqlite3.connect(state_dir / JOURNAL_FILE)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


def run(opts: Options) -> Report:
    """The whole benchmark: broker, subscriber, runtime driven to the end; the report."""
    binary = find_mosquitto()
    if binary is None:
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="vigil-edge-memory-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "broker").mkdir()
        # No per-client queue limit: a subscriber that lags must not lose alerts here.
        broker = MosquittoBroker(binary, tmp / "broker", options=["max_queued_messages 0"])
        broker.start()
        stream = BoardStream(opts)
        try:
            config = make_config(opts, broker, tmp / "state")
            subscriber = Subscriber(broker, f"{config.mqtt.topic_prefix}/{DEVICE_ID}")
            clock = FakeClock(time.time())
            driver = Driver(opts, clock, stream, tmp)
            runtime = Runtime(config, clock=clock, notifier=driver,
                              reader_factory=driver.reader_factory)
            driver.runtime = runtime
            status = runtime.models.status if runtime.models is not None else {}
            if status.get("state") != "loaded":
                raise SystemExit(f"the shipped bundle did not load: {status}")
            driver.nurse = Nurse(broker, config.topic("cmd"), [b.id for b in config.beds])
            # Bound the run even if the loop stopped pinging its watchdog.
            guard = threading.Timer(opts.max_wall_s + 120.0, driver.stop.set)
            guard.daemon = True
            guard.start()
            runtime.run(driver.stop)
            guard.cancel()
            wall = time.perf_counter() - driver._wall0
            if driver.t == 0:
                raise SystemExit("the runtime loop never pinged its watchdog: driver not called")
            driver.nurse.close()
            delivered = subscriber.finish()
            journal_after = _journal_rows(tmp / "state")
            tops = (_allocation_diffs(driver.snapshots["first"], driver.snapshots["end"])
                    if {"first", "end"} <= set(driver.snapshots) else [])
        finally:
            stream.close()
            broker.stop()
    types = (_type_diffs(driver.types["first"], driver.types["end"])
             if {"first", "end"} <= set(driver.types) else [])
    return _report(opts, driver, bundle=status.get("version", "?"), wall=wall, tops=tops,
                   types=types, delivered=delivered, journal_after=journal_after)


def _report(opts: Options, driver: Driver, *, bundle: str, wall: float,
            tops: list[dict[str, Any]], types: list[dict[str, Any]],
            delivered: dict[str, Any], journal_after: int) -> Report:
    end_h = driver.duration_s / HOUR_S
    samples = [s for s in driver.samples if s.hour <= end_h]  # not the tracing tail
    warm_h = driver.warmup_s / HOUR_S
    base = next((s for s in samples if s.hour >= warm_h), samples[0])
    end = samples[-1]
    mid = base.hour + (end.hour - base.hour) / 2.0

    def slope(attr: str, lo: float, hi: float) -> float | None:
        pts = [(s.hour, float(getattr(s, attr))) for s in samples
               if lo <= s.hour <= hi and getattr(s, attr) is not None]
        return slope_per_hour(pts)

    notes = []
    if not driver.completed:
        notes.append(f"INCOMPLETE: wall-clock limit {opts.max_wall_s:g} s reached")
    pushed = driver.samples[-1].alert_events
    if delivered.get("alert_events", 0) < pushed:
        notes.append(f"subscriber saw {delivered.get('alert_events')} of {pushed} alert events")
    return Report(
        options=asdict(opts), bundle=bundle, completed=driver.completed,
        simulated_hours=end_h, wall_s=round(wall, 1), frames=driver.frames,
        samples=driver.samples, baseline_hour=base.hour, end_hour=end.hour,
        rss_ratio=round(end.rss_kb / base.rss_kb, 4),
        rss_slope_first_half_kb_h=slope("rss_kb", base.hour, mid),
        rss_slope_second_half_kb_h=slope("rss_kb", mid, end.hour),
        anon_slope_second_half_kb_h=slope("anon_kb", mid, end.hour),
        traced_slope_second_half_kb_h=slope("traced_kb", mid, end.hour),
        gc_objects_slope_second_half_h=slope("gc_objects", mid, end.hour),
        top_allocations=tops, top_types=types, containers=driver.containers,
        journal_rows_after_shutdown=journal_after, delivered=delivered,
        commands_sent=dict(driver.nurse.sent) if driver.nurse is not None else {},
        throttle_wait_s=round(driver.waited_s, 1), max_paho_backlog=driver.max_backlog,
        notes=notes,
    )


# ------------------------------------------------------------------------------ output


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(r: Report, out: IO[str]) -> None:
    """The report as markdown."""
    o = r.options
    w = out.write
    tail = r.options["trace_hours"] if r.top_allocations else 0
    w(f"## Edge memory: {r.simulated_hours:g} simulated h, {o['beds']} beds "
      f"({o['waveform_beds']} with ECG+PPG waveforms), bundle {r.bundle}\n\n")
    w(f"Wall time {r.wall_s:.0f} s for {r.simulated_hours:g} h + {tail:g} h tracemalloc tail, "
      f"{r.frames:,} frames.\n\n")
    w("| simulated h | wall s | VmRSS MiB | RssAnon MiB | gc objects | alert events "
      "| announced | alarm tracks | outbox | journal rows | paho queue |\n")
    w("|---|---|---|---|---|---|---|---|---|---|---|\n")
    step = max(1, round(len(r.samples) / 26))
    for i, s in enumerate(r.samples):
        keep = (i % step == 0 or s.hour in (r.baseline_hour, r.end_hour)
                or i == len(r.samples) - 1)
        if not keep:
            continue
        mark = (" (baseline)" if s.hour == r.baseline_hour else " (end)" if s.hour == r.end_hour
                else " (tracemalloc on)" if s.traced_kb is not None else "")
        w(f"| {s.hour:g}{mark} | {s.wall_s:.0f} | {s.rss_kb / _MIB:.1f} | {s.anon_kb / _MIB:.1f} "
          f"| {s.gc_objects:,} | {s.alert_events:,} | {s.active_alerts} "
          f"| {s.alarm_tracks} | {s.outbox} | {s.journal_rows} | {s.paho_backlog} |\n")
    base = next(s for s in r.samples if s.hour == r.baseline_hour)
    end = next(s for s in r.samples if s.hour == r.end_hour)
    w(f"\n| | baseline (h {base.hour:g}) | end (h {end.hour:g}) | end / baseline "
      "| slope over the 2nd half | slope over the 1st half |\n")
    w("|---|---|---|---|---|---|\n")
    w(f"| VmRSS | {base.rss_kb / _MIB:.1f} MiB | {end.rss_kb / _MIB:.1f} MiB | {r.rss_ratio:.3f} "
      f"| {_fmt(r.rss_slope_second_half_kb_h)} kB/h | {_fmt(r.rss_slope_first_half_kb_h)} kB/h |\n")
    w(f"| RssAnon | {base.anon_kb / _MIB:.1f} MiB | {end.anon_kb / _MIB:.1f} MiB "
      f"| {end.anon_kb / max(base.anon_kb, 1):.3f} "
      f"| {_fmt(r.anon_slope_second_half_kb_h)} kB/h | |\n")
    w(f"| gc-tracked objects | {base.gc_objects:,} | {end.gc_objects:,} "
      f"| {end.gc_objects / max(base.gc_objects, 1):.3f} "
      f"| {_fmt(r.gc_objects_slope_second_half_h)} /h | |\n")
    if r.top_types:
        w("\nLargest growth of gc-tracked objects by type, one sample after the baseline -> end:"
          "\n\n| type | growth | count at end |\n|---|---|---|\n")
        for t in r.top_types:
            w(f"| {t['type']} | {t['growth']:+,} | {t['count']:,} |\n")
    if r.top_allocations:
        w(f"\nLargest allocation growth (tracemalloc, started at h {r.end_hour:g}): live at "
          f"h {r.end_hour + tail:g} against live at h {r.end_hour + tail / 2:g}:\n\n"
          "| where | growth kB | live kB at end | blocks growth |\n|---|---|---|---|\n")
        for a in r.top_allocations:
            w(f"| {a['where']} | {a['growth_kb']:,.1f} | {a['size_kb']:,.1f} "
              f"| {a['blocks_growth']:+,} |\n")
    w(f"\nContainers at the end (h {r.end_hour:g}, before the tail and the shutdown):\n\n"
      "| container | size |\n|---|---|\n")
    for k, v in r.containers.items():
        w(f"| {k} | {v} |\n")
    w(f"| journal rows after the clean shutdown | {r.journal_rows_after_shutdown} |\n")
    d = r.delivered
    last = r.samples[-1]
    w(f"\nDelivered to the subscriber: {d.get('alert_events', 0):,} distinct alert events "
      f"(of {last.alert_events:,} queued); by topic: "
      + ", ".join(f"{k} {v:,}" for k, v in sorted(d.get("counts", {}).items()))
      + f". Commands sent: {r.commands_sent}; refused: {d.get('refused', 0)}."
      f" Driver waited {r.throttle_wait_s} s for paho (max queue {r.max_paho_backlog}).\n")
    if r.log_records:
        w("\nLog records at WARNING and above (first of each printed to stderr):\n\n"
          "| count | record |\n|---|---|\n")
        for k, n in r.log_records.items():
            w(f"| {n:,} | {k} |\n")
    for note in r.notes:
        w(f"\n**{note}**\n")


class LogTally(logging.Handler):
    """Counts records by level, logger and message template; prints the first of each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        """Count; print on first sight."""
        key = f"{record.levelname} {record.name}: {record.msg}"
        self.counts[key] += 1
        if self.counts[key] == 1:
            sys.stderr.write(logging.Formatter("%(levelname)s %(name)s: %(message)s")
                             .format(record) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line; ``--subscriber ADDRESS PREFIX`` and ``--boards OPTIONS`` are the
    child-process modes."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--subscriber"]:
        _subscriber_main(args_in[1], args_in[2])
        return
    if args_in[:1] == ["--boards"]:
        _boards_main(args_in[1])
        return
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    d = Options()
    ap.add_argument("--hours", type=float, default=d.hours, help="simulated hours (default 24)")
    ap.add_argument("--beds", type=int, default=d.beds)
    ap.add_argument("--waveform-beds", type=int, default=d.waveform_beds,
                    help="beds whose board also sends ECG and PPG waveforms")
    ap.add_argument("--warmup-hours", type=float, default=d.warmup_hours,
                    help="simulated hours before the baseline sample")
    ap.add_argument("--sample-minutes", type=float, default=d.sample_minutes)
    ap.add_argument("--event-every", type=float, default=d.event_every_min,
                    help="mean minutes between clinical events of one bed")
    ap.add_argument("--trace-hours", type=float, default=d.trace_hours,
                    help="simulated hours after the end with tracemalloc on (0: none)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--max-wall", type=float, default=d.max_wall_s,
                    help="wall-clock limit (s); the run stops there and says so")
    ap.add_argument("--json", type=Path, help="also write the report here")
    a = ap.parse_args(args_in)
    tally = LogTally()
    logging.basicConfig(level=logging.WARNING, handlers=[tally])
    opts = Options(hours=a.hours, beds=a.beds, waveform_beds=a.waveform_beds,
                   warmup_hours=a.warmup_hours, sample_minutes=a.sample_minutes,
                   event_every_min=a.event_every, trace_hours=a.trace_hours, seed=a.seed,
                   max_wall_s=a.max_wall)
    if opts.warmup_hours >= opts.hours:
        ap.error("--warmup-hours must be below --hours")
    report = run(opts)
    report.log_records = dict(tally.counts.most_common())
    render(report, sys.stdout)
    if a.json is not None:
        a.json.write_text(json.dumps(asdict(report), indent=2) + "\n")


if __name__ == "__main__":
    main()
