"""Sensor-fault benchmark: the simulator's injected faults against `FaultMonitor`."""
