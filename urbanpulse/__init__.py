"""urbanpulse: the shared core (wire contract, clock, local stack, command line)."""

__version__ = "0.1.0"
