"""Errors of the simulator. Bad city files raise `urbanpulse.errors.ConfigError` naming
the key; everything else the simulator refuses raises a `SimulationError`."""

from urbanpulse.errors import UrbanpulseError


class SimulationError(UrbanpulseError):
    """The simulator was asked something it cannot do (bad time, unknown sensor)."""


class UnknownTargetError(SimulationError):
    """No site, node or sensor of that name in the city, or not of the right kind."""
