"""The clients the integration traces: the one place that lists them.

Each row names the module an app imports, the PyPI distributions that install that module
(a fork may install the same module: pylibmc2 installs ``pylibmc``), the versions traced,
and ddtrace's own integration for it, if any. Everything else derives from this table:
the ``.pth`` hook (which reads it without importing a client or ddtrace), ``patch()``,
``_supported_versions()``, the status report, the packaging check, the benchmarks and
the contract suite's adapters. ``pyproject.toml`` (its extras) and ``riotfile.py`` (its
suites) keep lists of their own; ``tests/test_registry.py`` checks that they agree.

This module imports nothing of ddtrace or of any client.
"""

import os
import sys
from typing import Dict
from typing import List
from typing import NamedTuple
from typing import Optional
from typing import Tuple

INTEGRATION = "memcached"
"""The integration's name in ddtrace: ``ddtrace.patch(memcached=True)``, ``DD_TRACE_MEMCACHED_*``."""


class Client(NamedTuple):
    module: str
    """What the app imports; ``ddtrace_memcached.clients.<module>`` traces it."""
    distributions: Tuple[str, ...]
    """The distributions that install the module; the first is the one its extra pins."""
    supported: str
    """The versions traced (a specifier, ``">=3.4"``): ``SUPPORTED`` of ddtrace's integrations."""
    builtin: Optional[str] = None
    """ddtrace's own integration for the client, which ``memcached`` replaces while it covers it."""

    @property
    def extra(self) -> str:
        """``pip install "ddtrace-memcached[<extra>]"`` pins a supported release."""
        return self.distributions[0]


CLIENTS: Tuple[Client, ...] = (
    Client("pymemcache", ("pymemcache",), ">=3.4", builtin="pymemcache"),
    Client("pylibmc", ("pylibmc", "pylibmc2"), ">=1.6", builtin="pylibmc"),
    Client("memcache", ("python-memcached",), ">=1.60"),
    Client("bmemcached", ("python-binary-memcached",), ">=0.31"),
    Client("meta_memcache", ("meta-memcache",), ">=4.0"),
    Client("aiomcache", ("aiomcache",), ">=0.8.0"),
    Client("emcache", ("emcache",), ">=1.3.1"),
)

BY_MODULE: Dict[str, Client] = {client.module: client for client in CLIENTS}

CLIENTS_ENV = "DD_TRACE_MEMCACHED_CLIENTS"


def _names() -> Dict[str, str]:
    """Every name ``DD_TRACE_MEMCACHED_CLIENTS`` accepts (lowercase) -> the module it means."""
    names = {}
    for client in CLIENTS:
        for name in (client.module,) + client.distributions:
            names[name.lower()] = client.module
            names[name.lower().replace("-", "_")] = client.module
    return names


class Selection(NamedTuple):
    """What ``DD_TRACE_MEMCACHED_CLIENTS`` resolved to."""

    value: str  # as set ("" when unset)
    modules: Tuple[str, ...]  # the clients covered, in the registry's order
    unknown: Tuple[str, ...]  # names it did not know, as written


def select(value: Optional[str] = None) -> Selection:
    """Resolves ``DD_TRACE_MEMCACHED_CLIENTS`` (or ``value``): module or distribution names,
    separated by commas or spaces, case-insensitive; unset, empty or ``all`` covers every client."""
    if value is None:
        value = os.environ.get(CLIENTS_ENV, "")
    items = [item for item in value.replace(",", " ").split() if item]
    if not items or [item.lower() for item in items] == ["all"]:
        return Selection(value, tuple(client.module for client in CLIENTS), ())
    names = _names()
    wanted = {names[item.lower()] for item in items if item.lower() in names}
    unknown = tuple(item for item in items if item.lower() not in names)
    return Selection(value, tuple(client.module for client in CLIENTS if client.module in wanted), unknown)


def covered() -> Tuple[str, ...]:
    """The modules of the clients the integration traces (``DD_TRACE_MEMCACHED_CLIENTS``)."""
    return select().modules


def installed(client: Client) -> Tuple[Optional[str], Optional[str]]:
    """``(distribution, version)`` of whichever of ``client.distributions`` is installed,
    else ``(None, None)``. Reads metadata only: imports nothing of the client."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version

    for distribution in client.distributions:
        try:
            return distribution, version(distribution)
        except PackageNotFoundError:
            continue
        except Exception:  # broken metadata: not worth an exception at import time
            continue
    return None, None


def builtins() -> List[str]:
    """ddtrace's own integrations that ``memcached`` replaces."""
    return [client.builtin for client in CLIENTS if client.builtin is not None]


def version(client: Client) -> str:
    """The installed version of ``client``: its distribution's, else its module's
    ``__version__`` (imported already), else ``""``."""
    found = installed(client)[1]
    if found:
        return found
    module = sys.modules.get(client.module)
    return str(getattr(module, "__version__", "") or "")


def client_version(module_name: str) -> str:
    """:func:`version` of the client that ``ddtrace_memcached.clients.<client>`` (or ``<client>``) traces."""
    return version(BY_MODULE[module_name.rpartition(".")[2]])
