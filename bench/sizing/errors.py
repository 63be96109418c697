from urbanpulse.errors import UrbanpulseError


class SizingError(UrbanpulseError):
    """A sizing measurement could not be made."""
