"""The Numenta Anomaly Benchmark (NAB v1.1) scoring rules, and a benchmark of our detectors."""
