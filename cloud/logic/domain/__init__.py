"""Domain rollups of the city's readings: hospitals, traffic, air quality (plain Python).

The dataflow keys these by node ("site/node"); the per-hospital aggregates need a second
keying by site (see docs/domain-rollups.md).
"""
