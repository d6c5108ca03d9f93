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

No event is emitted more than once per call per kind; calling ``update`` every second with the
same detections emits nothing after the initial ``new``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from edge.events import AlertEvent, Detection, EventType, Priority

__all__ = ["AlarmManager", "AlarmTiming"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmTiming:
    """Onset and clear delays in seconds (see the module rules)."""

    onset_s: float
    technical_onset_s: float
    clear_s: float


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
    seq: int = 0


def _new_uuid() -> str:
    return str(uuid.uuid4())


class AlarmManager:
    """Onset, escalation and clearing for every bed; one instance serves all beds."""

    def __init__(
        self, timing: AlarmTiming, *, new_id: Callable[[], str] = _new_uuid
    ) -> None:
        self._timing = timing
        self._new_id = new_id
        self._tracks: dict[tuple[str, str], _Track] = {}

    def active(self, bed: str | None = None) -> list[tuple[str, str, Priority]]:
        """(bed, kind, announced priority) of alerts currently raised, optionally for one bed."""
        return [
            (b, kind, t.announced)
            for (b, kind), t in self._tracks.items()
            if t.announced is not None and (bed is None or b == bed)
        ]

    def update(self, bed: str, detections: Iterable[Detection], now: float) -> list[AlertEvent]:
        """Feed every detection present for ``bed`` at time ``now`` (s); returns events to publish.

        Detections of kinds not listed are taken as absent. If two detections share a kind the
        more urgent one counts.
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
        return events

    def _present(self, bed: str, kind: str, d: Detection, now: float) -> AlertEvent | None:
        track = self._tracks.get((bed, kind))
        if track is None:
            track = _Track(first_seen_s=now, last=d, hold_s=0.0 if d.technical else d.hold_s)
            self._tracks[(bed, kind)] = track
        track.last = d
        track.absent_since_s = None
        for level in Priority:
            if d.priority >= level:
                track.since_s.setdefault(level, now)
            else:
                track.since_s.pop(level, None)
        onset = self._timing.technical_onset_s if d.technical else self._timing.onset_s
        onset += track.hold_s
        ready = [lvl for lvl, since in track.since_s.items() if now - since >= onset]
        if not ready:
            return None
        level = max(ready)
        if track.alert_id is None:
            track.alert_id = self._new_id()
            track.announced = level
            track.seq = 0
            return self._event(bed, track, EventType.NEW, now)
        if track.announced is not None and level > track.announced:
            track.announced = level
            track.seq += 1
            return self._event(bed, track, EventType.UPDATE, now)
        return None

    def _absent(self, key: tuple[str, str], now: float) -> AlertEvent | None:
        track = self._tracks[key]
        if track.alert_id is None:
            del self._tracks[key]
            return None
        track.since_s.clear()
        if track.absent_since_s is None:
            track.absent_since_s = now
        if now - track.absent_since_s < self._timing.clear_s:
            return None
        del self._tracks[key]
        track.seq += 1
        return self._event(key[0], track, EventType.END, now)

    @staticmethod
    def _event(bed: str, track: _Track, event: EventType, now: float) -> AlertEvent:
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
        )
