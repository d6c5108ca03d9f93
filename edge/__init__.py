"""Vigil edge runtime: serial boards in, clinical alerts out over MQTT.

The pure parts (configuration, bed state, detectors, alarm manager, outbox, payloads) can be used
and tested without threads or sockets; `Runtime` wires them to serial readers and paho-mqtt.
"""

from edge.alarms import AlarmManager, AlarmTiming
from edge.bedstate import VITAL_FIELDS, BedState, VitalsRing, VitalsSample, WaveformRing
from edge.config import ConfigError, EdgeConfig, load_config, parse_config
from edge.detect import Detector, FixedLimitsDetector, TechnicalDetector, default_detectors
from edge.events import AlertEvent, Detection, EventType, Priority
from edge.outbox import Outbox
from edge.runtime import Clock, EdgeCore, Runtime, SystemClock

__all__ = [
    "VITAL_FIELDS",
    "AlarmManager",
    "AlarmTiming",
    "AlertEvent",
    "BedState",
    "Clock",
    "ConfigError",
    "Detection",
    "Detector",
    "EdgeConfig",
    "EdgeCore",
    "EventType",
    "FixedLimitsDetector",
    "Outbox",
    "Priority",
    "Runtime",
    "SystemClock",
    "TechnicalDetector",
    "VitalsRing",
    "VitalsSample",
    "WaveformRing",
    "default_detectors",
    "load_config",
    "parse_config",
]
