"""What a configuration reload (SIGHUP, ``cmd/reload``, ``vigil-edge reload``) may change.

Why a module of its own: a reload must never half-apply. The runtime re-reads the file, asks
`plan_reload` what differs, and either applies every change between two ticks or applies
nothing. Pure: two parsed `EdgeConfig` in, a `ReloadPlan` out.

Applied in place, readers and the broker connection untouched (so no frame is dropped):
``[alarms]`` and ``[alarms.kinds.*]``, ``[limits]``, ``[technical]``, ``[news2]``, ``[ecg]``
(the ECG head restarts: a few seconds without rhythm alarms), ``[model]``
(the bundle is loaded again), ``[homeassistant]``, ``mqtt.vitals_interval_s``,
``mqtt.status_interval_s``, ``mqtt.command_max_age_s`` and each bed's ``spo2_scale``.

Refused with the keys named, because they mean a new serial port, a new broker session, other
buffers or another journal: ``[device]``, the rest of ``[mqtt]``, the beds themselves (ids,
serial ports, baud rates), ``[buffers]``, ``[journal]`` and the model store's place and
policy (``model.store_dir``, ``model.keep``, ``model.max_trial_boots``). Those need a
restart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from edge.config import EdgeConfig

__all__ = ["HOT_MQTT_KEYS", "ReloadPlan", "plan_reload"]

HOT_MQTT_KEYS: Final = frozenset({"vitals_interval_s", "status_interval_s", "command_max_age_s"})
"""``[mqtt]`` keys a reload applies; every other one needs a restart."""
_HOT_SECTIONS: Final = ("alarms", "technical", "news2", "model", "homeassistant", "ecg")
_RESTART_SECTIONS: Final = ("device", "buffers", "journal")
_RESTART_KEYS: Final = frozenset({"model.store_dir", "model.keep", "model.max_trial_boots"})


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """Dotted keys that differ: ``changed`` can be applied now, ``restart`` cannot.

    Only key names, never values: a changed password shows as ``mqtt.password``.
    """

    changed: tuple[str, ...]
    restart: tuple[str, ...]

    @property
    def applicable(self) -> bool:
        """True when nothing that needs a restart changed (the whole reload may go ahead)."""
        return not self.restart

    def affects(self, *prefixes: str) -> bool:
        """True if a changed key is one of ``prefixes`` or lies under one (``"alarms"``)."""
        return any(k == p or k.startswith(p + ".") for k in self.changed for p in prefixes)


def _fields(section: str, old: Any, new: Any) -> Iterable[str]:
    for f in dataclasses.fields(old):
        if getattr(old, f.name) != getattr(new, f.name):
            yield f"{section}.{f.name}"


def _limits(old: EdgeConfig, new: EdgeConfig) -> Iterable[str]:
    before = {r.spec.kind: r for r in old.limits.rules}
    after = {r.spec.kind: r for r in new.limits.rules}
    for kind in sorted(before.keys() | after.keys()):
        if before.get(kind) != after.get(kind):
            yield f"limits.{kind}"


def plan_reload(old: EdgeConfig, new: EdgeConfig) -> ReloadPlan:
    """Compare the running configuration with the one just read."""
    changed: list[str] = []
    restart: list[str] = []
    for section in _RESTART_SECTIONS:
        restart.extend(_fields(section, getattr(old, section), getattr(new, section)))
    for key in _fields("mqtt", old.mqtt, new.mqtt):
        (changed if key.removeprefix("mqtt.") in HOT_MQTT_KEYS else restart).append(key)
    for section in _HOT_SECTIONS:
        for key in _fields(section, getattr(old, section), getattr(new, section)):
            (restart if key in _RESTART_KEYS else changed).append(key)
    changed.extend(_limits(old, new))
    before = {b.id: b for b in old.beds}
    after = {b.id: b for b in new.beds}
    if list(before) != list(after):
        restart.append("beds")
    for bed_id in before.keys() & after.keys():
        for key in _fields(f"beds.{bed_id}", before[bed_id], after[bed_id]):
            (changed if key.endswith(".spo2_scale") else restart).append(key)
    return ReloadPlan(tuple(sorted(changed)), tuple(sorted(restart)))
