"""`python -m bench.influx.run`: influxd's CPU per point written, by setting and write format."""
