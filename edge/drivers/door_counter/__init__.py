"""Door counter driver: people entering per interval, one beam or two for direction."""
