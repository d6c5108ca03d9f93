r"""Injectable clinical and technical events. PURE: no I/O, no clock, no global state.

This module is also used offline to label training data, so everything here is a function of
its arguments: the same vitals, times, events and seed always give the same result.

Time course of an event (all times in seconds of simulated time)::

    effect
      1 |        ________________
        |       /                \
        |      /                  \
      0 |_____/                    \_______
            onset  +ramp   +duration  +ramp = end

The effect rises linearly over ``ramp_s`` from ``onset_s``, holds at full ``magnitude`` for
``duration_s`` and falls back over another ``ramp_s``. With ``ramp_s = 0`` it is a step. An
event is *active* (its ground-truth label is true) on ``[onset_s, end_s)``. Technical events
(probe off, lead off, noise burst, board reset, cable unplug) are on or off: they are active on
the same interval and ignore the ramp's shape.

Clinical effects are offsets on the true physiology (before measurement noise); technical effects
act on the measurement (values become "not measured" = NaN, or noisy). Magnitudes and their
units are in `DEFAULT_MAGNITUDE`'s comment per kind.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from firmware_bridge.sim._noise import hashed_normal
from firmware_bridge.sim.vitals import N_VITALS, Vital, clamp_vitals

__all__ = [
    "CLINICAL_KINDS",
    "DEFAULT_DURATION_S",
    "DEFAULT_MAGNITUDE",
    "EVENT_SYNTAX",
    "TECHNICAL_KINDS",
    "Event",
    "EventKind",
    "TechnicalState",
    "active_mask",
    "apply_clinical_events",
    "apply_events",
    "apply_technical_events",
    "event_envelopes",
    "event_labels",
    "parse_event",
    "technical_state",
]


class EventKind(enum.StrEnum):
    """What happens. Clinical kinds change physiology; technical kinds change the measurement."""

    DESATURATION = "desaturation"
    TACHYCARDIA = "tachycardia"
    BRADYCARDIA = "bradycardia"
    TACHYPNOEA = "tachypnoea"
    BRADYPNOEA = "bradypnoea"
    APNOEA = "apnoea"
    HYPOTENSION = "hypotension"
    FEVER = "fever"
    PROBE_OFF = "probe_off"
    LEAD_OFF = "lead_off"
    NOISE_BURST = "noise_burst"
    BOARD_RESET = "board_reset"
    CABLE_UNPLUG = "cable_unplug"


CLINICAL_KINDS: Final = frozenset(
    {
        EventKind.DESATURATION,
        EventKind.TACHYCARDIA,
        EventKind.BRADYCARDIA,
        EventKind.TACHYPNOEA,
        EventKind.BRADYPNOEA,
        EventKind.APNOEA,
        EventKind.HYPOTENSION,
        EventKind.FEVER,
    }
)
TECHNICAL_KINDS: Final = frozenset(set(EventKind) - CLINICAL_KINDS)

DEFAULT_MAGNITUDE: Final[dict[EventKind, float]] = {
    EventKind.DESATURATION: 12.0,  # SpO2 drop, percentage points
    EventKind.TACHYCARDIA: 50.0,  # HR rise, bpm
    EventKind.BRADYCARDIA: 30.0,  # HR fall, bpm
    EventKind.TACHYPNOEA: 14.0,  # RR rise, breaths/min
    EventKind.BRADYPNOEA: 7.0,  # RR fall, breaths/min
    EventKind.APNOEA: 1.0,  # fraction of breathing that stops (1 = RR goes to 0)
    EventKind.HYPOTENSION: 35.0,  # systolic fall, mmHg (diastolic falls 0.6 of that)
    EventKind.FEVER: 2.0,  # temperature rise, degC (HR follows, see _FEVER_HR_BPM_PER_C)
    EventKind.PROBE_OFF: 1.0,  # unused
    EventKind.LEAD_OFF: 1.0,  # unused
    EventKind.NOISE_BURST: 1.0,  # noise level relative to a typical motion artefact
    EventKind.BOARD_RESET: 1.0,  # unused
    EventKind.CABLE_UNPLUG: 1.0,  # unused
}

DEFAULT_DURATION_S: Final[dict[EventKind, float]] = {
    **dict.fromkeys(CLINICAL_KINDS, 60.0),
    EventKind.PROBE_OFF: 20.0,
    EventKind.LEAD_OFF: 20.0,
    EventKind.NOISE_BURST: 10.0,
    EventKind.BOARD_RESET: 1.0,  # time the board is silent before it boots again
    EventKind.CABLE_UNPLUG: 5.0,  # time the port is gone
}

# Diastolic pressure falls less than systolic in hypotension (pulse pressure narrows).
_HYPOTENSION_DBP_FRACTION: Final = 0.6
# Liebermeister's rule: heart rate rises about 10 bpm per degC of fever.
_FEVER_HR_BPM_PER_C: Final = 10.0
# Vitals noise of a noise burst at magnitude 1, per reading.
_NOISE_SD: Final[dict[Vital, float]] = {
    Vital.HR: 12.0,  # bpm
    Vital.SPO2: 3.0,  # %
    Vital.RR: 4.0,  # breaths/min
}
_NOISE_STREAM: Final = 101

EVENT_SYNTAX: Final = (
    "KIND@ONSET[+RAMP][:DURATION][=MAGNITUDE], times in seconds of simulated time, e.g. "
    "'desaturation@60+30:120=15' (SpO2 falls by 15 points over 30 s from t=60 s, stays down "
    "120 s, recovers over 30 s). KIND is one of: " + ", ".join(k.value for k in EventKind)
)
_SPEC_RE: Final = re.compile(
    r"^(?P<kind>[a-z_-]+)@(?P<onset>[0-9.]+)(?:\+(?P<ramp>[0-9.]+))?"
    r"(?::(?P<duration>[0-9.]+))?(?:=(?P<magnitude>-?[0-9.]+))?$"
)


@dataclass(frozen=True, slots=True)
class Event:
    """One injected event. Times in seconds of simulated time, magnitude in the kind's unit."""

    kind: EventKind
    onset_s: float
    duration_s: float
    ramp_s: float = 0.0
    magnitude: float = math.nan  # NaN: use DEFAULT_MAGNITUDE[kind]

    def __post_init__(self) -> None:
        """Reject values that would make the time course meaningless."""
        object.__setattr__(self, "kind", EventKind(self.kind))
        for name in ("onset_s", "duration_s", "ramp_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"event {self.kind}: {name}={value} must be a number >= 0")
        if math.isnan(self.magnitude):
            object.__setattr__(self, "magnitude", DEFAULT_MAGNITUDE[self.kind])
        elif not math.isfinite(self.magnitude):
            raise ValueError(f"event {self.kind}: magnitude={self.magnitude} must be finite")

    @property
    def end_s(self) -> float:
        """First instant after the event: onset + ramp + duration + ramp."""
        return self.onset_s + 2.0 * self.ramp_s + self.duration_s

    @property
    def clinical(self) -> bool:
        """True if the event changes physiology rather than the measurement."""
        return self.kind in CLINICAL_KINDS

    def envelope(self, t_s: ArrayLike) -> NDArray[np.float64]:
        """Effect strength in [0, 1] at each time (the trapezoid in the module docstring)."""
        t = np.asarray(t_s, dtype=np.float64)
        if not self.clinical or self.ramp_s == 0:
            return self.active(t).astype(np.float64)
        rise = np.clip((t - self.onset_s) / self.ramp_s, 0.0, 1.0)
        fall = np.clip((self.end_s - t) / self.ramp_s, 0.0, 1.0)
        env: NDArray[np.float64] = np.minimum(rise, fall)
        return env

    def active(self, t_s: ArrayLike) -> NDArray[np.bool_]:
        """Ground truth: True on [onset, end)."""
        t = np.asarray(t_s, dtype=np.float64)
        return (t >= self.onset_s) & (t < self.end_s)

    def to_spec(self) -> str:
        """The command-line form that `parse_event` reads back."""
        return (
            f"{self.kind.value}@{self.onset_s:g}+{self.ramp_s:g}:{self.duration_s:g}"
            f"={self.magnitude:g}"
        )


def parse_event(spec: str) -> Event:
    """Parse ``KIND@ONSET[+RAMP][:DURATION][=MAGNITUDE]`` (see EVENT_SYNTAX); ValueError if bad."""
    m = _SPEC_RE.match(spec.strip().lower())
    if m is None:
        raise ValueError(f"bad event {spec!r}; expected {EVENT_SYNTAX}")
    kind_text = m["kind"].replace("-", "_")
    try:
        kind = EventKind(kind_text)
    except ValueError:
        known = ", ".join(k.value for k in EventKind)
        raise ValueError(f"unknown event kind {kind_text!r} in {spec!r}; known: {known}") from None
    try:
        onset = float(m["onset"])
        ramp = float(m["ramp"]) if m["ramp"] else 0.0
        duration = float(m["duration"]) if m["duration"] else DEFAULT_DURATION_S[kind]
        magnitude = float(m["magnitude"]) if m["magnitude"] else math.nan
    except ValueError:
        raise ValueError(f"bad number in event {spec!r}; expected {EVENT_SYNTAX}") from None
    return Event(kind, onset, duration, ramp, magnitude)


def _as_rows(vitals: ArrayLike) -> NDArray[np.float64]:
    v = np.array(vitals, dtype=np.float64, copy=True)
    if v.ndim == 1:
        v = v[np.newaxis, :]
    if v.ndim != 2 or v.shape[1] != N_VITALS:
        raise ValueError(f"vitals must have shape (n, {N_VITALS}), got {np.shape(vitals)}")
    return v


def _times(t_s: ArrayLike, n: int) -> NDArray[np.float64]:
    t = np.asarray(t_s, dtype=np.float64).reshape(-1)
    if t.shape[0] != n:
        raise ValueError(f"{t.shape[0]} times for {n} vitals rows")
    return t


def apply_clinical_events(
    vitals: ArrayLike, t_s: ArrayLike, events: Iterable[Event]
) -> NDArray[np.float64]:
    """Vitals rows (n, 7) at times t_s (n,) -> a modified copy with the clinical events applied.

    Offsets add up when events overlap; results are clipped to displayable ranges. NaN (not
    measured) stays NaN. MAP moves with the one-third rule of the systolic/diastolic changes.
    """
    v = _as_rows(vitals)
    t = _times(t_s, v.shape[0])
    delta = np.zeros_like(v)
    rr_factor = np.ones(v.shape[0])
    for ev in events:
        if not ev.clinical:
            continue
        e = ev.envelope(t) * ev.magnitude
        if ev.kind is EventKind.DESATURATION:
            delta[:, Vital.SPO2] -= e
        elif ev.kind is EventKind.TACHYCARDIA:
            delta[:, Vital.HR] += e
        elif ev.kind is EventKind.BRADYCARDIA:
            delta[:, Vital.HR] -= e
        elif ev.kind is EventKind.TACHYPNOEA:
            delta[:, Vital.RR] += e
        elif ev.kind is EventKind.BRADYPNOEA:
            delta[:, Vital.RR] -= e
        elif ev.kind is EventKind.APNOEA:
            rr_factor *= np.clip(1.0 - e, 0.0, 1.0)
        elif ev.kind is EventKind.HYPOTENSION:
            dbp_drop = e * _HYPOTENSION_DBP_FRACTION
            delta[:, Vital.SBP] -= e
            delta[:, Vital.DBP] -= dbp_drop
            delta[:, Vital.MAP] -= (e + 2.0 * dbp_drop) / 3.0
        elif ev.kind is EventKind.FEVER:
            delta[:, Vital.TEMP] += e
            delta[:, Vital.HR] += e * _FEVER_HR_BPM_PER_C
    out = v + delta
    out[:, Vital.RR] *= rr_factor
    return clamp_vitals(out)


@dataclass(frozen=True, slots=True)
class TechnicalState:
    """Per-time technical conditions, arrays aligned with the times they were computed for."""

    probe_off: NDArray[np.bool_]
    lead_off: NDArray[np.bool_]
    noise: NDArray[np.float64]  # noise level, 0 = none, 1 = a typical motion artefact
    board_off: NDArray[np.bool_]  # board reset or cable unplugged: nothing is sent


def technical_state(t_s: ArrayLike, events: Iterable[Event]) -> TechnicalState:
    """Which technical events are active at each time (vectorized; for waveforms too)."""
    t = np.asarray(t_s, dtype=np.float64).reshape(-1)
    probe = np.zeros(t.shape, dtype=np.bool_)
    lead = np.zeros(t.shape, dtype=np.bool_)
    off = np.zeros(t.shape, dtype=np.bool_)
    noise = np.zeros(t.shape)
    for ev in events:
        if ev.kind is EventKind.PROBE_OFF:
            probe |= ev.active(t)
        elif ev.kind is EventKind.LEAD_OFF:
            lead |= ev.active(t)
        elif ev.kind is EventKind.NOISE_BURST:
            noise += ev.active(t) * abs(ev.magnitude)
        elif ev.kind in (EventKind.BOARD_RESET, EventKind.CABLE_UNPLUG):
            off |= ev.active(t)
    return TechnicalState(probe, lead, noise, off)


def apply_technical_events(
    vitals: ArrayLike, t_s: ArrayLike, events: Iterable[Event], *, seed: int = 0
) -> NDArray[np.float64]:
    """Apply what technical events do to the *readings*.

    Probe off: SpO2 not measured (NaN). Lead off: HR not measured (NaN). Noise burst: HR, SpO2
    and RR readings get Gaussian noise (`_NOISE_SD` times the magnitude); the noise is a function
    of (seed, whole second of t, column) only, so it is reproducible. Board reset / cable unplug
    change nothing here: the board simply sends nothing (see board.py).
    """
    v = _as_rows(vitals)
    t = _times(t_s, v.shape[0])
    state = technical_state(t, events)
    if np.any(state.noise > 0):
        second = np.floor(t).astype(np.int64)
        for col, sd in _NOISE_SD.items():
            z = hashed_normal(seed, _NOISE_STREAM + int(col), second)
            v[:, col] += z * sd * state.noise
        v = clamp_vitals(v)
    v[state.probe_off, Vital.SPO2] = np.nan
    v[state.lead_off, Vital.HR] = np.nan
    return v


def apply_events(
    vitals: ArrayLike, t_s: ArrayLike, events: Iterable[Event], *, seed: int = 0
) -> NDArray[np.float64]:
    """Clinical then technical events on vitals rows (n, 7) sampled at times t_s (n,) seconds.

    Returns a modified copy; the input is not changed. This is the function to label or augment
    training data with; `event_labels` gives the matching ground truth.
    """
    evs = list(events)
    return apply_technical_events(apply_clinical_events(vitals, t_s, evs), t_s, evs, seed=seed)


def active_mask(t_s: ArrayLike, events: Iterable[Event], kind: EventKind) -> NDArray[np.bool_]:
    """True where any event of ``kind`` is active."""
    t = np.asarray(t_s, dtype=np.float64).reshape(-1)
    mask = np.zeros(t.shape, dtype=np.bool_)
    for ev in events:
        if ev.kind is kind:
            mask |= ev.active(t)
    return mask


def event_labels(t_s: ArrayLike, events: Sequence[Event]) -> dict[EventKind, NDArray[np.bool_]]:
    """Ground truth per time (e.g. one per second): for every kind, is such an event active?

    Every kind is present in the result (all False if no such event), so label matrices of
    different scenarios have the same columns.
    """
    return {kind: active_mask(t_s, events, kind) for kind in EventKind}


def event_envelopes(
    t_s: ArrayLike, events: Sequence[Event]
) -> Mapping[EventKind, NDArray[np.float64]]:
    """Effect strength per kind in [0, 1] (the largest over overlapping events of one kind)."""
    t = np.asarray(t_s, dtype=np.float64).reshape(-1)
    out: dict[EventKind, NDArray[np.float64]] = {k: np.zeros(t.shape) for k in EventKind}
    for ev in events:
        out[ev.kind] = np.maximum(out[ev.kind], ev.envelope(t))
    return out
