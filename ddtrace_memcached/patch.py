"""The entry point that ddtrace calls: :func:`patch` and :func:`unpatch` cover every client.

A client module (``ddtrace_memcached.clients.<client>``) is imported only once the app
has imported its library, so importing one client never imports another. Clients that
are not installed are skipped silently.
"""

import importlib
import logging
import sys
from types import ModuleType
from typing import Dict

from ddtrace import config
import wrapt.importer

from . import core
from . import settings

log = logging.getLogger("ddtrace.contrib.memcached")

_patched = False
_clients: Dict[str, ModuleType] = {}  # client -> its module, while patched
_hooked: set = set()  # clients whose import hook is registered (hooks cannot be removed)


def _client_module(client: str) -> ModuleType:
    return importlib.import_module("%s.clients.%s" % (__package__, client))


def get_versions() -> Dict[str, str]:
    """The versions of the clients the app has imported (ddtrace's version check, telemetry)."""
    return _of_imported_clients(lambda module: module.get_version())


def _supported_versions() -> Dict[str, str]:
    return _of_imported_clients(lambda module: module.SUPPORTED)


def _of_imported_clients(read) -> Dict[str, str]:
    """``read(module)`` of each covered client the app has imported. Never raises: ddtrace
    calls these outside its own guard, inside the app's ``import``."""
    found = {}
    for client in settings.clients():
        if client in sys.modules:
            try:
                found[client] = read(_client_module(client))
            except Exception:
                log.debug("no version for %s", client, exc_info=True)
    return found


def patch() -> None:
    """Traces every client that ``DD_TRACE_MEMCACHED_CLIENTS`` covers (all by default):
    the ones imported already at once, each other one when the app imports it. Idempotent."""
    global _patched
    settings.register()
    core.configure()
    _patched = True
    for client in settings.clients():
        if client in sys.modules:
            _patch_client(client, existing=True)
        if client not in _hooked:
            _hooked.add(client)
            wrapt.importer.when_imported(client)(_on_import)


def unpatch() -> None:
    """Restores every client :func:`patch` traced, and hands back to ddtrace's built-in
    integrations. Idempotent."""
    global _patched
    _patched = False
    while _clients:
        client, module = _clients.popitem()
        try:
            module.unpatch()
        except Exception:
            log.debug("could not unpatch %s", client, exc_info=True)


def _on_import(module: ModuleType) -> None:
    if _patched and module.__name__ in settings.clients():
        _patch_client(module.__name__)


def _patch_client(client: str, existing: bool = False) -> None:
    """Never raises: a client that cannot be traced is left untraced.

    ``existing``: the app imported the client before :func:`patch`, so it may hold
    client objects already, which the client module's ``patch_existing()`` (if it has
    one) fixes up.
    """
    if client in _clients:
        return
    try:
        module = _client_module(client)
        if not _compatible(client, module):
            return
        module.patch()
        _clients[client] = module
        if existing and hasattr(module, "patch_existing"):
            module.patch_existing()
    except Exception:
        log.debug("could not patch %s", client, exc_info=True)


def _compatible(client: str, module: ModuleType) -> bool:
    """ddtrace's safe-instrumentation check (``DD_TRACE_SAFE_INSTRUMENTATION_ENABLED``)."""
    if not getattr(config, "_trace_safe_instrumentation_enabled", False):
        return True
    try:
        from ddtrace._monkey import is_version_compatible
    except ImportError:
        return True
    version = module.get_version()
    if not version or is_version_compatible(version, module.SUPPORTED):
        return True
    log.warning("memcached: %s %s is not supported (%s), not traced", client, version, module.SUPPORTED)
    return False
