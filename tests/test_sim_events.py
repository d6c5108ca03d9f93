"""Event injection: time course, what each kind changes (and only that), labels, purity."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.sim import events as events_module
from firmware_bridge.sim.events import (
    CLINICAL_KINDS,
    DEFAULT_MAGNITUDE,
    Event,
    EventKind,
    apply_clinical_events,
    apply_events,
    event_envelopes,
    event_labels,
    parse_event,
    technical_state,
)
from firmware_bridge.sim.vitals import N_VITALS, Vital

T = np.arange(0.0, 400.0)  # one row per second
BASE = np.array([75.0, 97.0, 15.0, 120.0, 78.0, 92.0, 36.9])


def _flat() -> np.ndarray:
    return np.tile(BASE, (T.size, 1))


def test_parse_event_full_and_defaults():
    ev = parse_event("desaturation@60+30:120=15")
    assert ev == Event(EventKind.DESATURATION, 60.0, 120.0, 30.0, 15.0)
    assert ev.end_s == 240.0
    short = parse_event("Lead-Off@10")
    assert short.kind is EventKind.LEAD_OFF
    assert short.ramp_s == 0.0
    assert short.duration_s > 0
    assert short.magnitude == DEFAULT_MAGNITUDE[EventKind.LEAD_OFF]
    assert parse_event(ev.to_spec()) == ev


@pytest.mark.parametrize("bad", ["desat@10", "desaturation", "desaturation@x", "fever@1:2=abc"])
def test_parse_event_rejects_with_syntax(bad):
    with pytest.raises(ValueError, match=r"KIND@ONSET|unknown event kind|bad"):
        parse_event(bad)


def test_negative_times_rejected():
    with pytest.raises(ValueError, match="onset_s"):
        Event(EventKind.FEVER, -1.0, 10.0)


def test_envelope_is_a_trapezoid():
    ev = Event(EventKind.TACHYCARDIA, onset_s=100, duration_s=50, ramp_s=20)
    env = ev.envelope(np.array([99, 100, 110, 120, 150, 170, 180, 190, 191]))
    np.testing.assert_allclose(env, [0, 0, 0.5, 1, 1, 1, 0.5, 0, 0])


@pytest.mark.parametrize(
    ("kind", "column", "sign"),
    [
        (EventKind.DESATURATION, Vital.SPO2, -1),
        (EventKind.TACHYCARDIA, Vital.HR, +1),
        (EventKind.BRADYCARDIA, Vital.HR, -1),
        (EventKind.TACHYPNOEA, Vital.RR, +1),
        (EventKind.BRADYPNOEA, Vital.RR, -1),
        (EventKind.HYPOTENSION, Vital.SBP, -1),
        (EventKind.FEVER, Vital.TEMP, +1),
    ],
)
def test_clinical_event_changes_its_vital_with_onset_ramp_duration(kind, column, sign):
    ev = Event(kind, onset_s=100, duration_s=60, ramp_s=20, magnitude=5.0)
    out = apply_events(_flat(), T, [ev])
    delta = out[:, column] - BASE[column]
    assert np.all(delta[:100] == 0)  # before onset
    assert delta[110] == pytest.approx(sign * 2.5)  # half-way up the ramp
    assert np.all(np.isclose(delta[120:181], sign * 5.0))  # plateau
    assert delta[190] == pytest.approx(sign * 2.5)  # half-way down
    assert np.all(delta[200:] == 0)  # over
    # Nothing else moves, except the documented couplings.
    coupled = {EventKind.HYPOTENSION: {Vital.DBP, Vital.MAP}, EventKind.FEVER: {Vital.HR}}
    for other in Vital:
        if other is column or other in coupled.get(kind, set()):
            continue
        np.testing.assert_array_equal(out[:, other], BASE[other], err_msg=other.name)


def test_couplings_hypotension_and_fever():
    hypo = apply_events(_flat(), T, [Event(EventKind.HYPOTENSION, 0, 400, magnitude=30)])[0]
    assert hypo[Vital.SBP] == pytest.approx(90.0)
    assert hypo[Vital.DBP] == pytest.approx(78.0 - 18.0)
    assert hypo[Vital.MAP] == pytest.approx(92.0 - (30 + 2 * 18) / 3)
    fever = apply_events(_flat(), T, [Event(EventKind.FEVER, 0, 400, magnitude=2)])[0]
    assert fever[Vital.TEMP] == pytest.approx(38.9)
    assert fever[Vital.HR] == pytest.approx(95.0)


def test_apnoea_takes_rr_to_zero_and_clipping_holds():
    out = apply_events(_flat(), T, [Event(EventKind.APNOEA, 10, 30, ramp_s=10)])
    assert out[30, Vital.RR] == 0.0
    assert out[15, Vital.RR] == pytest.approx(7.5)
    deep = apply_events(_flat(), T, [Event(EventKind.DESATURATION, 0, 10, magnitude=500)])
    assert deep[5, Vital.SPO2] == 0.0


def test_overlapping_events_add_up():
    evs = [
        Event(EventKind.TACHYCARDIA, 0, 100, magnitude=20),
        Event(EventKind.TACHYCARDIA, 50, 100, magnitude=10),
    ]
    out = apply_events(_flat(), T, evs)
    assert out[25, Vital.HR] == pytest.approx(95.0)
    assert out[75, Vital.HR] == pytest.approx(105.0)
    assert out[125, Vital.HR] == pytest.approx(85.0)


def test_probe_off_and_lead_off_invalidate_only_their_reading():
    evs = [Event(EventKind.PROBE_OFF, 10, 5), Event(EventKind.LEAD_OFF, 20, 5)]
    out = apply_events(_flat(), T, evs)
    assert np.isnan(out[10:15, Vital.SPO2]).all()
    assert np.isfinite(out[np.r_[0:10, 15:400], Vital.SPO2]).all()
    assert np.isnan(out[20:25, Vital.HR]).all()
    assert np.isfinite(out[np.r_[0:20, 25:400], Vital.HR]).all()
    state = technical_state(T, evs)
    assert state.probe_off.sum() == 5
    assert state.lead_off.sum() == 5


def test_noise_burst_is_deterministic_and_confined():
    ev = Event(EventKind.NOISE_BURST, 100, 50, magnitude=1.0)
    a = apply_events(_flat(), T, [ev], seed=3)
    b = apply_events(_flat(), T, [ev], seed=3)
    c = apply_events(_flat(), T, [ev], seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    noisy = slice(100, 150)
    for col in (Vital.HR, Vital.SPO2, Vital.RR):
        assert np.std(a[noisy, col]) > 0.5
        np.testing.assert_array_equal(a[:100, col], BASE[col])
        np.testing.assert_array_equal(a[150:, col], BASE[col])
    for col in (Vital.SBP, Vital.DBP, Vital.TEMP):
        np.testing.assert_array_equal(a[:, col], BASE[col])
    # Same value for the same second whether computed alone or in a block.
    single = apply_events(BASE, [120.0], [ev], seed=3)[0]
    np.testing.assert_array_equal(single, a[120])


def test_board_level_events_do_not_touch_vitals():
    evs = [Event(EventKind.BOARD_RESET, 10, 1), Event(EventKind.CABLE_UNPLUG, 30, 5)]
    np.testing.assert_array_equal(apply_events(_flat(), T, evs), _flat())
    assert technical_state(T, evs).board_off.sum() == 6


def test_labels_per_second():
    evs = [
        Event(EventKind.DESATURATION, 60, 120, ramp_s=30),
        Event(EventKind.LEAD_OFF, 10, 5),
    ]
    labels = event_labels(T, evs)
    assert set(labels) == set(EventKind)
    desat = labels[EventKind.DESATURATION]
    assert desat.dtype == np.bool_
    assert not desat[59]
    assert desat[60:240].all()
    assert not desat[240:].any()
    assert labels[EventKind.LEAD_OFF].sum() == 5
    assert not labels[EventKind.FEVER].any()
    env = event_envelopes(T, evs)[EventKind.DESATURATION]
    assert env[75] == pytest.approx(0.5)
    assert env.max() == 1.0


def test_apply_does_not_modify_its_input_and_checks_shape():
    v = _flat()
    before = v.copy()
    apply_events(v, T, [Event(EventKind.FEVER, 0, 10)])
    np.testing.assert_array_equal(v, before)
    with pytest.raises(ValueError, match="shape"):
        apply_events(np.zeros((3, N_VITALS + 1)), [0, 1, 2], [])
    with pytest.raises(ValueError, match="times"):
        apply_clinical_events(np.zeros((3, N_VITALS)), [0, 1], [])


def test_nan_stays_nan():
    v = _flat()
    v[:, Vital.TEMP] = math.nan
    out = apply_events(v, T, [Event(EventKind.FEVER, 0, 400)])
    assert np.isnan(out[:, Vital.TEMP]).all()


def test_clinical_and_technical_partition():
    assert set(EventKind) == CLINICAL_KINDS | events_module.TECHNICAL_KINDS
    assert not CLINICAL_KINDS & events_module.TECHNICAL_KINDS


def test_events_module_is_pure():
    """No I/O, clock or sleeping: it labels training data offline."""
    source = Path(events_module.__file__).read_text()
    for forbidden in ("import time", "import os", "open(", "sleep", "import logging", "print("):
        assert forbidden not in source, forbidden
