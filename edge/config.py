"""Edge configuration: one TOML file, parsed into frozen dataclasses, validated up front.

Rules (the reason this module exists, see frigate#4241 in /work/shared/style.md):

- Every error names the key as a dotted path (``limits.spo2_low_pct.high``, ``beds[1].serial``),
  the bad value and what is allowed. All errors of a file are collected and reported together.
- Unknown keys are errors, with a "did you mean" suggestion when one is close.
- Every key has a default except ``[[beds]]``; the packaged ``edge/default.toml`` documents them
  all and is tested to agree with the defaults below.
- Command-line overrides (``--serial``, ``--broker``, ``--device-id``) are applied to the raw
  TOML table before validation, so an override is checked exactly like the file.

Clinical limits: a low limit alarms when a valid value is strictly below the threshold, a high
limit when strictly above. Each limit holds one threshold per priority; a more urgent priority
must be a more extreme threshold. The defaults are adult values chosen to match common bedside
monitor factory defaults for the medium tier and the NEWS2 (Royal College of Physicians, 2017)
"score 3" bands for the high tier where one exists. They are starting points for a clinical
team to review, not validated clinical settings.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import logging
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

from edge.events import Priority
from edge.rhythm import KIND_ONSET_S, RHYTHM_KINDS, RhythmConfig

__all__ = [
    "ALERT_KINDS",
    "ARTEFACT_HOLD_MAX_S",
    "DEFAULT_LIMITS",
    "DEFAULT_TECHNICAL",
    "LEARNED_KINDS",
    "LIMIT_SPECS",
    "NEWS2_KIND",
    "TECHNICAL_KINDS",
    "AlarmConfig",
    "BedConfig",
    "BufferConfig",
    "ConfigError",
    "DeviceConfig",
    "EcgConfig",
    "EdgeConfig",
    "HomeAssistantConfig",
    "JournalConfig",
    "LimitRule",
    "LimitSpec",
    "LimitsConfig",
    "ModelConfig",
    "MqttConfig",
    "MqttSecurity",
    "News2Config",
    "TechnicalConfig",
    "apply_overrides",
    "default_config_path",
    "default_config_text",
    "load_config",
    "parse_config",
    "read_password_file",
]

_log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """The configuration is invalid; ``errors`` lists one message per problem, each naming a key."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__("\n".join(self.errors))


# --------------------------------------------------------------------------------------------
# Clinical limits


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """What a limit watches: which vital (attribute of VitalsFrame, JSON key), which direction.

    ``plausible`` bounds the thresholds a configuration may set (a typo like SpO2 limit 900 is
    refused); ``label`` and ``unit`` are for human-readable alert messages.
    """

    kind: str
    vital: str
    direction: Literal["low", "high"]
    label: str
    unit: str
    plausible: tuple[float, float]

    @property
    def key(self) -> str:
        """Configuration key under ``[limits]``: the kind plus the vital's unit suffix."""
        return f"{self.kind}_{self.vital.split('_', 1)[1]}"


# Plausible ranges of a configured limit (what a human could sensibly set, not physiological
# ranges); `edge.assess` judges manually entered vitals by the same HR, SpO2, RR and
# temperature ranges.
SPO2_RANGE_PCT: Final = (50.0, 100.0)
ARTEFACT_HOLD_MAX_S: Final = 30.0
"""Longest extra onset delay (s) the LSTM artefact gate may put on a fixed-limit breach."""
HR_RANGE_BPM: Final = (20.0, 300.0)
RR_RANGE_PER_MIN: Final = (1.0, 80.0)
BP_RANGE_MMHG: Final = (20.0, 300.0)
TEMP_RANGE_C: Final = (25.0, 45.0)

LIMIT_SPECS: Final[tuple[LimitSpec, ...]] = (
    LimitSpec("spo2_low", "spo2_pct", "low", "SpO2", "%", SPO2_RANGE_PCT),
    LimitSpec("hr_high", "hr_bpm", "high", "HR", "bpm", HR_RANGE_BPM),
    LimitSpec("hr_low", "hr_bpm", "low", "HR", "bpm", HR_RANGE_BPM),
    LimitSpec("rr_high", "rr_per_min", "high", "RR", "/min", RR_RANGE_PER_MIN),
    LimitSpec("rr_low", "rr_per_min", "low", "RR", "/min", RR_RANGE_PER_MIN),
    LimitSpec("sbp_high", "sbp_mmhg", "high", "SBP", "mmHg", BP_RANGE_MMHG),
    LimitSpec("sbp_low", "sbp_mmhg", "low", "SBP", "mmHg", BP_RANGE_MMHG),
    LimitSpec("map_low", "map_mmhg", "low", "MAP", "mmHg", BP_RANGE_MMHG),
    LimitSpec("temp_high", "temp_c", "high", "Temp", "degC", TEMP_RANGE_C),
    LimitSpec("temp_low", "temp_c", "low", "Temp", "degC", TEMP_RANGE_C),
)
_SPECS_BY_KEY: Final = {spec.key: spec for spec in LIMIT_SPECS}

_LOW, _MED, _HIGH = Priority.LOW, Priority.MEDIUM, Priority.HIGH
DEFAULT_LIMITS: Final[Mapping[str, Mapping[Priority, float]]] = {
    # SpO2 < 90 % is the usual adult monitor default low limit; < 85 % a severe desaturation.
    "spo2_low_pct": {_MED: 90.0, _HIGH: 85.0},
    # HR 50-120 bpm is the common factory default window; > 150 / < 40 bpm (NEWS2 score 3 at
    # <= 40 and >= 131) are treated as high priority.
    "hr_high_bpm": {_MED: 120.0, _HIGH: 150.0},
    "hr_low_bpm": {_MED: 50.0, _HIGH: 40.0},
    # RR: NEWS2 scores 2 at 21-24 and 3 at >= 25 or <= 8 /min; alarms above 24 and 30 /min,
    # below 8 and 6 /min.
    "rr_high_per_min": {_MED: 24.0, _HIGH: 30.0},
    "rr_low_per_min": {_MED: 8.0, _HIGH: 6.0},
    # SBP: NEWS2 scores 3 at <= 90 mmHg; hypertensive crisis from 180 mmHg.
    "sbp_high_mmhg": {_MED: 160.0, _HIGH: 180.0},
    "sbp_low_mmhg": {_MED: 90.0, _HIGH: 80.0},
    # MAP: 65 mmHg is the Surviving Sepsis Campaign target; below 55 mmHg high priority.
    "map_low_mmhg": {_MED: 65.0, _HIGH: 55.0},
    # Temperature: NEWS2 bands (38.1-39.0 score 1, >= 39.1 score 2, <= 35.0 score 3).
    "temp_high_c": {_LOW: 38.0, _MED: 39.0},
    "temp_low_c": {_LOW: 36.0, _MED: 35.0},
}


@dataclass(frozen=True, slots=True)
class LimitRule:
    """One configured limit: its spec and thresholds, most urgent priority first."""

    spec: LimitSpec
    thresholds: tuple[tuple[Priority, float], ...]

    def crossed_all(self, value: float) -> tuple[tuple[Priority, float], ...]:
        """Every (priority, threshold) that ``value`` crosses, most urgent first."""
        if self.spec.direction == "low":
            return tuple((p, t) for p, t in self.thresholds if value < t)
        return tuple((p, t) for p, t in self.thresholds if value > t)

    def crossed(self, value: float) -> tuple[Priority, float] | None:
        """The most urgent (priority, threshold) that ``value`` crosses, or None."""
        crossed = self.crossed_all(value)
        return crossed[0] if crossed else None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """All fixed clinical limits; a limit with no thresholds is disabled and not listed."""

    rules: tuple[LimitRule, ...]

    def rule(self, key: str) -> LimitRule | None:
        """The rule configured under ``limits.<key>``, if enabled."""
        return next((r for r in self.rules if r.spec.key == key), None)


# --------------------------------------------------------------------------------------------
# Technical conditions

LEARNED_KINDS: Final[Mapping[str, str]] = {
    "ensemble_anomaly": "two or more of the bundle's three anomaly detectors agree (high)",
    "risk_high": "the bundle's risk model above its threshold (medium)",
    "early_warning": "the bundle's LSTM forecasts an event within its horizon (medium)",
}
"""Alert kinds the learned detector raises (edge/learned.py)."""

TECHNICAL_KINDS: Final[Mapping[str, str]] = {
    "lead_off": "ECG lead off (STATUS flag 0x01)",
    "probe_off": "SpO2 probe off (STATUS flag 0x02)",
    "sensor_fault": "board sensor fault (STATUS flag 0x04, with fault code)",
    "nibp_fault": "NIBP fault (STATUS flag 0x20)",
    "temp_probe_off": "temperature probe off (STATUS flag 0x40)",
    "battery_low": "board battery low (STATUS flag 0x08)",
    "link_lost": "no frame from the board for alarms.link_timeout_s",
    "model_unavailable": "model.bundle was refused at start-up (fixed limits only)",
}
DEFAULT_TECHNICAL: Final[Mapping[str, Priority | None]] = {
    "lead_off": _MED,
    "probe_off": _MED,
    # A faulty sensor or a silent board means the patient is not monitored at all.
    "sensor_fault": _HIGH,
    "nibp_fault": _LOW,
    "temp_probe_off": _LOW,
    "battery_low": _LOW,
    "link_lost": _HIGH,
    # The fixed limits still run; the learned early warnings are what is missing.
    "model_unavailable": _MED,
}
_TECHNICAL_CHOICES: Final = ("low", "medium", "high", "off")


@dataclass(frozen=True, slots=True)
class TechnicalConfig:
    """Priority of each technical alert kind; None means the kind is switched off."""

    priorities: tuple[tuple[str, Priority | None], ...]

    def priority(self, kind: str) -> Priority | None:
        """Configured priority for ``kind`` (None if off or unknown)."""
        return dict(self.priorities).get(kind)


# --------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceConfig:
    """Identity of this edge device; ``id`` is a path segment of every MQTT topic."""

    id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSecurity:
    """Credentials and TLS of an MQTT client: the edge's (`MqttConfig`) or a command-line
    client's (``vigil-edge status --tls-ca ...``, edge/remote.py).

    ``username`` with ``password`` (from ``password_file``, first line, so the secret need not
    sit in a file of settings or on a command line); TLS when ``tls_ca_file`` is set (the CA
    that signed the broker's certificate; the broker's name or IP is checked) or ``tls`` is
    true (the system's CAs); a client certificate with ``tls_cert_file`` + ``tls_key_file``.
    "" = not used.
    """

    username: str = ""
    password: str = field(default="", repr=False)
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    @property
    def uses_tls(self) -> bool:
        """TLS is on (explicitly, or because a CA or client certificate is given)."""
        return self.tls or bool(self.tls_ca_file or self.tls_cert_file)


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttConfig(MqttSecurity):
    """Broker connection and publishing (times in seconds), and its security (`MqttSecurity`)."""

    host: str
    port: int
    client_id: str
    keepalive_s: int
    topic_prefix: str
    queue_max: int
    reconnect_min_s: int
    reconnect_max_s: int
    vitals_interval_s: float
    status_interval_s: float
    command_max_age_s: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class BedConfig:
    """One bed = one board on one serial port, read by its own thread."""

    id: str
    serial: str
    baud: int
    spo2_scale: int = 1
    """NEWS2 SpO2 scale: 1, or 2 for hypercapnic respiratory failure (target 88-92 %)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class News2Config:
    """NEWS2 every ``interval_s`` per bed (edge/news2.py). A monitor vital older than
    ``vitals_max_age_s`` and a manual reading older than ``manual_max_age_s`` are not used."""

    interval_s: float = 60.0
    vitals_max_age_s: float = 300.0
    manual_max_age_s: float = 14_400.0


_RHYTHM_DEFAULTS: Final = RhythmConfig()


@dataclass(frozen=True, slots=True, kw_only=True)
class EcgConfig:
    """The ECG head (edge/ecg.py, edge/rhythm.py): off unless ``enabled``. Thresholds in s and
    bpm; the rest of the rhythm rules' parameters keep their documented defaults."""

    enabled: bool = False
    asystole_s: float = _RHYTHM_DEFAULTS.asystole_s
    extreme_brady_bpm: float = _RHYTHM_DEFAULTS.extreme_brady_bpm
    extreme_tachy_bpm: float = _RHYTHM_DEFAULTS.extreme_tachy_bpm
    pvc_per_min: float = _RHYTHM_DEFAULTS.pvc_per_min
    af_irregularity: float = _RHYTHM_DEFAULTS.af_irregularity

    def rhythm(self) -> RhythmConfig:
        """The rhythm rules' parameters (edge/rhythm.py) with these thresholds."""
        return replace(_RHYTHM_DEFAULTS, asystole_s=self.asystole_s,
                       extreme_brady_bpm=self.extreme_brady_bpm,
                       extreme_tachy_bpm=self.extreme_tachy_bpm,
                       pvc_per_min=self.pvc_per_min, af_irregularity=self.af_irregularity)


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalConfig:
    """The on-disk alert journal (edge/journal.py): ``state_dir`` "" = off (alerts are then
    kept in memory only, and a restart loses the undelivered ones)."""

    state_dir: str = ""
    max_age_s: float = 86_400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HomeAssistantConfig:
    """Home Assistant MQTT discovery (edge/homeassistant.py): off unless enabled."""

    enabled: bool = False
    discovery_prefix: str = "homeassistant"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmConfig:
    """Timing of the alarm manager and of data freshness, in seconds, and its policy.

    ``kinds``: per alert kind, (onset_s, clear_s) replacing the defaults (edge/alarms.py rule
    6). ``latch_high``, ``escalate_after_s`` (0 = off) and ``max_silence_s``: rules 7, 9, 10.
    """

    onset_s: float
    technical_onset_s: float
    clear_s: float
    stale_s: float
    link_timeout_s: float
    kinds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    latch_high: bool = False
    escalate_after_s: float = 0.0
    max_silence_s: float = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferConfig:
    """History kept per bed in preallocated ring buffers.

    ``vitals_history_s`` is a row count, one row per VITALS frame, i.e. seconds at the nominal
    1 Hz; ``waveform_history_s`` is seconds at each channel's own sample rate.
    """

    vitals_history_s: int
    waveform_history_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """The learned model bundle: ``bundle`` is a directory path, ``"default"`` the bundle
    shipped in the package (what the packaged edge/default.toml sets; write ``./default`` for a
    directory of that name), ``""`` fixed limits only (the value when the key is absent).

    ``artefact_hold_s`` (s, 0-30): the LSTM artefact gate. A fixed-limit breach the
    forecaster's trend does not support (its ``p_event`` at or below its threshold) waits this
    much longer than ``alarms.onset_s`` before it is announced, so a brief artefact ends before
    it alarms; a breach that lasts is announced regardless. 0 turns the gate off. Bounded so the
    fixed limits stay a safety net a model cannot switch off, only briefly delay.

    Whether the bundle is usable is decided at start-up (`edge.learned.load_learned`), not
    here: a bad bundle degrades the monitor to fixed limits, it never stops it.
    """

    bundle: str
    artefact_hold_s: float = 10.0
    store_dir: str = ""
    """Where installed bundles live (edge/modelstore.py); "" = no store: only ``bundle`` runs
    and nothing can be installed. The store's active bundle, when there is one, runs instead
    of ``bundle``, which stays the fallback of a rollback."""
    trusted_keys: tuple[str, ...] = ()
    """Ed25519 public key files (PEM) whose signature an installed bundle must carry."""
    keep: int = 3
    """Previous bundles kept for a rollback (1-10)."""
    confirm_after_s: float = 300.0
    """Seconds a newly installed bundle must run before it counts as good (10-86400)."""
    max_trial_boots: int = 3
    """Starts of an unconfirmed bundle after which it is rolled back at the next start (1-10)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeConfig:
    """The whole validated configuration."""

    device: DeviceConfig
    mqtt: MqttConfig
    beds: tuple[BedConfig, ...]
    alarms: AlarmConfig
    limits: LimitsConfig
    technical: TechnicalConfig
    buffers: BufferConfig
    model: ModelConfig = ModelConfig(bundle="")
    news2: News2Config = News2Config()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    ecg: EcgConfig = EcgConfig()
    journal: JournalConfig = JournalConfig()

    def topic(self, leaf: str) -> str:
        """``<topic_prefix>/<device id>/<leaf>``, e.g. ``vigil/icu-pi-3/alert``."""
        return f"{self.mqtt.topic_prefix}/{self.device.id}/{leaf}"


# --------------------------------------------------------------------------------------------
# Validation helpers

_ID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ID_RULE: Final = "1-64 characters from A-Z a-z 0-9 _ -"
_PREFIX_RE: Final = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
_BAUD_RATES: Final = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1000000, 2000000)
_PORT_RANGE: Final = (1, 65535)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


class _Checker:
    """Collects errors while reading one TOML document."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def table(self, parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            self.error(_join(path, key), f"expected a table, got {_describe(value)}")
            return {}
        return value

    def keys(self, table: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
        allowed = sorted(allowed)
        for key in table:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            self.error(
                _join(path, key), f"unknown key; {hint}allowed keys: {', '.join(allowed)}"
            )

    def number(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        bounds: tuple[float, float],
        *,
        integer: bool = False,
    ) -> float:
        lo, hi = bounds
        value = table.get(key, default)
        where = _join(path, key)
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(where, f"expected {kind}, got {_describe(value)}; allowed {lo:g}..{hi:g}")
            return default
        if integer and not isinstance(value, int):
            self.error(where, f"expected an integer, got {value!r}; allowed {lo:g}..{hi:g}")
            return default
        if not math.isfinite(value) or not lo <= value <= hi:
            self.error(where, f"{value!r} is out of range; allowed {lo:g}..{hi:g}")
            return default
        return value

    def integer(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        default: int,
        bounds: tuple[int, int],
    ) -> int:
        return int(self.number(table, key, path, default, bounds, integer=True))

    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        default: str | None,
        *,
        pattern: re.Pattern[str] | None = None,
        rule: str = "",
    ) -> str:
        where = _join(path, key)
        if key not in table and default is None:
            self.error(where, "required key is missing")
            return ""
        value = table.get(key, default)
        if not isinstance(value, str):
            self.error(where, f"expected a string, got {_describe(value)}")
            return default or ""
        if pattern is not None and not pattern.match(value):
            self.error(where, f"{_describe(value)} is not allowed; expected {rule}")
            return default or ""
        return value

    def boolean(self, table: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.error(_join(path, key), f"expected true or false, got {_describe(value)}")
            return default
        return value

    def choice(
        self, table: Mapping[str, Any], key: str, path: str, default: str, choices: Sequence[str]
    ) -> str:
        value = table.get(key, default)
        if value not in choices:
            self.error(
                _join(path, key),
                f"{_describe(value)} is not allowed; allowed values: {', '.join(choices)}",
            )
            return default
        return str(value)


NEWS2_KIND: Final = "news2"
"""Alert kind of a NEWS2 score that needs a response (edge/news2.py rule 4)."""

ALERT_KINDS: Final[tuple[str, ...]] = tuple(sorted(
    {spec.kind for spec in LIMIT_SPECS} | set(LEARNED_KINDS) | set(TECHNICAL_KINDS)
    | {NEWS2_KIND} | set(RHYTHM_KINDS)
))
"""Every alert kind the edge can raise: what ``[alarms.kinds]`` accepts."""
_DELAY_RANGE_S: Final = (0.0, 120.0)


# --------------------------------------------------------------------------------------------
# Sections parsers

_SECTIONS: Final = (
    "device", "mqtt", "beds", "alarms", "limits", "technical", "buffers", "model", "news2",
    "homeassistant", "journal", "ecg",
)


def _parse_device(c: _Checker, root: Mapping[str, Any]) -> DeviceConfig:
    t = c.table(root, "device", "")
    c.keys(t, ["id"], "device")
    return DeviceConfig(
        id=c.string(t, "id", "device", "vigil-edge-1", pattern=_ID_RE, rule=_ID_RULE)
    )


def _parse_mqtt(c: _Checker, root: Mapping[str, Any], device_id: str) -> MqttConfig:
    p = "mqtt"
    t = c.table(root, p, "")
    c.keys(
        t,
        [
            "host", "port", "client_id", "keepalive_s", "topic_prefix", "queue_max",
            "reconnect_min_s", "reconnect_max_s", "vitals_interval_s", "status_interval_s",
            "command_max_age_s", "username", "password", "password_file", "tls", "tls_ca_file",
            "tls_cert_file", "tls_key_file",
        ],
        p,
    )
    host = c.string(t, "host", p, "127.0.0.1")
    if not host.strip():
        c.error(f"{p}.host", "must not be empty")
    client_id = c.string(t, "client_id", p, "")
    if client_id and not _ID_RE.match(client_id):
        c.error(f"{p}.client_id", f"{_describe(client_id)} is not allowed; expected {_ID_RULE}")
    reconnect_min_s = c.integer(t, "reconnect_min_s", p, 1, (1, 60))
    reconnect_max_s = c.integer(t, "reconnect_max_s", p, 30, (1, 600))
    if reconnect_max_s < reconnect_min_s:
        c.error(
            f"{p}.reconnect_max_s",
            f"{reconnect_max_s} must be >= mqtt.reconnect_min_s ({reconnect_min_s})",
        )
    return MqttConfig(
        host=host,
        port=c.integer(t, "port", p, 1883, _PORT_RANGE),
        client_id=client_id or f"vigil-edge-{device_id}",
        keepalive_s=c.integer(t, "keepalive_s", p, 30, (1, 3600)),
        topic_prefix=c.string(
            t, "topic_prefix", p, "vigil", pattern=_PREFIX_RE,
            rule="segments of A-Z a-z 0-9 _ - separated by '/', no wildcards",
        ),
        queue_max=c.integer(t, "queue_max", p, 1000, (10, 100_000)),
        reconnect_min_s=reconnect_min_s,
        reconnect_max_s=reconnect_max_s,
        vitals_interval_s=c.number(t, "vitals_interval_s", p, 1.0, (0.1, 60.0)),
        status_interval_s=c.number(t, "status_interval_s", p, 10.0, (1.0, 3600.0)),
        command_max_age_s=c.number(t, "command_max_age_s", p, 60.0, (5.0, 3600.0)),
        **_mqtt_security(c, t, p),
    )


def _readable(c: _Checker, t: Mapping[str, Any], key: str, p: str) -> str:
    """A file path that must exist when given ("" = not used)."""
    path = c.string(t, key, p, "")
    if path and not Path(path).is_file():
        c.error(f"{p}.{key}", f"{path!r}: no such file")
    return path


def read_password_file(path: str | Path) -> str:
    """The first line of a password file ("" for an empty file): how the edge's
    ``mqtt.password_file`` and the clients' ``--password-file`` are read."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return lines[0] if lines else ""


def _mqtt_security(c: _Checker, t: Mapping[str, Any], p: str) -> dict[str, Any]:
    username = c.string(t, "username", p, "")
    password = c.string(t, "password", p, "")
    password_file = _readable(c, t, "password_file", p)
    if password and password_file:
        c.error(f"{p}.password_file", "give mqtt.password or mqtt.password_file, not both")
    elif password_file and Path(password_file).is_file():
        password = read_password_file(password_file)
    if password and not username:
        c.error(f"{p}.password", "a password needs mqtt.username")
    cert = _readable(c, t, "tls_cert_file", p)
    key = _readable(c, t, "tls_key_file", p)
    if bool(cert) != bool(key):
        c.error(f"{p}.tls_key_file" if cert else f"{p}.tls_cert_file",
                "a client certificate needs both mqtt.tls_cert_file and mqtt.tls_key_file")
    return {
        "username": username, "password": password, "tls": c.boolean(t, "tls", p, False),
        "tls_ca_file": _readable(c, t, "tls_ca_file", p), "tls_cert_file": cert,
        "tls_key_file": key,
    }


def _parse_beds(c: _Checker, root: Mapping[str, Any]) -> tuple[BedConfig, ...]:
    raw = root.get("beds")
    if raw is None:
        c.error("beds", "at least one [[beds]] table is required (id, serial, baud)")
        return ()
    if not isinstance(raw, list) or not all(isinstance(b, dict) for b in raw):
        c.error("beds", f"expected an array of tables ([[beds]]), got {_describe(raw)}")
        return ()
    if not raw:
        c.error("beds", "at least one [[beds]] table is required (id, serial, baud)")
    beds: list[BedConfig] = []
    seen: dict[str, int] = {}
    for i, t in enumerate(raw):
        p = f"beds[{i}]"
        c.keys(t, ["id", "serial", "baud", "spo2_scale"], p)
        bed_id = c.string(t, "id", p, None, pattern=_ID_RE, rule=_ID_RULE)
        serial = c.string(t, "serial", p, None)
        if "serial" in t and isinstance(t["serial"], str) and not serial.strip():
            c.error(f"{p}.serial", "must not be empty")
        baud = t.get("baud", 115200)
        if isinstance(baud, bool) or baud not in _BAUD_RATES:
            c.error(
                f"{p}.baud",
                f"{_describe(baud)} is not allowed; allowed values: "
                + ", ".join(str(b) for b in _BAUD_RATES),
            )
            baud = 115200
        if bed_id in seen:
            c.error(f"{p}.id", f"{_describe(bed_id)} is already used by beds[{seen[bed_id]}]")
        seen.setdefault(bed_id, i)
        scale = c.integer(t, "spo2_scale", p, 1, (1, 2))
        beds.append(BedConfig(id=bed_id, serial=serial, baud=int(baud), spo2_scale=scale))
    return tuple(beds)


def _parse_alarms(c: _Checker, root: Mapping[str, Any]) -> AlarmConfig:
    p = "alarms"
    t = c.table(root, p, "")
    c.keys(t, ["onset_s", "technical_onset_s", "clear_s", "stale_s", "link_timeout_s",
               "latch_high", "escalate_after_s", "max_silence_s", "kinds"], p)
    onset = c.number(t, "onset_s", p, 5.0, _DELAY_RANGE_S)
    clear = c.number(t, "clear_s", p, 3.0, _DELAY_RANGE_S)
    kinds_table = c.table(t, "kinds", p)
    c.keys(kinds_table, ALERT_KINDS, f"{p}.kinds")
    kinds: dict[str, tuple[float, float]] = {}
    for kind in sorted(set(kinds_table) & set(ALERT_KINDS)):
        kp = f"{p}.kinds"
        kt = c.table(kinds_table, kind, kp)
        c.keys(kt, ["onset_s", "clear_s"], f"{kp}.{kind}")
        kinds[kind] = (c.number(kt, "onset_s", f"{kp}.{kind}", KIND_ONSET_S.get(kind, onset),
                                _DELAY_RANGE_S),
                       c.number(kt, "clear_s", f"{kp}.{kind}", clear, _DELAY_RANGE_S))
    for kind, kind_onset in KIND_ONSET_S.items():  # edge/rhythm.py: their own defaults
        kinds.setdefault(kind, (kind_onset, clear))
    return AlarmConfig(
        onset_s=onset,
        technical_onset_s=c.number(t, "technical_onset_s", p, 2.0, _DELAY_RANGE_S),
        clear_s=clear,
        stale_s=c.number(t, "stale_s", p, 3.0, (0.5, 60.0)),
        link_timeout_s=c.number(t, "link_timeout_s", p, 10.0, (0.5, 600.0)),
        kinds=kinds,
        latch_high=c.boolean(t, "latch_high", p, False),
        escalate_after_s=c.number(t, "escalate_after_s", p, 0.0, (0.0, 3600.0)),
        max_silence_s=c.number(t, "max_silence_s", p, 120.0, (10.0, 600.0)),
    )


def _parse_limits(c: _Checker, root: Mapping[str, Any]) -> LimitsConfig:
    p = "limits"
    t = c.table(root, p, "")
    c.keys(t, _SPECS_BY_KEY, p)
    rules: list[LimitRule] = []
    for spec in LIMIT_SPECS:
        where = f"{p}.{spec.key}"
        raw = t.get(spec.key)
        if raw is None:
            levels: dict[Priority, float] = dict(DEFAULT_LIMITS[spec.key])
        elif not isinstance(raw, dict):
            c.error(
                where,
                f"expected a table like {{ medium = ..., high = ... }}, got {_describe(raw)}",
            )
            continue
        else:
            c.keys(raw, [pr.label for pr in Priority], where)
            levels = {}
            for pr in Priority:
                if pr.label in raw:
                    value = c.number(raw, pr.label, where, math.nan, spec.plausible)
                    if not math.isnan(value):
                        levels[pr] = float(value)
        ordered = sorted(levels.items(), key=lambda item: -item[0])
        for (urgent, u_value), (milder, m_value) in itertools.pairwise(ordered):
            more_extreme = u_value < m_value if spec.direction == "low" else u_value > m_value
            if not more_extreme:
                relation = "below" if spec.direction == "low" else "above"
                c.error(
                    f"{where}.{urgent.label}",
                    f"{u_value:g} must be {relation} {where}.{milder.label} ({m_value:g}): "
                    "a more urgent priority needs a more extreme threshold",
                )
        if ordered:
            rules.append(LimitRule(spec, tuple(ordered)))
    return LimitsConfig(tuple(rules))


def _parse_technical(c: _Checker, root: Mapping[str, Any]) -> TechnicalConfig:
    p = "technical"
    t = c.table(root, p, "")
    c.keys(t, TECHNICAL_KINDS, p)
    out: list[tuple[str, Priority | None]] = []
    for kind in TECHNICAL_KINDS:
        default = DEFAULT_TECHNICAL[kind]
        text = c.choice(
            t, kind, p, default.label if default else "off", _TECHNICAL_CHOICES
        )
        out.append((kind, None if text == "off" else Priority.parse(text)))
    return TechnicalConfig(tuple(out))


def _parse_buffers(c: _Checker, root: Mapping[str, Any]) -> BufferConfig:
    p = "buffers"
    t = c.table(root, p, "")
    c.keys(t, ["vitals_history_s", "waveform_history_s"], p)
    return BufferConfig(
        vitals_history_s=c.integer(t, "vitals_history_s", p, 600, (10, 86_400)),
        waveform_history_s=c.integer(t, "waveform_history_s", p, 30, (1, 600)),
    )


def _parse_model(c: _Checker, root: Mapping[str, Any]) -> ModelConfig:
    p = "model"
    t = c.table(root, p, "")
    c.keys(t, ["bundle", "artefact_hold_s", "store_dir", "trusted_keys", "keep",
               "confirm_after_s", "max_trial_boots"], p)
    bundle = c.string(t, "bundle", p, "")
    if bundle and not bundle.strip():
        c.error(f"{p}.bundle", 'only whitespace; use "" for no model')
        bundle = ""
    hold = c.number(t, "artefact_hold_s", p, 10.0, (0.0, ARTEFACT_HOLD_MAX_S))
    keys = t.get("trusted_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        c.error(f"{p}.trusted_keys", f"expected a list of key file paths, got {_describe(keys)}")
        keys = []
    for i, key in enumerate(keys):
        if not Path(key).expanduser().is_file():
            c.error(f"{p}.trusted_keys[{i}]", f"{key!r}: no such file")
    return ModelConfig(
        bundle=bundle, artefact_hold_s=hold,
        store_dir=c.string(t, "store_dir", p, ""),
        trusted_keys=tuple(str(Path(k).expanduser()) for k in keys),
        keep=c.integer(t, "keep", p, 3, (1, 10)),
        confirm_after_s=c.number(t, "confirm_after_s", p, 300.0, (10.0, 86_400.0)),
        max_trial_boots=c.integer(t, "max_trial_boots", p, 3, (1, 10)),
    )


def _parse_news2(c: _Checker, root: Mapping[str, Any]) -> News2Config:
    p = "news2"
    t = c.table(root, p, "")
    c.keys(t, ["interval_s", "vitals_max_age_s", "manual_max_age_s"], p)
    return News2Config(
        interval_s=c.number(t, "interval_s", p, 60.0, (10.0, 3600.0)),
        vitals_max_age_s=c.number(t, "vitals_max_age_s", p, 300.0, (10.0, 3600.0)),
        manual_max_age_s=c.number(t, "manual_max_age_s", p, 14_400.0, (60.0, 86_400.0)),
    )


def _parse_homeassistant(c: _Checker, root: Mapping[str, Any]) -> HomeAssistantConfig:
    p = "homeassistant"
    t = c.table(root, p, "")
    c.keys(t, ["enabled", "discovery_prefix"], p)
    return HomeAssistantConfig(
        enabled=c.boolean(t, "enabled", p, False),
        discovery_prefix=c.string(t, "discovery_prefix", p, "homeassistant",
                                  pattern=_PREFIX_RE, rule="/-separated A-Z a-z 0-9 _ -"),
    )


def _parse_ecg(c: _Checker, root: Mapping[str, Any]) -> EcgConfig:
    p = "ecg"
    t = c.table(root, p, "")
    c.keys(t, ["enabled", "asystole_s", "extreme_brady_bpm", "extreme_tachy_bpm", "pvc_per_min",
               "af_irregularity"], p)
    d = _RHYTHM_DEFAULTS
    return EcgConfig(
        enabled=c.boolean(t, "enabled", p, False),
        asystole_s=c.number(t, "asystole_s", p, d.asystole_s, (2.0, 15.0)),
        extreme_brady_bpm=c.number(t, "extreme_brady_bpm", p, d.extreme_brady_bpm, (20.0, 60.0)),
        extreme_tachy_bpm=c.number(t, "extreme_tachy_bpm", p, d.extreme_tachy_bpm,
                                   (100.0, 300.0)),
        pvc_per_min=c.number(t, "pvc_per_min", p, d.pvc_per_min, (0.0, 60.0)),
        af_irregularity=c.number(t, "af_irregularity", p, d.af_irregularity, (0.02, 0.5)),
    )


def _parse_journal(c: _Checker, root: Mapping[str, Any]) -> JournalConfig:
    p = "journal"
    t = c.table(root, p, "")
    c.keys(t, ["state_dir", "max_age_s"], p)
    return JournalConfig(
        state_dir=c.string(t, "state_dir", p, ""),
        max_age_s=c.number(t, "max_age_s", p, 86_400.0, (60.0, 604_800.0)),
    )


def parse_config(data: Mapping[str, Any]) -> EdgeConfig:
    """Validate a parsed TOML document; raises ConfigError listing every problem found."""
    c = _Checker()
    c.keys(data, _SECTIONS, "")
    device = _parse_device(c, data)
    config = EdgeConfig(
        device=device,
        mqtt=_parse_mqtt(c, data, device.id),
        beds=_parse_beds(c, data),
        alarms=_parse_alarms(c, data),
        limits=_parse_limits(c, data),
        technical=_parse_technical(c, data),
        buffers=_parse_buffers(c, data),
        model=_parse_model(c, data),
        news2=_parse_news2(c, data),
        homeassistant=_parse_homeassistant(c, data),
        journal=_parse_journal(c, data),
        ecg=_parse_ecg(c, data),
    )
    if c.errors:
        raise ConfigError(c.errors)
    return config


def _override_broker(out: dict[str, Any], broker: str, errors: list[str]) -> None:
    host, sep, port_text = broker.rpartition(":")
    if not sep:
        host, port_text = broker, ""
    if not host:
        errors.append(f"--broker: {broker!r} has no host; expected HOST or HOST:PORT")
        return
    mqtt = out.setdefault("mqtt", {})
    if not isinstance(mqtt, dict):
        return  # reported by validation as mqtt: expected a table
    mqtt["host"] = host
    if port_text:
        try:
            mqtt["port"] = int(port_text)
        except ValueError:
            errors.append(f"--broker: port {port_text!r} is not an integer; expected HOST:PORT")


def _override_serial(out: dict[str, Any], item: str, errors: list[str]) -> None:
    beds = out.get("beds")
    if not isinstance(beds, list) or not beds or not all(isinstance(b, dict) for b in beds):
        errors.append(f"--serial {item}: the configuration has no [[beds]] to override")
        return
    bed_id, sep, path = item.partition("=")
    if not sep:
        if len(beds) != 1:
            errors.append(
                f"--serial {item}: {len(beds)} beds are configured; use --serial BED=PATH"
            )
            return
        beds[0]["serial"] = item
        return
    match = [b for b in beds if b.get("id") == bed_id]
    if not match:
        known = ", ".join(str(b.get("id")) for b in beds)
        errors.append(f"--serial {item}: no bed with id {bed_id!r}; configured: {known}")
        return
    match[0]["serial"] = path


def apply_overrides(
    data: Mapping[str, Any],
    *,
    serial: Sequence[str] = (),
    broker: str | None = None,
    device_id: str | None = None,
) -> dict[str, Any]:
    """Return a copy of the raw document with command-line overrides applied.

    ``serial`` items are ``PATH`` (only when exactly one bed is configured) or ``BED=PATH``;
    ``broker`` is ``HOST`` or ``HOST:PORT``. Errors name the flag; the values themselves are
    validated with the rest of the document.
    """
    out: dict[str, Any] = copy.deepcopy(dict(data))
    errors: list[str] = []
    if device_id is not None:
        device = out.setdefault("device", {})
        if isinstance(device, dict):
            device["id"] = device_id
    if broker is not None:
        _override_broker(out, broker, errors)
    for item in serial:
        _override_serial(out, item, errors)
    if errors:
        raise ConfigError(errors)
    return out


def default_config_path() -> Path:
    """Path of the packaged, documented default configuration (``edge/default.toml``)."""
    return Path(str(resources.files("edge").joinpath("default.toml")))


def default_config_text() -> str:
    """Text of the packaged default configuration."""
    return resources.files("edge").joinpath("default.toml").read_text(encoding="utf-8")


def load_config(
    path: str | Path | None = None,
    *,
    serial: Sequence[str] = (),
    broker: str | None = None,
    device_id: str | None = None,
) -> EdgeConfig:
    """Read, override and validate a TOML file (the packaged default when ``path`` is None)."""
    where = str(path) if path is not None else "edge/default.toml"
    try:
        text = Path(path).read_text(encoding="utf-8") if path else default_config_text()
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{where}: not UTF-8 text: {exc}"]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: TOML syntax error: {exc}"]) from exc
    data = apply_overrides(data, serial=serial, broker=broker, device_id=device_id)
    config = parse_config(data)
    _log.debug("loaded configuration from %s", where)
    return config
