"""The central side: ingest, the Bytewax dataflow, the InfluxDB sink, queries."""
