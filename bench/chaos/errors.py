class ChaosError(Exception):
    """The soak could not run (a part would not start, a drain ran out of time)."""
