"""A processor config for the local stack (`urbanpulse stack up`): used by the demo and tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from urbanpulse.stack import StackInfo


def cloud_config_for_stack(info: StackInfo, state_dir: Path, **flow: Any) -> dict[str, Any]:
    """The processor's config for the stack of `info`; with the cloud user's client
    certificate when the stack's broker runs in certificate mode (docs/stack.md)."""
    mqtt = info.mqtt("cloud")
    influx = info.influx("writer")
    reader = info.influx("reader")
    mqtt_table: dict[str, Any] = {
        "host": mqtt.host, "port": mqtt.port, "ca_file": str(mqtt.ca_file),
        "username": mqtt.username, "password_file": str(mqtt.password_file)}
    if mqtt.cert_file is not None and mqtt.key_file is not None:
        mqtt_table.update(cert_file=str(mqtt.cert_file), key_file=str(mqtt.key_file))
    return {
        "mqtt": mqtt_table,
        "influx": {"url": influx.url, "database": influx.database, "username": influx.username,
                   "password_file": str(influx.password_file),
                   "reader_username": reader.username,
                   "reader_password_file": str(reader.password_file)},
        "state": {"dir": str(state_dir)},
        "flow": {**flow},
    }


def to_toml(config: dict[str, Any]) -> str:
    """Just enough TOML for the flat tables above."""
    out = []
    for table, values in config.items():
        out.append(f"[{table}]")
        for key, value in values.items():
            out.append(f"{key} = {_value(value)}")
        out.append("")
    return "\n".join(out)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
