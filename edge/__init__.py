"""The urbanpulse agent that runs on a sensor node."""
