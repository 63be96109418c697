"""A bounded chaos soak of the whole chain: real edge agents, Mosquitto, the processor and
InfluxDB, with crashes, freezes and partitions of each drawn from a seeded schedule
(`python -m bench.chaos.soak --seed N --minutes M`)."""
