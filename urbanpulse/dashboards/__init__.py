"""Grafana dashboards, datasource and alert rules for urbanpulse, generated from code.

Grafana itself is not needed to build them: `model` renders plain dataclasses into
dashboard JSON, `city` holds the four dashboards, `alerts` the alert rules, `provisioning`
the datasource and dashboard provider files, and `check` runs every query against a real
InfluxDB.
"""

DATASOURCE_UID = "urbanpulse-influx"
