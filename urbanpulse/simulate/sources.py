"""What a serial air sensor's emulated device should send, asked at any moment."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from urbanpulse.simulate.air import AirSensorModel
from urbanpulse.simulate.timebase import TimeBase


class SerialSource:
    """Callable with a simulation offset: the sensor's values then (field names of the
    wire contract: pm25, pm10, pm1, co2, temperature_c), or None while the sensor is
    silent or its cable is cut (the device sends nothing). Values are drawn per second
    of simulated time, so asking twice in one second gives the same answer."""

    def __init__(self, model: AirSensorModel, timebase: TimeBase) -> None:
        self._model = model
        self._timebase = timebase
        self.driver = model.sensor.driver
        self.fields = model.fields

    def __call__(self, t: float) -> dict[str, float] | None:
        times = np.array([float(t)])
        if self._model.silent(times)[0]:
            return None
        return {name: float(v[0]) for name, v in self._model.values(times, 1.0).items()}

    def at(self, ts: datetime) -> dict[str, float] | None:
        return self(self._timebase.offset(ts))

    def pm(self, t: float) -> tuple[float, float] | None:
        """(pm25, pm10) in ug/m3 for SDS011 and PMS5003."""
        values = self(t)
        return None if values is None else (values["pm25"], values["pm10"])

    def co2(self, t: float) -> float | None:
        """CO2 in ppm for the MH-Z19B."""
        values = self(t)
        return None if values is None else values["co2"]
