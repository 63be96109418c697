"""Benchmarks of the anomaly detectors themselves (memory, CPU per value)."""
