from __future__ import annotations

from urbanpulse.errors import UrbanpulseError


class InfluxBenchError(UrbanpulseError):
    """The InfluxDB cost benchmark could not run or measure."""
