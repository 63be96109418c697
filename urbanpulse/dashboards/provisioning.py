"""Grafana provisioning: the InfluxDB datasource and the dashboard file provider.

Secrets are never written here: the datasource's URL, user and password come from the
environment of the Grafana process when it reads the file. Over https Grafana checks
InfluxDB's certificate against the CA in `CA_FILE` only (Grafana reads `$__file{...}` in a
provisioning file; the file must exist, ansible/roles/grafana installs it).
"""

from __future__ import annotations

from urbanpulse.dashboards import DATASOURCE_UID
from urbanpulse.dashboards.model import JSON

PASSWORD_ENV = "URBANPULSE_INFLUX_READER_PASSWORD"
USER_ENV = "URBANPULSE_INFLUX_READER_USER"
URL_ENV = "URBANPULSE_INFLUX_URL"
DATABASE_ENV = "URBANPULSE_INFLUX_DB"
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/urbanpulse"
CA_FILE = "/etc/grafana/urbanpulse-influx-ca.pem"


def datasource_provisioning() -> JSON:
    return {
        "apiVersion": 1,
        "datasources": [{
            "name": "UrbanPulse InfluxDB",
            "uid": DATASOURCE_UID,
            "type": "influxdb",
            "access": "proxy",
            "url": "${" + URL_ENV + "}",
            "user": "${" + USER_ENV + "}",
            "isDefault": True,
            "editable": False,
            "jsonData": {
                "dbName": "${" + DATABASE_ENV + "}",
                "httpMode": "POST",
                "timeInterval": "10s",
                "tlsAuthWithCACert": True,
            },
            "secureJsonData": {
                "password": "${" + PASSWORD_ENV + "}",
                "tlsCACert": "$__file{" + CA_FILE + "}",
            },
        }],
    }


def dashboard_provisioning() -> JSON:
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "urbanpulse",
            "orgId": 1,
            "folder": "UrbanPulse",
            "type": "file",
            "disableDeletion": True,
            "allowUiUpdates": False,
            "updateIntervalSeconds": 60,
            "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
        }],
    }
