"""A private influxd started the way `urbanpulse stack up` starts it (urbanpulse.stack.influxd:
its config, auth on, least-privilege users, 127.0.0.1 on free ports, a home of its own), with
some settings of that config changed, and the database made by `cloud init-db`'s code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.influx.errors import InfluxBenchError
from cloud.config import Retention
from cloud.initdb import init_db
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import influxd
from urbanpulse.stack.config import StackConfig
from urbanpulse.stack.errors import StackError
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.process import free_ports

# section -> key -> value as TOML text (quoted strings, bare numbers and booleans)
Settings = Mapping[str, Mapping[str, str]]
# The simulated days lie in the past: keep every point, as the pipeline benchmark does.
RETENTION = Retention(raw="INF", agg_1m="INF", agg_1h="INF")


def with_settings(text: str, settings: Settings) -> str:
    """`text` (an influxd config) with `settings` set: a key already in its section is
    replaced, a missing one added at the end of its section, a missing section appended."""
    pending = {section: dict(keys) for section, keys in settings.items()}
    out: list[str] = []
    section = ""

    def close_section() -> None:
        for key, value in pending.pop(section, {}).items():
            out.append(f"  {key} = {value}")

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            while out and not out[-1].strip():
                out.pop()
            close_section()
            out.append("")
            section = stripped[1:-1]
            out.append(line)
            continue
        key = stripped.split("=", 1)[0].strip() if "=" in stripped and not stripped.startswith("#") else None
        if key is not None and key in pending.get(section, {}):
            indent = line[:len(line) - len(line.lstrip())]
            out.append(f"{indent}{key} = {pending[section].pop(key)}")
            continue
        out.append(line)
    close_section()
    for name, keys in pending.items():
        out += ["", f"[{name}]"] + [f"  {key} = {value}" for key, value in keys.items()]
    return "\n".join(out) + "\n"


@dataclass
class Server:
    """One influxd; `start` opens it, `stop` ends it (the home stays for a look)."""

    home: Path
    settings: Settings
    env: Mapping[str, str]
    config: StackConfig | None = None
    pid: int | None = None

    @property
    def layout(self) -> Layout:
        return Layout(self.home)

    def start(self) -> None:
        http_port, rpc_port, unused_mqtt = free_ports(3)
        self.config = StackConfig(home=self.home, mqtt_port=unused_mqtt, influx_port=http_port,
                                  influx_rpc_port=rpc_port)
        layout = self.layout
        influxd.write_config(self.config, layout)
        layout.influx_conf.write_text(with_settings(layout.influx_conf.read_text(), self.settings))
        try:
            self.pid = influxd.start(self.config, layout, env=self.env)
            influxd.bootstrap(self.config, layout)
            with self.client("admin") as admin:
                init_db(admin, self.config.database, RETENTION)
        except StackError as exc:
            self.stop()
            raise InfluxBenchError(f"influxd in {self.home}: {exc}") from exc

    @property
    def database(self) -> str:
        return self._config().database

    def _config(self) -> StackConfig:
        if self.config is None:
            raise InfluxBenchError(f"influxd in {self.home} is not started")
        return self.config

    def url(self) -> str:
        return influxd.url(self._config())

    def password(self, role: str) -> str:
        return self.layout.influx_password(role).read_text().strip()

    def client(self, role: str) -> InfluxHTTP:
        return InfluxHTTP(self.url(), role, self.password(role), timeout_s=60)

    def stop(self) -> None:
        influxd.stop(self.layout)
        self.pid = None
