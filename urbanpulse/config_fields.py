"""Typed reads from parsed TOML tables, shared by every config of the project: each error
names the full key and why, and nothing here does I/O."""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from urbanpulse.errors import ConfigError
from urbanpulse.wire.topics import TopicError, validate_id

T = TypeVar("T")


def plaintext_only_on_loopback(tls: bool, host: str, key: str) -> None:
    """A link without TLS carries its password in clear: allowed only to this machine."""
    if not tls and host not in LOOPBACK_HOSTS:
        raise ConfigError(key, f"false is for a broker on this machine only (host one of "
                               f"{', '.join(sorted(LOOPBACK_HOSTS))}), got host {host!r}: the "
                               "password would cross the network in clear")


def http_only_on_loopback(url: str, key: str) -> None:
    """The HTTP twin of `plaintext_only_on_loopback`: an http:// url carries its password
    and data in clear, so it must name this machine; another host needs https://."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() == "http" and host not in LOOPBACK_HOSTS:
        raise ConfigError(key, f"http:// is for a server on this machine only (host one of "
                               f"{', '.join(sorted(LOOPBACK_HOSTS))}), got host {host!r}: use "
                               "https://, the password and data would cross the network in clear")


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def read_toml(path: Path) -> dict[str, Any]:
    """The one I/O step: read and parse the file, errors naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the config file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from exc


def typed(table: Mapping[str, Any], key: str, prefix: str, kind: type[T], default: Any = ...) -> T:
    """`table[key]` as `kind` (an int is accepted for a float); `default` when absent, or a
    "missing" error when no default is given."""
    full = f"{prefix}.{key}" if prefix else key
    if key not in table:
        if default is ...:
            raise ConfigError(full, "missing")
        return cast(T, default)
    value = table[key]
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind:
        raise ConfigError(full, f"must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def unknown_key(key: str, known: Iterable[str], of: str = "") -> str:
    """The message for a key no one reads: `of` says whose (" for sds011"), the nearest
    known key is suggested when one is close (a typo), and the known keys listed."""
    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = f" (known: {', '.join(names)})" if names else ""
    return f"unknown key{of}{hint}{listed}"


def only_known(table: Mapping[str, Any], known: set[str], prefix: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{prefix}.{key}", unknown_key(key, known))


def finite_seconds(value: float, key: str) -> float:
    """A duration read as a float: TOML has nan and inf, and a wait of either never ends
    (nothing compares true with nan), so both are refused."""
    if not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number of seconds, got {value!r}")
    return value


def typed_id(table: Mapping[str, Any], key: str, prefix: str, what: str) -> str:
    """A site or node id (urbanpulse.wire.topics.validate_id) read from `table[key]`; a
    ConfigError naming `prefix.key` when it is none."""
    try:
        return validate_id(what, typed(table, key, prefix, str))
    except TopicError as exc:
        raise ConfigError(f"{prefix}.{key}", str(exc)) from exc
