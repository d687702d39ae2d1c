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

import functools
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
    Client("libmc", ("libmc",), ">=1.4.11"),
)

BY_MODULE: Dict[str, Client] = {client.module: client for client in CLIENTS}

CLIENTS_ENV = "DD_TRACE_MEMCACHED_CLIENTS"
ALL = "all"


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
    """Resolves ``DD_TRACE_MEMCACHED_CLIENTS`` (or ``value``): module or distribution names (a
    fork's too), separated by commas or spaces, case-insensitive; unset, empty or ``all`` covers
    every client. Unknown names cover nothing: :func:`described` lists the valid ones for the
    warning that names them."""
    if value is None:
        value = os.environ.get(CLIENTS_ENV, "")
    items = [item for item in value.replace(",", " ").split() if item]
    if not items:
        return Selection(value, tuple(client.module for client in CLIENTS), ())
    names = _names()
    known = [item for item in items if item.lower() in names or item.lower() == ALL]
    unknown = tuple(item for item in items if item not in known)
    if ALL in (item.lower() for item in known):
        return Selection(value, tuple(client.module for client in CLIENTS), unknown)
    wanted = {names[item.lower()] for item in known}
    return Selection(value, tuple(client.module for client in CLIENTS if client.module in wanted), unknown)


def described() -> str:
    """The names :func:`select` accepts, for a message: ``pymemcache, pylibmc (or pylibmc2), ...``."""
    parts = []
    for client in CLIENTS:
        others = [name for name in client.distributions if name != client.module]
        parts.append(client.module + (" (or %s)" % ", ".join(others) if others else ""))
    return ", ".join(parts) + ", or %s" % ALL


def covered() -> Tuple[str, ...]:
    """The modules of the clients the integration traces (``DD_TRACE_MEMCACHED_CLIENTS``)."""
    return select().modules


def installed(client: Client) -> Tuple[Optional[str], Optional[str]]:
    """``(distribution, version)`` of the distribution that ships ``client.module``: of
    ``client.distributions``, the one installed (the one whose files hold the module that
    ``import`` finds, when a fork and its original both left metadata), else (Python 3.10+)
    any other that ships the module, a fork the registry does not list yet; ``(None, None)``
    when none. Reads metadata only: imports nothing of the client."""
    found = [(d, v) for d, v in ((d, _version_of(d)) for d in client.distributions) if v]
    if len(found) > 1:
        found = [pair for pair in found if _ships(pair[0], client.module)] or found
    if not found:
        found = [(d, v) for d, v in ((d, _version_of(d)) for d in _providers().get(client.module, ())) if v]
    return found[0] if found else (None, None)


def _ships(distribution: str, module: str) -> bool:
    """Whether ``distribution``'s files hold the ``module`` that ``import`` would load."""
    from importlib.metadata import distribution as metadata
    import importlib.util

    try:
        origin = os.path.realpath(importlib.util.find_spec(module).origin)
        shipped = metadata(distribution)
        return any(os.path.realpath(shipped.locate_file(path)) == origin for path in shipped.files or ())
    except Exception:  # no spec, no RECORD: cannot tell
        return False


@functools.lru_cache(maxsize=1)
def _providers() -> Dict[str, Tuple[str, ...]]:
    """Module -> the distributions that ship it (Python 3.10+; else empty). Scans every
    installed distribution, so it runs only when a listed one is missing, once a process."""
    from importlib import metadata

    try:
        found = metadata.packages_distributions()  # type: ignore[attr-defined]
    except Exception:  # Python 3.9, or a broken install elsewhere: the listed names only
        return {}
    return {module: tuple(distributions) for module, distributions in found.items()}


def _version_of(distribution: str) -> Optional[str]:
    from importlib.metadata import version

    try:
        return version(distribution)
    except Exception:  # not installed, or broken metadata: not worth an exception at import time
        return None


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
