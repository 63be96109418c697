"""Streaming anomaly detection and sensor-fault rules, one value at a time per series."""

from cloud.detect.detector import AnomalyDetector, DetectorSettings
from cloud.detect.errors import DetectError
from cloud.detect.faults import FaultEvent, FaultMonitor, FaultSettings, FaultType
from cloud.detect.profiles import make_detector
from cloud.detect.version import STATE_VERSION

__all__ = [
    "STATE_VERSION",
    "AnomalyDetector",
    "DetectError",
    "DetectorSettings",
    "FaultEvent",
    "FaultMonitor",
    "FaultSettings",
    "FaultType",
    "make_detector",
]
