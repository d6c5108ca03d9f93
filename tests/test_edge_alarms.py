"""Alarm logic with a fake clock: onset, escalation, end, invalid values, technical alerts."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from edge.alarms import AlarmManager, AlarmTiming, KindTiming, alarm_timing
from edge.config import ConfigError, EdgeConfig, parse_config
from edge.detect import Detector, FixedLimitsDetector, TechnicalDetector
from edge.events import AlertEvent, Detection, EventType, Priority
from edge.runtime import EdgeCore
from firmware_bridge.frames import StatusFlag, StatusFrame, VitalsFrame

NORMAL: dict[str, float | None] = {"hr_bpm": 72.0, "spo2_pct": 97.0, "rr_per_min": 14.0}


def _config(beds: int = 1, **alarms: float) -> EdgeConfig:
    timing = {
        "onset_s": 3.0,
        "technical_onset_s": 1.0,
        "clear_s": 2.0,
        "stale_s": 3.0,
        "link_timeout_s": 600.0,
    }
    timing.update(alarms)
    return parse_config(
        {
            "beds": [{"id": f"bed{i + 1}", "serial": f"/dev/tty{i}"} for i in range(beds)],
            "alarms": timing,
        }
    )


class Sim:
    """Drives an EdgeCore like the runtime does: one vitals frame per second, fake time."""

    def __init__(self, config: EdgeConfig | None = None) -> None:
        ids = (f"id-{i}" for i in itertools.count())
        self.config = config or _config()
        self.now = 1000.0
        alarms = AlarmManager(
            AlarmTiming(
                onset_s=self.config.alarms.onset_s,
                technical_onset_s=self.config.alarms.technical_onset_s,
                clear_s=self.config.alarms.clear_s,
            ),
            new_id=lambda: next(ids),
        )
        self.core = EdgeCore(self.config, now=self.now, alarms=alarms)
        self.events: list[AlertEvent] = []

    def step(
        self, bed: str = "bed1", status: StatusFlag | None = None, **values: Any
    ) -> list[AlertEvent]:
        """Advance 1 s; send vitals (NORMAL updated with ``values``) and optional STATUS."""
        self.now += 1.0
        if status is not None:
            self.core.on_frame(bed, StatusFrame(flags=status), self.now)
        if values.get("no_vitals") is None:
            self.core.on_frame(bed, VitalsFrame(**{**NORMAL, **values}), self.now)
        new = self.core.evaluate(self.now)
        self.events.extend(new)
        return new

    def run(self, seconds: int, **kwargs: Any) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        for _ in range(seconds):
            out.extend(self.step(**kwargs))
        return out


def _summary(events: list[AlertEvent]) -> list[tuple[str, str, str, str]]:
    return [(e.event.value, e.kind, e.priority.label, e.id) for e in events]


def test_normal_vitals_raise_nothing() -> None:
    sim = Sim()
    assert sim.run(30) == []


def test_onset_delay_then_new_once() -> None:
    sim = Sim()
    sim.run(5)
    assert sim.run(3, spo2_pct=88.0) == []  # present at t, t+1, t+2: 2 s < onset 3 s
    events = sim.step(spo2_pct=88.0)  # t+3: persisted 3 s
    assert _summary(events) == [("new", "spo2_low", "medium", "id-0")]
    e = events[0]
    assert e.values == {"spo2_pct": 88.0}
    assert e.thresholds == {"spo2_low_pct.high": 85.0, "spo2_low_pct.medium": 90.0}
    assert e.model == "fixed-limits/1"
    assert e.seq == 0
    assert e.started_s == e.time_s - 3.0
    assert not e.technical
    assert "SpO2 88" in e.message
    assert sim.run(20, spo2_pct=88.0) == []  # no spam while it lasts


def test_short_dip_never_alarms() -> None:
    sim = Sim()
    for _ in range(5):
        sim.run(2, spo2_pct=80.0)
        sim.run(2)
    assert sim.events == []


def test_escalation_after_its_own_onset_and_no_deescalation() -> None:
    sim = Sim()
    sim.run(4, spo2_pct=88.0)
    assert _summary(sim.events) == [("new", "spo2_low", "medium", "id-0")]
    sim.run(3, spo2_pct=82.0)  # high level present 3 samples = 2 s: not yet
    assert len(sim.events) == 1
    update = sim.step(spo2_pct=82.0)
    assert _summary(update) == [("update", "spo2_low", "high", "id-0")]
    assert update[0].seq == 1
    assert update[0].values == {"spo2_pct": 82.0}
    assert sim.run(10, spo2_pct=88.0) == []  # back to the medium band: stays high, silent


def test_message_names_every_crossed_limit_whatever_priority_is_announced() -> None:
    sim = Sim()
    sim.run(3, spo2_pct=88.0)
    new = sim.step(spo2_pct=84.0)  # medium onset (3 s) reached; high only just started
    assert _summary(new) == [("new", "spo2_low", "medium", "id-0")]
    assert new[0].message == "SpO2 84 % < 90 % (medium), < 85 % (high)"
    sim.run(5, spo2_pct=88.0)
    ended = sim.run(3, spo2_pct=97.0)
    assert ended[-1].message == "cleared (last: SpO2 88 % < 90 % (medium))"


def test_straight_to_high_starts_high() -> None:
    sim = Sim()
    sim.run(4, hr_bpm=160.0)
    assert _summary(sim.events) == [("new", "hr_high", "high", "id-0")]


def test_end_after_clear_delay_and_flicker_keeps_one_alert() -> None:
    sim = Sim()
    sim.run(4, hr_bpm=130.0)
    assert len(sim.events) == 1
    for _ in range(3):  # flickers back to normal for 1 s at a time: clear_s is 2 s
        sim.run(1)
        sim.run(1, hr_bpm=130.0)
    assert len(sim.events) == 1
    sim.run(2)
    assert len(sim.events) == 1  # absent for 1 s only
    sim.run(1)
    assert sim.events[-1].event is EventType.END  # condition absent for clear_s
    assert sim.events[-1].id == "id-0"
    assert sim.events[-1].seq == 1
    assert sim.events[-1].priority is Priority.MEDIUM
    assert sim.events[-1].values == {"hr_bpm": 130.0}  # last triggering values
    sim.run(4, hr_bpm=130.0)  # a new episode is a new alert
    assert _summary(sim.events[-1:]) == [("new", "hr_high", "medium", "id-1")]


def test_invalid_values_never_trigger_and_end_active_alerts() -> None:
    sim = Sim()
    sim.run(10, spo2_pct=None, hr_bpm=None, rr_per_min=None, temp_c=None)
    assert sim.events == []
    sim.run(4, spo2_pct=80.0)
    assert _summary(sim.events) == [("new", "spo2_low", "high", "id-0")]
    sim.run(3, spo2_pct=None)  # probe says "not valid": the physiological alert ends
    assert [e.event for e in sim.events] == [EventType.NEW, EventType.END]


def test_stale_vitals_do_not_keep_alarming() -> None:
    sim = Sim()
    sim.run(4, rr_per_min=5.0)
    assert _summary(sim.events) == [("new", "rr_low", "high", "id-0")]
    # The board stops sending vitals: after stale_s the old low RR no longer counts.
    sim.run(7, no_vitals=True)
    assert sim.events[-1].event is EventType.END


def test_technical_alerts_from_status_flags() -> None:
    sim = Sim()
    sim.run(2, status=StatusFlag.PROBE_OFF | StatusFlag.ON_BATTERY, spo2_pct=None)
    assert _summary(sim.events) == [("new", "probe_off", "medium", "id-0")]
    assert sim.events[0].technical
    assert sim.events[0].model == "board-status/1"
    sim.run(1, status=StatusFlag.SENSOR_FAULT | StatusFlag.PROBE_OFF, spo2_pct=None)
    sim.run(1, status=StatusFlag.SENSOR_FAULT | StatusFlag.PROBE_OFF, spo2_pct=None)
    assert _summary(sim.events[1:]) == [("new", "sensor_fault", "high", "id-1")]
    sim.run(3, status=StatusFlag(0))
    assert sorted((e.event.value, e.kind) for e in sim.events[2:]) == [
        ("end", "probe_off"),
        ("end", "sensor_fault"),
    ]
    assert all(e.kind not in ("spo2_low",) for e in sim.events)


def test_link_lost_is_technical_and_beds_are_independent() -> None:
    sim = Sim(_config(beds=2, link_timeout_s=10.0))
    sim.run(15, bed="bed1")  # bed2 never sends anything
    kinds = [(e.event.value, e.bed, e.kind, e.priority.label) for e in sim.events]
    assert kinds == [("new", "bed2", "link_lost", "high")]
    sim.run(3, bed="bed2")
    assert (sim.events[-1].event, sim.events[-1].bed) == (EventType.END, "bed2")


def test_a_failing_detector_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        model = "broken/0"

        def update(self, bed: object, now: float) -> list[Detection]:
            raise RuntimeError("model exploded")

    config = _config()
    detectors: list[Detector] = [Broken(), FixedLimitsDetector(config.limits, config.alarms)]
    core = EdgeCore(config, now=0.0, detectors=detectors)
    events: list[AlertEvent] = []
    for t in range(1, 6):
        core.on_frame("bed1", VitalsFrame(hr_bpm=200.0), float(t))
        events.extend(core.evaluate(float(t)))
    assert core.detector_errors >= 5
    assert "detector broken/0 failed on bed bed1" in caplog.text
    assert isinstance(Broken(), Detector)
    assert [e.kind for e in events] == ["hr_high"]  # the other detector still works


def test_technical_detector_respects_off() -> None:
    config = parse_config(
        {"beds": [{"id": "b", "serial": "/x"}], "technical": {"lead_off": "off"}}
    )
    core = EdgeCore(config, now=0.0, detectors=[TechnicalDetector(config.technical, config.alarms)])
    core.on_frame("b", StatusFrame(flags=StatusFlag.LEAD_OFF), 1.0)
    bed = core.beds["b"]
    assert core.detectors[0].update(bed, 1.0) == []


def _hold_run(holds: list[float], technical: bool = False) -> list[tuple[float, EventType]]:
    """One condition present every second with the given hold_s; (time, event) of its events."""
    manager = AlarmManager(AlarmTiming(onset_s=5.0, technical_onset_s=2.0, clear_s=2.0))
    out = []
    for t, hold in enumerate(holds):
        d = Detection(kind="spo2_low", priority=Priority.MEDIUM, message="m", model="x/1",
                      technical=technical, hold_s=hold)
        out += [(e.time_s, e.event) for e in manager.update("b", [d], float(t))]
    return out


def test_the_hold_of_the_opening_detection_lengthens_the_onset() -> None:
    assert _hold_run([0.0] * 20) == [(5.0, EventType.NEW)]
    assert _hold_run([10.0] * 20) == [(15.0, EventType.NEW)]
    # Decided at the condition's first second: later holds neither add nor release.
    assert _hold_run([10.0] + [0.0] * 19) == [(15.0, EventType.NEW)]
    assert _hold_run([0.0] + [10.0] * 19) == [(5.0, EventType.NEW)]
    assert _hold_run([10.0] * 14) == []  # gone before the hold ran out: never announced
    assert _hold_run([10.0] * 20, technical=True) == [(2.0, EventType.NEW)]


def test_the_gate_holds_fixed_limits_only_and_a_broken_gate_holds_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Gate:
        def __init__(self, hold: float | None) -> None:
            self.hold = hold

        def artefact_hold(self, bed_id: str, vital: str, direction: str, limit: float) -> float:
            assert (vital, direction, limit) == ("hr_bpm", "high", 120.0)  # the mildest HR limit
            if self.hold is None:
                raise RuntimeError("gate exploded")
            return self.hold

    class Learned:
        model = "vitals-bundle/x"

        def update(self, bed: object, now: float) -> list[Detection]:
            return [Detection(kind="ensemble_anomaly", priority=Priority.HIGH, message="m",
                              model=self.model)]

    def first_new(hold: float | None) -> dict[str, float]:
        config = _config()
        detectors: list[Detector] = [FixedLimitsDetector(config.limits, config.alarms), Learned()]
        core = EdgeCore(config, now=0.0, detectors=detectors, gate=Gate(hold))
        times: dict[str, float] = {}
        for t in range(1, 30):
            core.on_frame("bed1", VitalsFrame(hr_bpm=200.0), float(t))
            for e in core.evaluate(float(t)):
                times.setdefault(e.kind, e.time_s)
        return times

    assert first_new(0.0) == {"hr_high": 4.0, "ensemble_anomaly": 4.0}  # onset_s 3
    assert first_new(7.0) == {"hr_high": 11.0, "ensemble_anomaly": 4.0}
    assert first_new(None) == {"hr_high": 4.0, "ensemble_anomaly": 4.0}
    assert "artefact gate failed on bed bed1" in caplog.text


# ------------------------------------------------------------------ acknowledgement (rules 6-10)


def _detect(kind: str = "spo2_low", priority: Priority = Priority.MEDIUM,
            technical: bool = False) -> Detection:
    return Detection(kind=kind, priority=priority, message=kind, model="x/1", technical=technical)


def _manager(**policy: Any) -> AlarmManager:
    ids = (f"id-{i}" for i in itertools.count())
    timing = AlarmTiming(onset_s=2.0, technical_onset_s=1.0, clear_s=2.0, **policy)
    return AlarmManager(timing, new_id=lambda: next(ids))


def _drive(m: AlarmManager, script: list[list[Detection]], t0: float = 0.0,
           bed: str = "b") -> list[tuple[float, str, str, str]]:
    """One update per second; (time, event, priority, reason) of every event."""
    out = []
    for k, detections in enumerate(script):
        for e in m.update(bed, detections, t0 + k):
            out.append((e.time_s, e.event.value, e.priority.label, e.reason))
    return out


def test_per_kind_onset_and_clear_replace_the_defaults() -> None:
    m = _manager(per_kind={"spo2_low": KindTiming(onset_s=5.0, clear_s=10.0)})
    events = _drive(m, [[_detect()]] * 6 + [[]] * 12)
    assert events == [(5.0, "new", "medium", "onset"), (16.0, "end", "medium", "cleared")]
    other = _drive(m, [[_detect("hr_high")]] * 3 + [[]] * 3, t0=100.0)
    assert other == [(102.0, "new", "medium", "onset"), (105.0, "end", "medium", "cleared")]


def test_a_latched_high_alert_ends_only_when_acknowledged() -> None:
    m = _manager(latch_high=True)
    high = [_detect(priority=Priority.HIGH)]
    events = _drive(m, [high] * 3 + [[]] * 5)
    assert events == [(2.0, "new", "high", "onset"), (5.0, "update", "high", "latched")]
    assert m.active("b") == [("b", "spo2_low", Priority.HIGH)]
    (back,) = m.update("b", high, 9.0)  # the condition returns: same alert, not latched
    assert (back.event, back.reason, back.latched, back.seq) == (EventType.UPDATE, "returned",
                                                                 False, 2)
    assert _drive(m, [[]] * 3, t0=10.0) == [(12.0, "update", "high", "latched")]
    (end,) = m.acknowledge("b", 20.0)
    assert (end.event, end.reason, end.acknowledged, end.id) == (EventType.END, "acknowledged",
                                                                True, "id-0")
    assert m.active() == []


def test_medium_and_technical_alerts_never_latch() -> None:
    m = _manager(latch_high=True)
    assert _drive(m, [[_detect()]] * 3 + [[]] * 3)[-1] == (5.0, "end", "medium", "cleared")
    tech = [_detect("probe_off", Priority.HIGH, technical=True)]
    assert _drive(m, [tech] * 2 + [[]] * 3, t0=50.0)[-1] == (54.0, "end", "high", "cleared")


def test_acknowledge_one_alert_by_id_or_all_and_unknown_ids_give_nothing() -> None:
    m = _manager()
    _drive(m, [[_detect(), _detect("hr_high")]] * 3)
    assert m.acknowledge("b", 10.0, alert_id="no-such-id") == []
    assert m.acknowledge("other-bed", 10.0) == []
    (one,) = m.acknowledge("b", 10.0, alert_id="id-1")
    assert (one.kind, one.event, one.acknowledged) == ("hr_high", EventType.UPDATE, True)
    (rest,) = m.acknowledge("b", 11.0)  # hr_high was acknowledged already
    assert (rest.kind, rest.acknowledged) == ("spo2_low", True)
    assert m.acknowledge("b", 12.0) == []


def test_unacknowledged_alerts_escalate_one_level_per_period_until_acknowledged() -> None:
    m = _manager(escalate_after_s=30.0)
    low = [_detect(priority=Priority.LOW)]
    events = _drive(m, [low] * 80)
    assert events == [(2.0, "new", "low", "onset"), (32.0, "update", "medium", "unacknowledged"),
                      (62.0, "update", "high", "unacknowledged")]
    m2 = _manager(escalate_after_s=30.0)
    _drive(m2, [low] * 10)
    m2.acknowledge("b", 10.0)
    assert _drive(m2, [low] * 60, t0=10.0) == []  # acknowledged: no escalation
    m3 = _manager(escalate_after_s=30.0)
    tech = [_detect("probe_off", Priority.LOW, technical=True)]
    assert _drive(m3, [tech] * 80) == [(1.0, "new", "low", "onset")]


def test_audio_pause_then_re_alarm_while_still_active_and_new_alerts_are_not_paused() -> None:
    m = _manager(max_silence_s=120.0)
    _drive(m, [[_detect()]] * 3)
    (paused,) = m.silence("b", 60.0, 3.0)
    assert (paused.reason, paused.silenced_until_s, paused.seq) == ("audio paused", 63.0, 1)
    events = _drive(m, [[_detect()]] * 5 + [[_detect(), _detect("hr_high")]] * 60, t0=4.0)
    assert (9.0 + 2.0, "new", "medium", "onset") in events  # hr_high: not paused
    assert (63.0, "update", "medium", "audio pause ended") in events
    assert sum(e[3] == "audio pause ended" for e in events) == 1  # spo2_low only, once
    with pytest.raises(ValueError, match="at most 120 s"):
        m.silence("b", 121.0, 70.0)
    with pytest.raises(ValueError, match="more than 0"):
        m.silence("b", 0.0, 70.0)


def test_alarm_policy_from_the_configuration() -> None:
    config = parse_config({
        "beds": [{"id": "b", "serial": "/x"}],
        "alarms": {"latch_high": True, "escalate_after_s": 90, "max_silence_s": 60,
                   "kinds": {"rr_high": {"clear_s": 30}, "probe_off": {"onset_s": 10}}},
    })
    timing = alarm_timing(config.alarms)
    assert (timing.latch_high, timing.escalate_after_s, timing.max_silence_s) == (True, 90, 60)
    assert timing.clear("rr_high") == 30.0
    assert timing.onset("rr_high", technical=False) == 5.0  # the default onset_s
    assert timing.onset("probe_off", technical=True) == 10.0
    assert timing.onset("lead_off", technical=True) == 2.0
    with pytest.raises(ConfigError) as info:
        parse_config({"beds": [{"id": "b", "serial": "/x"}],
                      "alarms": {"latch_high": "yes", "kinds": {"spo2_lo": {}},
                                 "max_silence_s": 5}})
    errors = "\n".join(info.value.errors)
    assert "alarms.latch_high: expected true or false" in errors
    assert "alarms.kinds.spo2_lo: unknown key; did you mean 'spo2_low'?" in errors
    assert "alarms.max_silence_s: 5 is out of range; allowed 10..600" in errors
