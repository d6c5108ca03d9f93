"""The edge runtime: serial readers in, detection and alarms in the middle, MQTT out.

Two layers, following the sans-I/O shape of the codec:

- `EdgeCore` is pure: frames and link changes go in with the edge's monotonic time, alert events
  and vitals samples due for publishing come out. It owns the bed states, the detectors and the
  alarm manager, and is tested with a fake clock.
- `Runtime` is the thin adapter: one `SerialReader` thread per bed pushes frames into a bounded
  queue; the runtime thread drains it, drives the core, and publishes through `MqttPublisher`.
  Scoring never waits for the broker: while it is unreachable, alerts pile up in the outbox
  (bounded, see `edge.outbox`) and go out in order once it is back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib import metadata
from typing import Any, Final, Protocol

import numpy as np

from edge.activation import ModelManager
from edge.alarms import AlarmManager, alarm_timing
from edge.bedstate import BedState, VitalsSample
from edge.commands import (
    Acknowledge,
    BedCommand,
    CommandError,
    ManualReading,
    Reload,
    check_fresh,
    parse_command,
    result_payload,
)
from edge.config import ConfigError, EdgeConfig
from edge.detect import Detector, FixedLimitsDetector, configured_detectors
from edge.ecg import EcgDetector
from edge.events import AlertEvent, Detection
from edge.explain import explain
from edge.homeassistant import discovery_messages
from edge.journal import Journal
from edge.learned import load_learned, model_key
from edge.mqtt import MqttPublisher
from edge.news2 import News2, news2, news2_inputs
from edge.outbox import Outbox
from edge.payloads import (
    alert_payload,
    iso_utc,
    news2_payload,
    state_payload,
    status_payload,
    vitals_payload,
)
from edge.reload import plan_reload
from edge.systemd import Notifier
from firmware_bridge.codec import DecoderStats
from firmware_bridge.frames import Frame, StatusFrame, VitalsFrame

__all__ = ["Clock", "EdgeCore", "Runtime", "SystemClock"]

_log = logging.getLogger(__name__)

_EVAL_INTERVAL_S: Final = 1.0
"""A bed without new frames is still re-evaluated this often (staleness, link supervision)."""
_TICK_S: Final = 0.1
"""Longest the runtime loop sleeps waiting for frames; bounds the latency of everything else."""
_EVAL_SAMPLES: Final = 1000
_INBOX_MAX: Final = 10_000
"""Frames buffered between reader threads and the runtime thread (~20 s of a busy board)."""
_DRAIN_MAX: Final = 1000
_SHUTDOWN_GRACE_S: Final = 2.0
"""On a clean stop, time allowed for queued alerts to be acknowledged before disconnecting."""


class Clock(Protocol):
    """Time source: monotonic seconds for logic, Unix seconds for timestamps in payloads."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never jumps."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...


class SystemClock:
    """The real clocks of the machine."""

    def monotonic(self) -> float:
        """`time.monotonic`."""
        return time.monotonic()

    def time(self) -> float:
        """`time.time`."""
        return time.time()


class ArtefactGate(Protocol):
    """How long a bed's fixed-limit breaches wait beyond the onset (edge.learned rule 8)."""

    def artefact_hold(self, bed_id: str, vital: str, direction: str, limit: float) -> float:
        """Extra onset delay (s), 0 for none, for a breach of ``vital`` past ``limit`` in
        ``direction`` (``low`` / ``high``; the rule's mildest threshold), asked after this
        tick's detectors have run."""
        ...


def _gate_limits(config: EdgeConfig) -> dict[str, tuple[str, str, float]]:
    """kind -> (vital, direction, mildest threshold) of each configured limit, for the gate."""
    return {
        r.spec.kind: (r.spec.vital, r.spec.direction, r.thresholds[-1][1])
        for r in config.limits.rules
    }


class EdgeCore:
    """Bed states + detectors + alarm manager, without threads, sockets or clocks.

    ``gate``: the LSTM artefact gate (`edge.learned.LearnedDetector`), asked once per evaluated
    bed after every detector ran; its hold goes on that bed's fixed-limit detections only.
    """

    def __init__(
        self,
        config: EdgeConfig,
        *,
        now: float,
        detectors: Sequence[Detector] | None = None,
        alarms: AlarmManager | None = None,
        gate: ArtefactGate | None = None,
    ) -> None:
        self.config = config
        self.gate = gate
        self._limits = _gate_limits(config)
        self.beds: dict[str, BedState] = {
            bed.id: BedState(
                bed.id,
                now=now,
                vitals_history_s=config.buffers.vitals_history_s,
                waveform_history_s=config.buffers.waveform_history_s,
            )
            for bed in config.beds
        }
        self.detectors: list[Detector] = list(
            detectors
            if detectors is not None
            else configured_detectors(config)
        )
        self.alarms = alarms or AlarmManager(
            alarm_timing(config.alarms)
        )
        self.detector_errors = 0
        self._news2_now: set[str] = set()
        self._dirty: set[str] = set()
        self._last_eval: dict[str, float] = {}
        self._vitals_pending: set[str] = set()
        self._last_vitals_out: dict[str, float] = {}

    def reconfigure(
        self, config: EdgeConfig, detectors: Sequence[Detector], gate: ArtefactGate | None
    ) -> None:
        """Run with ``config`` and ``detectors`` from the next `evaluate` on (a reload, see
        edge/reload.py: same beds). Bed states (windows, manual readings, NEWS2) and the alarm
        manager's alerts carry over; every bed is evaluated and NEWS2-scored at once."""
        self.config = config
        self.gate = gate
        self._limits = _gate_limits(config)
        self._carry_over(detectors)
        self.detectors = list(detectors)
        self.alarms.retime(alarm_timing(config.alarms))
        self._dirty.update(self.beds)
        self._news2_now.update(self.beds)

    def swap_detectors(self, detectors: Sequence[Detector], gate: ArtefactGate | None) -> None:
        """Score with ``detectors`` from the next `evaluate` on (a model switch, see
        edge/activation.py); everything else, alerts included, carries over."""
        self._carry_over(detectors)
        self.detectors = list(detectors)
        self.gate = gate
        self._dirty.update(self.beds)

    def _carry_over(self, detectors: Sequence[Detector]) -> None:
        """The ECG head's per-bed beats and timing go on into the new detectors' ECG head
        (`EcgDetector.adopt`): a model switch or reload does not make it relearn."""
        old = next((d for d in self.detectors if isinstance(d, EcgDetector)), None)
        if old is None:
            return
        for det in detectors:
            if isinstance(det, EcgDetector):
                det.adopt(old)

    def on_frame(self, bed: str, frame: Frame, now: float) -> None:
        """A frame from ``bed``'s board arrived at ``now`` (s)."""
        state = self.beds[bed]
        state.apply(frame, now)
        if isinstance(frame, VitalsFrame | StatusFrame):
            self._dirty.add(bed)
        if isinstance(frame, VitalsFrame):
            self._vitals_pending.add(bed)

    def on_link(self, bed: str, up: bool, now: float) -> None:
        """The serial port of ``bed`` opened (True) or was lost (False)."""
        self.beds[bed].link_up = up
        self._dirty.add(bed)
        _log.debug("bed %s link %s at %.3f", bed, "up" if up else "down", now)

    def evaluate(self, now: float) -> list[AlertEvent]:
        """Run the detectors on beds with news (or not evaluated for a second); alert events."""
        events: list[AlertEvent] = []
        for bed_id, state in self.beds.items():
            last = self._last_eval.get(bed_id)
            if bed_id not in self._dirty and last is not None and now - last < _EVAL_INTERVAL_S:
                continue
            self._dirty.discard(bed_id)
            self._last_eval[bed_id] = now
            detections = []
            for detector in self.detectors:
                try:
                    detections.extend(detector.update(state, now))
                except Exception:
                    self.detector_errors += 1
                    _log.exception("detector %s failed on bed %s", detector.model, bed_id)
            if self.gate is not None:
                detections = self._hold(bed_id, detections)
            events.extend(self._explained(bed_id, self.alarms.update(bed_id, detections, now)))
        return events

    def _explained(self, bed_id: str, events: list[AlertEvent]) -> list[AlertEvent]:
        """The events with their plain-language explanation (edge/explain.py), made only for
        events (rare), with the bed's recorded age when there is one."""
        if not events:
            return events
        age = self.beds[bed_id].manual.get("age_years")
        years = None if age is None else float(age[0])
        return [replace(e, explanation=explain(e, years)) for e in events]

    def _hold(self, bed_id: str, detections: list[Detection]) -> list[Detection]:
        assert self.gate is not None
        out = []
        for d in detections:
            limit = self._limits.get(d.kind) if d.model == FixedLimitsDetector.MODEL else None
            hold = 0.0
            if limit is not None:
                try:
                    hold = self.gate.artefact_hold(bed_id, *limit)
                except Exception:  # a broken gate must not delay nor stop the fixed limits
                    self.detector_errors += 1
                    _log.exception("artefact gate failed on bed %s; no hold", bed_id)
            out.append(replace(d, hold_s=hold) if hold > 0.0 else d)
        return out

    def command(self, cmd: BedCommand, now: float) -> tuple[list[AlertEvent], str]:
        """Apply an acknowledge or an audio pause at ``now``; (alert events, what was done).

        Raises CommandError naming the field for a bed that is not configured, an alert id
        that is not an announced, unacknowledged alert of the bed, or a pause out of range.
        """
        if cmd.bed not in self.beds:
            raise CommandError(f"bed: no bed {cmd.bed!r}; beds: {', '.join(self.beds)}")
        if isinstance(cmd, Acknowledge):
            events = self._explained(cmd.bed, self.alarms.acknowledge(cmd.bed, now, cmd.alert_id))
            if not events and cmd.alert_id is not None:
                raise CommandError(
                    f"id: {cmd.alert_id!r} is not an announced, unacknowledged alert of bed "
                    f"{cmd.bed}"
                )
            return events, f"acknowledged {len(events)} alert(s) of bed {cmd.bed}"
        if isinstance(cmd, ManualReading):
            manual = self.beds[cmd.bed].manual
            for name, value in cmd.values.items():
                manual[name] = (value, now)
            self._news2_now.add(cmd.bed)  # a new observation set is scored at once
            shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in cmd.values.items())
            return [], f"recorded for bed {cmd.bed}: {shown}"
        try:
            events = self._explained(cmd.bed, self.alarms.silence(cmd.bed, cmd.seconds, now))
        except ValueError as exc:
            raise CommandError(f"seconds: {exc}") from None
        return events, (
            f"audio paused for {cmd.seconds:g} s: {len(events)} alert(s) of bed {cmd.bed}"
        )

    def news2_due(self, now: float) -> list[tuple[str, News2, dict[str, str]]]:
        """Score NEWS2 for each bed whose last score is ``news2.interval_s`` old, or that got a
        manual reading since (edge/news2.py).

        Returns (bed, score, source of each input) for the beds scored now; the score is kept
        on the bed for `edge.detect.News2Detector`. A bed with nothing to score is skipped.
        """
        cfg = self.config.news2
        out: list[tuple[str, News2, dict[str, str]]] = []
        for bed_cfg in self.config.beds:
            bed = self.beds[bed_cfg.id]
            due = bed.news2 is None or now - bed.news2[1] >= cfg.interval_s
            if not (due or bed_cfg.id in self._news2_now):
                continue
            self._news2_now.discard(bed_cfg.id)
            inputs, sources = news2_inputs(
                bed.vitals.latest_valid(), bed.manual, now,
                vitals_max_age_s=cfg.vitals_max_age_s, manual_max_age_s=cfg.manual_max_age_s,
            )
            if not sources:
                continue
            try:
                result = news2(inputs, scale=bed_cfg.spo2_scale)
            except ValueError:
                self.detector_errors += 1
                _log.exception("NEWS2 of bed %s could not be scored", bed_cfg.id)
                continue
            bed.news2 = (result, now)
            out.append((bed_cfg.id, result, sources))
        return out

    def vitals_due(self, now: float) -> list[tuple[str, VitalsSample]]:
        """Beds with a new vitals sample whose last publication is ``vitals_interval_s`` old."""
        out: list[tuple[str, VitalsSample]] = []
        interval = self.config.mqtt.vitals_interval_s
        for bed_id in sorted(self._vitals_pending):
            last = self._last_vitals_out.get(bed_id)
            if last is not None and now - last < interval:
                continue
            sample = self.beds[bed_id].vitals.latest()
            self._vitals_pending.discard(bed_id)
            if sample is None:
                continue
            self._last_vitals_out[bed_id] = now
            out.append((bed_id, sample))
        return out


class _Reader(Protocol):
    """What the runtime needs from `firmware_bridge.reader.SerialReader`."""

    @property
    def stats(self) -> DecoderStats: ...

    @property
    def connected(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...


ReaderFactory = Callable[..., _Reader]


def _default_reader_factory(
    port: str,
    on_frame: Callable[[Frame], None],
    *,
    baudrate: int,
    on_link: Callable[[bool], None],
    name: str,
) -> _Reader:
    from firmware_bridge.reader import SerialReader  # noqa: PLC0415 - pyserial only when run

    return SerialReader(port, on_frame, baudrate=baudrate, on_link=on_link, name=name)


def _package_version() -> str:
    try:
        return metadata.version("vigil")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class Runtime:
    """Wires readers, the core and MQTT together; `run` blocks until ``stop`` is set."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        clock: Clock | None = None,
        detectors: Sequence[Detector] | None = None,
        reader_factory: ReaderFactory = _default_reader_factory,
        notifier: Notifier | None = None,
        reload_config: Callable[[], EdgeConfig] | None = None,
    ) -> None:
        self.config = config
        self._reload_config = reload_config
        self.reloads = {"applied": 0, "refused": 0}
        self.clock: Clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self._started_s = self.clock.monotonic()
        # Duration (ms) of the last _EVAL_SAMPLES detector + alarm passes, for the status.
        self._eval_ms = np.zeros(_EVAL_SAMPLES)
        self._eval_n = 0
        self._frames_seen: dict[str, tuple[int, float]] = {}
        # The learned model is loaded (and verified) here, once; a refused bundle leaves the
        # fixed limits running plus the technical alert model_unavailable (edge.learned).
        self.models: ModelManager | None = None
        gate = None
        if detectors is None:
            self.models = ModelManager(config, monotonic=self.clock.monotonic)
            detectors, gate = self.models.setup.detectors, self.models.setup.gate
        self.core = EdgeCore(config, now=self.clock.monotonic(), detectors=detectors, gate=gate)
        self.journal = (
            Journal(config.journal.state_dir, max_age_s=config.journal.max_age_s)
            if config.journal.state_dir else None
        )
        self.outbox = Outbox(config.mqtt.queue_max, journal=self.journal)
        self.outbox.restore()
        # Commands arrive on the MQTT network thread (and SIGHUP in a signal handler, payload
        # None) and are applied on the runtime thread; SimpleQueue.put is reentrant, and the
        # queue is unbounded: a command is never dropped (a frame may be, see _INBOX_MAX).
        self._commands: queue.SimpleQueue[tuple[str, bytes | None]] = queue.SimpleQueue()
        self._model_msgs: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self.publisher = MqttPublisher(
            config.mqtt,
            status_topic=config.topic("status"),
            alert_topic=config.topic("alert"),
            outbox=self.outbox,
            command_base=config.topic("cmd"),
            on_command=lambda name, payload: self._commands.put((name, payload)),
            model_base=(config.topic("model") if self.models is not None
                        and self.models.receiver is not None else None),
            on_model=lambda name, payload: self._model_msgs.put((name, payload)),
        )
        self._inbox: queue.Queue[tuple[str, Frame | bool]] = queue.Queue(_INBOX_MAX)
        self.frames_dropped = 0
        self._version = _package_version()
        self.readers: dict[str, _Reader] = {
            bed.id: reader_factory(
                bed.serial,
                self._frame_callback(bed.id),
                baudrate=bed.baud,
                on_link=self._link_callback(bed.id),
                name=f"serial-reader:{bed.id}",
            )
            for bed in config.beds
        }

    # reader threads --------------------------------------------------------------------------

    def _frame_callback(self, bed: str) -> Callable[[Frame], None]:
        def on_frame(frame: Frame) -> None:
            try:
                self._inbox.put_nowait((bed, frame))
            except queue.Full:
                self.frames_dropped += 1
                if self.frames_dropped % 1000 == 1:
                    _log.warning(
                        "runtime is not keeping up: %d frames dropped", self.frames_dropped
                    )

        return on_frame

    def _link_callback(self, bed: str) -> Callable[[bool], None]:
        def on_link(up: bool) -> None:
            self._inbox.put((bed, up))

        return on_link

    # runtime thread --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Start readers and MQTT, process until ``stop`` is set, then shut down cleanly."""
        _log.info(
            "vigil-edge %s: device %s, %d bed(s): %s",
            self._version,
            self.config.device.id,
            len(self.config.beds),
            ", ".join(f"{b.id}={b.serial}" for b in self.config.beds),
        )
        self.publisher.start()
        for reader in self.readers.values():
            reader.start()
        last_status = -float("inf")
        watchdog_s = self.notifier.watchdog_interval_s
        last_watchdog = -float("inf")
        self.notifier.notify(f"READY=1\nSTATUS=monitoring {len(self.config.beds)} bed(s)")
        try:
            while not stop.is_set():
                # The loop itself pings the watchdog: if it hangs, systemd restarts the edge.
                if watchdog_s is not None and time.monotonic() - last_watchdog >= watchdog_s:
                    self.notifier.notify("WATCHDOG=1")
                    last_watchdog = time.monotonic()
                self._drain(_TICK_S)
                self._run_commands()
                now = self.clock.monotonic()
                self._follow_model(now)
                changed: set[str] = set()
                for bed, result, sources in self.core.news2_due(now):
                    _log.info("bed %s NEWS2 %d (%s)", bed, result.total, result.response.value)
                    self.publisher.publish_retained(
                        self.config.topic(f"news2/{bed}"),
                        news2_payload(self.config.device.id, bed, result, sources,
                                      self.clock.time()),
                    )
                    changed.add(bed)
                t0 = time.perf_counter()
                evaluated = self.core.evaluate(now)
                self._eval_ms[self._eval_n % self._eval_ms.size] = (time.perf_counter() - t0) * 1e3
                self._eval_n += 1
                for event in evaluated:
                    self._emit(event)
                    changed.add(event.bed)
                for bed, sample in self.core.vitals_due(now):
                    self.publisher.publish_volatile(
                        self.config.topic("vitals"),
                        vitals_payload(
                            self.config.device.id, bed, sample, self._epoch(sample.time_s),
                            ecg=self._ecg_summary(bed),
                        ),
                    )
                    changed.add(bed)
                for bed in sorted(changed):
                    self._publish_state(bed)
                status_due = now - last_status >= self.config.mqtt.status_interval_s
                reconnected = self.publisher.take_status_request()
                if reconnected and self.config.homeassistant.enabled:
                    for topic, payload in discovery_messages(self.config, self._version):
                        self.publisher.publish_retained(topic, payload)
                if reconnected or status_due:
                    self.publisher.publish_status(self.status())
                    self._publish_model_state()
                    last_status = now
                self.publisher.pump()
        finally:
            self._shutdown()

    def _drain(self, timeout_s: float) -> None:
        try:
            item = self._inbox.get(timeout=timeout_s)
        except queue.Empty:
            return
        for _ in range(_DRAIN_MAX):
            bed, payload = item
            now = self.clock.monotonic()
            if isinstance(payload, bool):
                self.core.on_link(bed, payload, now)
            else:
                self.core.on_frame(bed, payload, now)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _ecg_summary(self, bed: str) -> dict[str, float | str | None] | None:
        for det in self.core.detectors:
            if isinstance(det, EcgDetector):
                return det.summary(bed)
        return None

    def _publish_state(self, bed: str) -> None:
        """The bed's retained current state (``state/<bed>``): after its alerts, vitals or
        NEWS2 changed, so a subscriber that joins late sees what is going on at once."""
        state = self.core.beds[bed]
        self.publisher.publish_retained(
            self.config.topic(f"state/{bed}"),
            state_payload(
                self.config.device.id, bed, self.clock.time(),
                alerts=self.core.alarms.announced(bed), to_epoch=self._epoch,
                sample=state.vitals.latest(),
                news2=state.news2[0] if state.news2 is not None else None,
            ),
        )

    def _run_commands(self) -> None:
        """Apply every queued command (edge/commands.py) and publish each one's result."""
        while True:
            try:
                name, payload = self._commands.get_nowait()
            except queue.Empty:
                return
            request_id = None
            events: list[AlertEvent] = []
            try:
                cmd = Reload() if payload is None else parse_command(name, payload)
                request_id = cmd.request_id
                check_fresh(cmd, self.clock.time(), self.config.mqtt.command_max_age_s)
                if isinstance(cmd, Reload):  # file I/O and model loading: not the core's
                    ok, detail = self.reload()
                else:
                    events, detail = self.core.command(cmd, self.clock.monotonic())
                    ok = True
                    _log.info("command %s: %s", name, detail)
            except CommandError as exc:
                ok, detail = False, str(exc)
                _log.warning("command %s refused: %s", name, detail)
            for event in events:
                self._emit(event)
            if events:
                self._publish_state(events[0].bed)
            self.publisher.publish_result(name, result_payload(
                name, request_id, ok=ok, detail=detail, events=len(events),
                time=iso_utc(self.clock.time()),
            ))

    def _follow_model(self, now: float) -> None:
        """Swap in a model the store switched to, once it is loaded and warm (between two
        ticks: edge/activation.py); its state goes out at once."""
        if self.models is None:
            return
        progress = self.config.topic("model/progress")
        while True:
            try:
                name, payload = self._model_msgs.get_nowait()
            except queue.Empty:
                break
            for out in self.models.transfer_message(name, payload):
                self.publisher.publish_event(progress, out)
        for out in self.models.transfer_tick(self.config):
            self.publisher.publish_event(progress, out)
        setup = self.models.poll(self.config, self.core.beds, now)
        if setup is None:
            return
        t0 = time.perf_counter()
        self.core.swap_detectors(setup.detectors, setup.gate)
        self.models.last_swap["swap_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        self._publish_model_state()

    def _publish_model_state(self) -> None:
        if self.models is not None:
            self.publisher.publish_retained(
                self.config.topic("model/state"),
                self.models.state_payload(self.config.device.id, self.clock.time()),
            )

    def request_reload(self) -> None:
        """Re-read the configuration between two ticks (safe to call from a signal handler:
        SIGHUP). Answered on ``cmd/result`` like ``cmd/reload``, with request_id null."""
        self._commands.put(("reload", None))

    def reload(self) -> tuple[bool, str]:
        """Read the configuration again and apply all of it, or none of it (edge/reload.py).

        Readers and the broker session are not touched, so frames keep arriving in the inbox
        while this runs; they are processed on the next tick. Returns (applied, what happened).
        """
        if self._reload_config is None:
            return False, "reload: this runtime was started without a configuration file"
        self.notifier.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            ok, detail = self._reload()
        finally:
            self.notifier.notify(f"READY=1\nSTATUS=monitoring {len(self.config.beds)} bed(s)")
        self.reloads["applied" if ok else "refused"] += 1
        (_log.info if ok else _log.error)("configuration reload: %s", detail)
        return ok, detail

    def _reload(self) -> tuple[bool, str]:
        assert self._reload_config is not None
        try:
            new = self._reload_config()
        except ConfigError as exc:
            return False, "invalid, nothing applied: " + "; ".join(exc.errors)
        plan = plan_reload(self.config, new)
        if not plan.applicable:
            return False, (
                f"{', '.join(plan.restart)} changed: that needs a restart (systemctl restart "
                "vigil-edge); nothing applied"
            )
        if not plan.changed:
            return True, "no changes"
        old = self.config
        if self.models is None:  # detectors injected (tests, tools): keep them as given
            detectors, gate = self.core.detectors, self.core.gate
        else:
            m = self.models
            m.reload_keys(new)
            same = model_key(m.effective(new)) == model_key(m.effective(old))
            m.setup = m.setup.with_defaults(new) if same else load_learned(m.effective(new))
            detectors, gate = m.setup.detectors, m.setup.gate
        self.config = new
        self.core.reconfigure(new, detectors, gate)
        if plan.affects("homeassistant"):
            self._rediscover(old)
        return True, "applied " + ", ".join(plan.changed)

    def _rediscover(self, old: EdgeConfig) -> None:
        """Home Assistant discovery after a reload: an empty retained payload removes an entity
        (switched off, or moved to another prefix), then the current ones are published."""
        current = (dict(discovery_messages(self.config, self._version))
                   if self.config.homeassistant.enabled else {})
        if old.homeassistant.enabled:
            for topic, _ in discovery_messages(old, self._version):
                if topic not in current:
                    self.publisher.publish_retained(topic, b"")
        for topic, payload in current.items():
            self.publisher.publish_retained(topic, payload)

    def _epoch(self, mono_s: float) -> float:
        return self.clock.time() - (self.clock.monotonic() - mono_s)

    def _emit(self, event: AlertEvent) -> None:
        """Queue (and journal) the event, then log it: a logged alert is already on disk."""
        label = f"{event.event.value} {event.kind} bed={event.bed} id={event.id} seq={event.seq}"
        payload = alert_payload(
            self.config.device.id, event, self._epoch(event.time_s), self._epoch(event.started_s)
        )
        self.publisher.queue_alert(event.priority, payload, label)
        _log.info(
            "alert %s priority=%s: %s", label, event.priority.label, event.message
        )

    def status(self) -> bytes:
        """Current retained status payload (state online, link and queue counters)."""
        now = self.clock.monotonic()
        beds: dict[str, dict[str, Any]] = {}
        for bed in self.config.beds:
            reader = self.readers[bed.id]
            state = self.core.beds[bed.id]
            age = None if state.last_frame_s is None else round(now - state.last_frame_s, 1)
            beds[bed.id] = {
                "serial": bed.serial,
                "connected": reader.connected,
                "last_frame_age_s": age,
                **reader.stats.as_dict(),
            }
        rates: dict[str, float | None] = {}
        for bed in self.config.beds:
            frames = self.core.beds[bed.id].frames
            seen = self._frames_seen.get(bed.id)
            rates[bed.id] = (round((frames - seen[0]) / (now - seen[1]), 1)
                             if seen is not None and now > seen[1] else None)
            self._frames_seen[bed.id] = (frames, now)
        n = min(self._eval_n, self._eval_ms.size)
        recent = self._eval_ms[:n]
        health = {
            "uptime_s": round(now - self._started_s, 1),
            "evaluate_median_ms": round(float(np.median(recent)), 3) if n else None,
            "evaluate_p99_ms": round(float(np.percentile(recent, 99)), 3) if n else None,
            "frames_per_s": rates,
            "config_reloads": dict(self.reloads),
        }
        alerts = {
            "active": len(self.core.alarms.active()),
            "queued": len(self.outbox),
            "in_flight": self.outbox.handed,
            "delivered": self.outbox.acked,
            "dropped": {p.label: n for p, n in self.outbox.dropped.items()},
        }
        return status_payload(
            self.config.device.id,
            self.clock.time(),
            version=self._version,
            beds=beds,
            alerts={
                **alerts,
                "frames_dropped": self.frames_dropped,
                "detector_errors": self.core.detector_errors,
                "commands_retained_ignored": self.publisher.commands_retained_ignored,
                "journal_expired": self.journal.expired if self.journal is not None else 0,
            },
            model=self.models.status if self.models is not None else None,
            health=health,
        )

    def _shutdown(self) -> None:
        _log.info("stopping")
        self.notifier.notify("STOPPING=1")
        for reader in self.readers.values():
            reader.stop(timeout=2.0)
        deadline = time.monotonic() + _SHUTDOWN_GRACE_S
        while len(self.outbox) and self.publisher.connected and time.monotonic() < deadline:
            self.publisher.pump()
            time.sleep(0.02)
        self.publisher.stop()
        if self.journal is not None:
            self.journal.close()
        _log.info("stopped")
