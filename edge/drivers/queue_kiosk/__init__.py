"""Queue kiosk driver: ticket issued and ticket called signals, numbered tickets."""
