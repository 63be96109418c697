"""Bed-exit pad driver: occupied/free with exit tolerance, cut-cable supervision."""
