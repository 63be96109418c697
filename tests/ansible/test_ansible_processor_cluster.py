"""A processor cluster over several hosts through the processor role: `cloud_flow_addresses`
naming another host needs `state.shared = true` in cloud.toml (the processor refuses it
otherwise: every process reads the same journals and recovery store), which the role writes
from `cloud_state_shared`. The role refuses such addresses without it before installing
anything, naming the variable, as `cloud check-config` would refuse the file later."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cloud.config import parse_cloud_config
from tests.ansible.helpers import ROLES, inventory_hosts, load_yaml, render
from tests.ansible.test_ansible_processor_client_cert import _run_checks
from urbanpulse.errors import ConfigError

TEMPLATE = ROLES / "processor" / "templates" / "cloud.toml.j2"
REMOTE = ["proc-a.urbanpulse.internal:2101", "proc-b.urbanpulse.internal:2101"]


def _host_vars(**extra: Any) -> dict[str, Any]:
    return {**next(iter(inventory_hosts("processor").values())), **extra}


def test_the_default_is_one_host_without_shared_state() -> None:
    assert load_yaml(ROLES / "processor" / "defaults" / "main.yml")["cloud_state_shared"] is False
    text = render(TEMPLATE, "processor", _host_vars())
    assert tomllib.loads(text)["state"]["shared"] is False
    assert parse_cloud_config(tomllib.loads(text)).state_shared is False


@pytest.mark.parametrize("process_id", [0, 1])
def test_a_cluster_over_two_hosts_renders_a_config_the_processor_accepts(process_id: int) -> None:
    text = render(TEMPLATE, "processor", _host_vars(
        cloud_flow_addresses=REMOTE, cloud_flow_process_id=process_id, cloud_state_shared=True))
    config = parse_cloud_config(tomllib.loads(text))
    assert config.state_shared is True
    assert config.flow.addresses == tuple(REMOTE)
    assert config.flow.process_id == process_id
    assert str(config.state_dir) == "/var/lib/urbanpulse-cloud"


def test_without_the_variable_the_processor_refuses_the_rendered_config() -> None:
    """What the role's own check (below) stops before: check-config would refuse the file."""
    text = render(TEMPLATE, "processor", _host_vars(cloud_flow_addresses=REMOTE))
    with pytest.raises(ConfigError, match=r"flow\.addresses.*state\.shared = true"):
        parse_cloud_config(tomllib.loads(text))


@pytest.mark.parametrize(("variables", "refused"), [
    ({}, None),
    ({"cloud_flow_addresses": ["127.0.0.1:2101", "localhost:2102"]}, None),
    ({"cloud_flow_addresses": ["127.0.0.1:2101", "127.0.0.2:2102"], "cloud_state_shared": False}, None),
    ({"cloud_flow_addresses": REMOTE, "cloud_state_shared": True}, None),
    ({"cloud_flow_addresses": REMOTE}, REMOTE[0]),
    ({"cloud_flow_addresses": ["127.0.0.1:2101", "10.0.0.7:2101"]}, "10.0.0.7:2101"),
    # not an address Python reads as loopback (cloud/config.py): another host to the processor
    ({"cloud_flow_addresses": ["127.1:2101"]}, "127.1:2101"),
])
def test_the_roles_checks_refuse_other_hosts_without_shared_state(
        tmp_path: Path, variables: dict[str, Any], refused: str | None) -> None:
    done = _run_checks(tmp_path, **variables)
    if refused is None:
        assert done.returncode == 0, done.stdout + done.stderr
        return
    assert done.returncode != 0, done.stdout
    said = " ".join(done.stdout.split())
    assert (f"cloud_flow_addresses names another host ({refused}): set cloud_state_shared: true"
            in said), done.stdout


@pytest.mark.parametrize("value", ["true", "yes", 1])
def test_the_roles_checks_want_a_yaml_boolean(tmp_path: Path, value: Any) -> None:
    """A string would render as a TOML string, which check-config refuses less plainly."""
    done = _run_checks(tmp_path, cloud_state_shared=value)
    assert done.returncode != 0, done.stdout
    assert re.search(r"cloud_state_shared must be true or false \(a YAML boolean\)",
                     " ".join(done.stdout.split())), done.stdout
