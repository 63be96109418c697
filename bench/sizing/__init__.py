"""`python -m bench.sizing`: the disk a deployment needs per reading, measured on real parts
(InfluxDB's shards after compaction, the cloud journal, a node's outbox), for docs/sizing.md."""
