"""The exception hierarchy of the shared core."""


class UrbanpulseError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(UrbanpulseError):
    """A configuration value is wrong; the message names the key and why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
