"""Sensor drivers, one folder each: driver.py (params + wiring), sample.toml, README.md."""
