"""Edge agent benchmark: the real agent process, fed by emulated sensors, delivering to a
private Mosquitto; its CPU per 1,000 readings and its peak RSS. Run `python -m bench.edge.run`."""
