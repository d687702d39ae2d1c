"""The entry point that ddtrace calls: :func:`patch` and :func:`unpatch` cover every client.

A client module (``ddtrace_memcached.clients.<client>``) is imported only once the app
has imported its library, so importing one client never imports another. Clients that
are not installed are skipped silently. This module imports nothing of ddtrace or of a
client until :func:`patch` runs: the ``.pth`` hook may import the package early.
"""

import importlib
import logging
import sys
from types import ModuleType
from typing import Dict
from typing import Optional

import _ddtrace_memcached_hook

from . import registry

log = logging.getLogger("ddtrace.contrib.memcached")

_patched = False
_clients: Dict[str, ModuleType] = {}  # client -> its module, while patched
_hooked: set = set()  # clients whose import hook is registered (hooks cannot be removed)
_outside: set = set()  # clients outside the supported range, said so once
_patching: set = set()  # clients whose module _patch_client is importing


def client_module_name(client: str) -> str:
    return "%s.clients.%s" % (__package__, client)


def client_module(client: str) -> ModuleType:
    """``ddtrace_memcached.clients.<client>``, which imports the client's library."""
    return importlib.import_module(client_module_name(client))


def patched_clients() -> Dict[str, ModuleType]:
    """The clients traced now -> their modules."""
    return dict(_clients)


def is_patched() -> bool:
    """Whether :func:`patch` is in effect (until :func:`unpatch`)."""
    return _patched


def get_versions() -> Dict[str, str]:
    """The versions of the covered clients the app has imported (ddtrace's version check,
    telemetry). Never raises: ddtrace calls it outside its own guard, inside the app's ``import``."""
    found = {}
    for client in registry.covered():
        if client in sys.modules:
            try:
                found[client] = registry.version(registry.BY_MODULE[client])
            except Exception:
                log.debug("no version for %s", client, exc_info=True)
    return found


def _supported_versions() -> Dict[str, str]:
    """Every client's supported range, whatever has been imported (ddtrace's safe instrumentation)."""
    return {client.module: client.supported for client in registry.CLIENTS}


def patch() -> None:
    """Traces every client that ``DD_TRACE_MEMCACHED_CLIENTS`` covers (all by default):
    the ones imported already at once, each other one when the app imports it. Idempotent."""
    global _patched
    import wrapt.importer

    from . import core
    from . import diagnostics
    from . import settings

    settings.register()
    core.configure()
    diagnostics.warn_unknown_clients()
    _patched = True
    for client in registry.covered():
        if client in sys.modules:
            _patch_client(client, existing=True)
        if client not in _hooked:
            _hooked.add(client)
            wrapt.importer.when_imported(client)(_on_import)
            wrapt.importer.when_imported(client_module_name(client))(_on_client_module)


def unpatch() -> None:
    """Restores every client :func:`patch` traced, and hands back to ddtrace's built-in
    integrations: no client is traced by this package any more, not even one imported later,
    and ddtrace's ``pymemcache`` and ``pylibmc`` integrations trace where ``ddtrace-run`` or
    the app had asked for them. :func:`patch` takes over again. Idempotent."""
    global _patched
    _patched = False
    _ddtrace_memcached_hook.cancel_pending()
    while _clients:
        client, module = _clients.popitem()
        try:
            module.unpatch()
        except Exception:
            log.debug("could not unpatch %s", client, exc_info=True)
    _ddtrace_memcached_hook.hand_back()


def _on_import(module: ModuleType) -> None:
    client = module.__name__
    if _patched and client in registry.covered() and not _initializing(client_module_name(client)):
        _patch_client(client)  # (our module being imported imports the client: see below)


def _on_client_module(module: ModuleType) -> None:
    """Our client module, once its body ran. The app may import it before the client's
    library (to read an ``error.type`` constant): then the library's import, at the top of
    the client module, finds it half-made, and the client is patched here instead."""
    client = module.__name__.rpartition(".")[2]
    if _patched and client in registry.covered() and client in sys.modules and client not in _patching:
        _patch_client(client)


def _patch_client(client: str, existing: bool = False) -> None:
    """Never raises: a client that cannot be traced is left untraced.

    ``existing``: the app imported the client before :func:`patch`, so it may hold
    client objects already, which the client module's ``patch_existing()`` (if it has
    one) fixes up.
    """
    if client in _clients:
        return
    _patching.add(client)
    try:
        if not _compatible(registry.BY_MODULE[client]):
            return
        module = client_module(client)
        module.patch()
        _clients[client] = module
        if existing and hasattr(module, "patch_existing"):
            module.patch_existing()
    except Exception:
        log.debug("could not patch %s", client, exc_info=True)
    finally:
        _patching.discard(client)


def _initializing(name: str) -> bool:
    """Whether module ``name`` is being imported (in ``sys.modules``, its body still running)."""
    module = sys.modules.get(name)
    return module is not None and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _compatible(client: registry.Client) -> bool:
    """Whether to trace ``client``: yes, unless its version is outside the supported range and
    ddtrace's safe instrumentation (``DD_TRACE_SAFE_INSTRUMENTATION_ENABLED``) is on, as ddtrace
    decides for its own integrations. Either way it says so once: a warning when it is not
    traced, a debug line when it is (the status report flags it too, from :func:`in_range`)."""
    from ddtrace import config

    version = registry.version(client)
    if in_range(version, client.supported) is not False:
        return True
    safe = bool(getattr(config, "_trace_safe_instrumentation_enabled", False))
    if client.module not in _outside:
        _outside.add(client.module)
        if safe:
            log.warning("memcached: %s %s is not supported (%s), not traced", client.module, version, client.supported)
        else:
            log.debug(
                "memcached: %s %s is outside the supported range (%s); traced anyway, as "
                "DD_TRACE_SAFE_INSTRUMENTATION_ENABLED is off",
                client.module,
                version,
                client.supported,
            )
    return not safe


def in_range(version: str, supported: str) -> Optional[bool]:
    """Whether ``version`` is in ``supported`` by ddtrace's own check; None when either is
    unknown (no version found, or a ddtrace without that check)."""
    try:
        from ddtrace._monkey import is_version_compatible
    except ImportError:
        return None
    return is_version_compatible(version, supported) if version else None
