"""The agent's paho client comes up without urllib.request, which stays usable on demand.

Each check runs in a fresh interpreter: this test process has imported urllib.request
long ago (pytest and its plugins use it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_node_client_does_not_load_urllib_request_or_its_dependencies() -> None:
    out = run_fresh("""
        import sys
        from edge.config import MqttConfig
        from edge.mqtt_client import make_client
        cfg = MqttConfig(host="127.0.0.1", port=1883, username="n1", ca_file=None,
                         password_file=None, cert_file=None, key_file=None, keepalive_s=30,
                         tls=False, delivery="broker", ack_timeout_s=60.0)
        client = make_client("n1", cfg)
        client.publish("t", b"x", qos=1)   # queued while not connected: exercises the client
        from edge.deferred_imports import is_loaded
        print(is_loaded("urllib.request"), "http.client" in sys.modules, "email" in sys.modules)
    """)
    assert out == "False False False"


def test_a_deferred_module_is_imported_on_first_use() -> None:
    out = run_fresh("""
        from edge.deferred_imports import defer, is_loaded
        defer("urllib.request")
        import urllib.request
        from urllib.request import getproxies
        import urllib.request as again
        print(is_loaded("urllib.request"), callable(getproxies),
              again.Request("http://127.0.0.1/").full_url,
              urllib.request is __import__("sys").modules["urllib.request"])
    """)
    assert out == "True True http://127.0.0.1/ True"


def test_defer_leaves_an_already_imported_module_alone() -> None:
    out = run_fresh("""
        import urllib.request
        from edge.deferred_imports import defer, is_loaded
        defer("urllib.request")
        print(is_loaded("urllib.request"))
    """)
    assert out == "True"
