"""Fixtures for the whole way: the processor running as its own process on the session stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.config import CloudConfig, parse_cloud_config
from cloud.initdb import init_db
from cloud.stack_config import cloud_config_for_stack, to_toml
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo


@pytest.fixture(scope="session")
def db_ready(stack: StackInfo) -> StackInfo:
    creds = stack.influx("admin")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as admin:
        init_db(admin, stack.database, parse_cloud_config(
            {"mqtt": {"password_file": "x", "ca_file": "x"}, "influx": {"password_file": "x"}}).retention)
    return stack


@pytest.fixture
def reader(db_ready: StackInfo) -> Iterator[InfluxHTTP]:
    creds = db_ready.influx("reader")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as client:
        yield client


class CloudProcess:
    """`urbanpulse cloud run` in a child process, as an operator would start it."""

    def __init__(self, config_path: Path, log_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.config_path = config_path
        self.extra_args = extra_args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.config: CloudConfig | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "urbanpulse.cli", "cloud", "run", "--config",
                 str(self.config_path), *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def cloud_factory(db_ready: StackInfo, tmp_path: Path) -> Iterator[Callable[..., CloudProcess]]:
    started: list[CloudProcess] = []

    def make(name: str = "cloud", extra_args: tuple[str, ...] = (), log_name: str | None = None,
             topic: str | None = None, **flow: Any) -> CloudProcess:
        config = cloud_config_for_stack(db_ready, tmp_path / name, **flow)
        if topic is not None:
            config["mqtt"]["topic"] = topic
        # Each test gets its own shared-subscription group and session.
        config["mqtt"]["shared_group"] = f"g-{tmp_path.name[-20:]}-{name}".replace("_", "-")
        config["mqtt"]["client_id"] = f"ingest-{tmp_path.name[-20:]}-{name}"
        path = tmp_path / f"{name}.toml"
        path.write_text(to_toml(config))
        proc = CloudProcess(path, tmp_path / f"{log_name or name}.log", extra_args)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
