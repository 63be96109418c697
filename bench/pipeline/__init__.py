"""End-to-end throughput benchmark of the cloud pipeline: publishers → Mosquitto → ingest →
journal → Bytewax → InfluxDB, on a private stack (`python -m bench.pipeline.run`)."""
