"""Alarm manager: turns a stream of detections into a calm stream of alert events.

Sans-I/O, clock injected: the caller passes the bed's detections and the edge's monotonic time;
the manager returns the alert events to publish. Everything that decides *when* an alert is
raised, escalated or ended lives here; detectors only say what they see.

Rules, per (bed, kind):

1. **Onset.** A condition must be present continuously for ``onset_s`` (``technical_onset_s``
   for technical detections) before ``new`` is emitted, plus the ``hold_s`` of the detection
   that opened it (the LSTM artefact gate's decision at the condition's first second, kept
   until the condition is announced or forgotten: edge/learned.py rule 8). A condition that
   vanishes earlier is forgotten silently.
2. **Priority.** The announced priority is the most urgent level that has itself persisted for
   the onset time: a single sample below the high threshold does not make a high alert.
3. **Escalation.** While active, reaching a more urgent level (after its own onset) emits one
   ``update`` with the new priority. Priorities never de-escalate: a nurse who saw "high" keeps
   seeing "high" until the alert ends.
4. **End.** When the condition has been absent for ``clear_s``, ``end`` is emitted with the
   announced priority and the last triggering values, and the alert is forgotten. If the
   condition returns before that, the same alert continues (no new id, no spam).
5. **Identity.** Each alert gets a fresh UUID at ``new``; every event of that alert carries it
   and a per-alert ``seq`` (0, 1, 2, ...), so ``(id, seq)`` identifies a message.
6. **Per-kind timing.** ``onset_s`` and ``clear_s`` can be set per alert kind
   (`AlarmTiming.per_kind`): a longer clear delay is the time hysteresis that stops a value
   hovering at a limit from ending and re-raising its alert.
7. **Latching.** With ``latch_high``, a physiological alert announced at high priority whose
   condition ends is not ended: one ``update`` (``latched``) says the condition is gone, and
   the alert stays until acknowledged (then ``end``). A latched condition that returns is the
   same alert again (``update``, no longer latched).
8. **Acknowledge.** `acknowledge` marks a bed's announced alerts (or one, by id) as seen: one
   ``update`` each (``acknowledged``), or ``end`` for a latched one. An acknowledged alert is
   not escalated for being unacknowledged; a more urgent level still escalates it (rule 3).
9. **Escalation when unacknowledged.** With ``escalate_after_s`` > 0, a physiological alert
   below high that nobody acknowledged for that long since it was announced (or last raised)
   goes up one level: one ``update``, reason ``unacknowledged``.
10. **Audio pause.** `silence` pauses the audio of a bed's announced alerts for up to
    ``max_silence_s``: one ``update`` each with ``silenced_until_s``. When the pause runs out
    and the alert is still announced, one ``update`` re-alarms it. Alerts raised during the
    pause are not paused: a new condition always sounds.

Rules 9 and 10 run on the clock: they are checked in `update`, which the runtime calls for
every bed at least once a second.

Every event carries ``reason``: why it was emitted (``onset``, ``escalated``,
``unacknowledged``, ``acknowledged``, ``latched``, ``returned``, ``audio paused``,
``audio pause ended``, ``cleared``).

No event is emitted more than once per call per kind; calling ``update`` every second with the
same detections emits nothing after the initial ``new``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from edge.config import AlarmConfig
from edge.events import AlertEvent, Detection, EventType, Priority

__all__ = ["ActiveAlert", "AlarmManager", "AlarmTiming", "KindTiming", "alarm_timing"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class KindTiming:
    """Onset and clear delays (s) of one alert kind, replacing the defaults (rule 6)."""

    onset_s: float
    clear_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmTiming:
    """Delays in seconds and the acknowledgement policy (see the module rules).

    ``escalate_after_s`` 0 = never escalate for being unacknowledged; ``max_silence_s``: the
    longest audio pause `silence` accepts.
    """

    onset_s: float
    technical_onset_s: float
    clear_s: float
    per_kind: Mapping[str, KindTiming] = field(default_factory=dict)
    latch_high: bool = False
    escalate_after_s: float = 0.0
    max_silence_s: float = 120.0

    def onset(self, kind: str, technical: bool) -> float:
        """Onset delay (s) of ``kind`` (rules 1 and 6)."""
        custom = self.per_kind.get(kind)
        if custom is not None:
            return custom.onset_s
        return self.technical_onset_s if technical else self.onset_s

    def clear(self, kind: str) -> float:
        """Clear delay (s) of ``kind`` (rules 4 and 6)."""
        custom = self.per_kind.get(kind)
        return custom.clear_s if custom is not None else self.clear_s


def alarm_timing(config: AlarmConfig) -> AlarmTiming:
    """The manager's timing and policy from the validated ``[alarms]`` section."""
    return AlarmTiming(
        onset_s=config.onset_s,
        technical_onset_s=config.technical_onset_s,
        clear_s=config.clear_s,
        per_kind={k: KindTiming(onset_s=o, clear_s=c) for k, (o, c) in config.kinds.items()},
        latch_high=config.latch_high,
        escalate_after_s=config.escalate_after_s,
        max_silence_s=config.max_silence_s,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveAlert:
    """One announced alert as it stands (`AlarmManager.announced`); times are edge seconds."""

    id: str
    kind: str
    priority: Priority
    technical: bool
    acknowledged: bool
    latched: bool
    silenced_until_s: float | None
    started_s: float
    message: str


@dataclass(slots=True)
class _Track:
    """State of one condition of one bed."""

    first_seen_s: float
    last: Detection
    hold_s: float = 0.0
    since_s: dict[Priority, float] = field(default_factory=dict)
    absent_since_s: float | None = None
    alert_id: str | None = None
    announced: Priority | None = None
    raised_s: float = 0.0  # when the announced priority was set (rule 9)
    seq: int = 0
    acknowledged: bool = False
    latched: bool = False
    silenced_until_s: float | None = None


def _new_uuid() -> str:
    return str(uuid.uuid4())


class AlarmManager:
    """Onset, escalation, latching, acknowledgement and clearing for every bed."""

    def __init__(
        self, timing: AlarmTiming, *, new_id: Callable[[], str] = _new_uuid
    ) -> None:
        self._timing = timing
        self._new_id = new_id
        self._tracks: dict[tuple[str, str], _Track] = {}

    @property
    def timing(self) -> AlarmTiming:
        """The delays and policy in use."""
        return self._timing

    def retime(self, timing: AlarmTiming) -> None:
        """Use ``timing`` from the next update on (a configuration reload). Alerts, their ids,
        acknowledgements and audio pauses carry over; a latched alert stays latched."""
        self._timing = timing

    def active(self, bed: str | None = None) -> list[tuple[str, str, Priority]]:
        """(bed, kind, announced priority) of alerts currently raised, optionally for one bed."""
        return [
            (b, kind, t.announced)
            for (b, kind), t in self._tracks.items()
            if t.announced is not None and (bed is None or b == bed)
        ]

    def announced(self, bed: str) -> list[ActiveAlert]:
        """The bed's announced alerts (the current state a subscriber would rebuild), most
        urgent first, then oldest first."""
        out = [
            ActiveAlert(id=t.alert_id, kind=kind, priority=t.announced, technical=t.last.technical,
                        acknowledged=t.acknowledged, latched=t.latched,
                        silenced_until_s=t.silenced_until_s, started_s=t.first_seen_s,
                        message=t.last.message)
            for (b, kind), t in self._tracks.items()
            if b == bed and t.alert_id is not None and t.announced is not None
        ]
        return sorted(out, key=lambda a: (-a.priority, a.started_s))

    def update(self, bed: str, detections: Iterable[Detection], now: float) -> list[AlertEvent]:
        """Feed every detection present for ``bed`` at time ``now`` (s); returns events to publish.

        Detections of kinds not listed are taken as absent. If two detections share a kind the
        more urgent one counts. Rules 9 and 10 (clock-driven) are applied to ``bed`` here too.
        """
        present: dict[str, Detection] = {}
        for d in detections:
            prev = present.get(d.kind)
            if prev is None or d.priority > prev.priority:
                present[d.kind] = d
        events: list[AlertEvent] = []
        for kind, detection in present.items():
            event = self._present(bed, kind, detection, now)
            if event is not None:
                events.append(event)
        for key in [k for k in self._tracks if k[0] == bed and k[1] not in present]:
            event = self._absent(key, now)
            if event is not None:
                events.append(event)
        emitted = {e.kind for e in events}
        for key in [k for k in self._tracks if k[0] == bed and k[1] not in emitted]:
            event = self._clock(self._tracks[key], bed, now)
            if event is not None:
                events.append(event)
        return events

    def acknowledge(
        self, bed: str, now: float, alert_id: str | None = None
    ) -> list[AlertEvent]:
        """Rule 8: acknowledge ``bed``'s announced alerts, or only ``alert_id``; their events.

        An id that is not an announced alert of ``bed`` (or already acknowledged) gives no
        event: the caller reports it.
        """
        events: list[AlertEvent] = []
        for key, track in list(self._tracks.items()):
            if key[0] != bed or track.alert_id is None or track.acknowledged:
                continue
            if alert_id is not None and track.alert_id != alert_id:
                continue
            track.acknowledged = True
            track.seq += 1
            if track.latched:
                del self._tracks[key]
                events.append(self._event(bed, track, EventType.END, now, "acknowledged"))
            else:
                events.append(self._event(bed, track, EventType.UPDATE, now, "acknowledged"))
        return events

    def silence(self, bed: str, seconds: float, now: float) -> list[AlertEvent]:
        """Rule 10: pause the audio of ``bed``'s announced alerts for ``seconds`` (s).

        Raises ValueError outside ``0 < seconds <= max_silence_s``.
        """
        limit = self._timing.max_silence_s
        if not 0.0 < seconds <= limit:
            raise ValueError(f"audio pause must be more than 0 and at most {limit:g} s, "
                             f"got {seconds:g}")
        events: list[AlertEvent] = []
        for (b, _), track in self._tracks.items():
            if b != bed or track.alert_id is None:
                continue
            track.silenced_until_s = now + seconds
            track.seq += 1
            events.append(self._event(bed, track, EventType.UPDATE, now, "audio paused"))
        return events

    def _present(self, bed: str, kind: str, d: Detection, now: float) -> AlertEvent | None:
        track = self._tracks.get((bed, kind))
        if track is None:
            track = _Track(first_seen_s=now, last=d, hold_s=0.0 if d.technical else d.hold_s)
            self._tracks[(bed, kind)] = track
        track.last = d
        track.absent_since_s = None
        if track.latched:  # rule 7: the condition came back before anyone acknowledged
            track.latched = False
            track.seq += 1
            return self._event(bed, track, EventType.UPDATE, now, "returned")
        for level in Priority:
            if d.priority >= level:
                track.since_s.setdefault(level, now)
            else:
                track.since_s.pop(level, None)
        onset = self._timing.onset(kind, d.technical) + track.hold_s
        ready = [lvl for lvl, since in track.since_s.items() if now - since >= onset]
        if not ready:
            return None
        level = max(ready)
        if track.alert_id is None:
            track.alert_id = self._new_id()
            track.announced = level
            track.raised_s = now
            track.seq = 0
            return self._event(bed, track, EventType.NEW, now, "onset")
        if track.announced is not None and level > track.announced:
            return self._raise(bed, track, level, now, "escalated")
        return None

    def _raise(
        self, bed: str, track: _Track, level: Priority, now: float, reason: str
    ) -> AlertEvent:
        track.announced = level
        track.raised_s = now
        track.seq += 1
        return self._event(bed, track, EventType.UPDATE, now, reason)

    def _absent(self, key: tuple[str, str], now: float) -> AlertEvent | None:
        track = self._tracks[key]
        if track.alert_id is None:
            del self._tracks[key]
            return None
        track.since_s.clear()
        if track.latched:
            return None
        if track.absent_since_s is None:
            track.absent_since_s = now
        if now - track.absent_since_s < self._timing.clear(key[1]):
            return None
        track.seq += 1
        if (self._timing.latch_high and track.announced is Priority.HIGH
                and not track.last.technical and not track.acknowledged):
            track.latched = True  # rule 7
            return self._event(key[0], track, EventType.UPDATE, now, "latched")
        del self._tracks[key]
        return self._event(key[0], track, EventType.END, now, "cleared")

    def _clock(self, track: _Track, bed: str, now: float) -> AlertEvent | None:
        """Rules 9 and 10 for one announced track."""
        if track.alert_id is None or track.announced is None:
            return None
        until = track.silenced_until_s
        if until is not None and now >= until:
            track.silenced_until_s = None
            track.seq += 1
            return self._event(bed, track, EventType.UPDATE, now, "audio pause ended")
        after = self._timing.escalate_after_s
        if (after > 0.0 and not track.acknowledged and not track.latched
                and not track.last.technical and track.announced < Priority.HIGH
                and now - track.raised_s >= after):
            return self._raise(bed, track, Priority(track.announced + 1), now, "unacknowledged")
        return None

    @staticmethod
    def _event(
        bed: str, track: _Track, event: EventType, now: float, reason: str
    ) -> AlertEvent:
        d = track.last
        assert track.alert_id is not None
        assert track.announced is not None
        message = d.message if event is not EventType.END else f"cleared (last: {d.message})"
        return AlertEvent(
            id=track.alert_id,
            seq=track.seq,
            event=event,
            bed=bed,
            kind=d.kind,
            priority=track.announced,
            message=message,
            model=d.model,
            technical=d.technical,
            values=dict(d.values),
            thresholds=dict(d.thresholds),
            time_s=now,
            started_s=track.first_seen_s,
            scores=dict(d.scores),
            votes=dict(d.votes),
            reason=reason,
            acknowledged=track.acknowledged,
            latched=track.latched,
            silenced_until_s=track.silenced_until_s,
            drivers=d.drivers,
        )
