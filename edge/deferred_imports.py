"""Standard-library modules the agent's dependencies import but rarely use, loaded on first use.

paho-mqtt imports `urllib.request` at module level for one purpose: reading a proxy from
the environment, and only when PySocks is installed (`Client._get_proxy` returns before
touching `urllib.request` otherwise). `urllib.request` drags in `http.client` and the
`email` package: about 1.8 MiB of the agent's resident memory on a node that never uses
them. `defer("urllib.request")` puts a placeholder in `sys.modules` that imports the real
module the moment any of its attributes is read, so every importer still gets a working
module, only later.
"""

from __future__ import annotations

import importlib
import sys
import types

PAHO_UNUSED = ("urllib.request",)


class DeferredModule(types.ModuleType):
    """Stands in for a module not imported yet; the first attribute read imports it."""

    def __getattr__(self, attr: str) -> object:
        real = load(self.__name__)
        return getattr(real, attr)


def load(name: str) -> types.ModuleType:
    """The real module `name`, importing it now if only its placeholder is there."""
    current = sys.modules.get(name)
    if isinstance(current, DeferredModule):
        del sys.modules[name]
        real = importlib.import_module(name)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, real)
        return real
    return importlib.import_module(name)


def defer(*names: str) -> None:
    """Defer each of `names` unless it is imported (or deferred) already."""
    for name in names:
        if name in sys.modules:
            continue
        placeholder = DeferredModule(name)
        sys.modules[name] = placeholder
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(importlib.import_module(parent), child, placeholder)


def is_loaded(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and not isinstance(module, DeferredModule)
