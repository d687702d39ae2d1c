"""Registers the ``memcached`` integration with ddtrace, from a ``.pth`` file.

ddtrace only knows the integrations that live inside its own package, so
``ddtrace.patch(memcached=True)`` and ``ddtrace-run`` cannot find ours by themselves.
``ddtrace_memcached.pth`` imports this module at interpreter startup. It imports
nothing (``sys`` is always loaded) and only puts a finder on ``sys.meta_path`` that
waits for ``ddtrace._monkey``. When that module has run, and before
``ddtrace/__init__.py`` binds ``ddtrace.patch``, :func:`register` teaches it the
``memcached`` integration. Processes that never import ddtrace pay for one string
comparison per import until they exit.
"""

import os
import sys

_MONKEY = "ddtrace._monkey"
INTEGRATION = "memcached"

CLIENTS = {
    # client (its module, and ``ddtrace_memcached.clients.<client>``): ddtrace's built-in
    # integration for it, which ours replaces, or None
    "pymemcache": "pymemcache",
    "pylibmc": "pylibmc",
    "memcache": None,  # python-memcached
    "bmemcached": None,  # python-binary-memcached
    "meta_memcache": None,
    "aiomcache": None,
    "emcache": None,
}
"""The clients the integration can trace."""

CLIENTS_ENV = "DD_TRACE_MEMCACHED_CLIENTS"


def covered_clients():
    """The clients ``memcached`` traces: ``DD_TRACE_MEMCACHED_CLIENTS`` (comma-separated), else all.

    A client left out stays with ddtrace's built-in integration for it, if it has one.
    """
    value = os.environ.get(CLIENTS_ENV, "").strip()
    if not value or value.lower() == "all":
        return tuple(CLIENTS)
    wanted = {name.strip().lower() for name in value.replace(" ", ",").split(",")}
    return tuple(client for client in CLIENTS if client in wanted)


class _MonkeyFinder:
    """Finds ``ddtrace._monkey`` through the other finders and wraps its loader."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != _MONKEY:
            return None
        _remove_finder()
        for finder in list(sys.meta_path):
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None:
                break
        else:
            return None
        if not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader:
    """Runs the real loader, then registers; the module keeps its real loader."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        register(module)


def _remove_finder():
    try:
        sys.meta_path.remove(_MonkeyFinder)
    except ValueError:
        pass


def install():
    """Registers now if ddtrace is loaded, else waits for it. Idempotent."""
    monkey = sys.modules.get(_MONKEY)
    if monkey is not None:
        register(monkey)
    elif _MonkeyFinder not in sys.meta_path:
        sys.meta_path.insert(0, _MonkeyFinder)


def register(monkey):
    """Adds ``memcached`` to ddtrace's integrations: defaults, config and ``patch``.

    Never raises: a failure here must not break ``import ddtrace``.
    """
    try:
        _register(monkey)
    except Exception:
        import logging

        logging.getLogger("ddtrace.contrib.memcached").debug("could not register with ddtrace", exc_info=True)


def _register(monkey):
    import functools

    original = monkey.patch
    if getattr(original, "__ddtrace_memcached__", False):
        return
    add_integration_config(type(monkey.config).__module__)
    monkey.PATCH_MODULES.setdefault(INTEGRATION, True)

    @functools.wraps(original)
    def patch(raise_errors=True, **patch_modules):
        enabled = patch_modules.pop(INTEGRATION, False)
        if enabled:
            clients = covered_clients()
            for client in clients:
                # Ours takes precedence: the built-in would trace every command again.
                patch_modules.pop(CLIENTS[client], None)
            _patch_on_import(monkey, raise_errors, enabled, clients)
        return original(raise_errors=raise_errors, **patch_modules)

    patch.__ddtrace_memcached__ = True
    monkey.patch = patch
    ddtrace = sys.modules.get("ddtrace")
    if ddtrace is not None and getattr(ddtrace, "patch", None) is original:
        ddtrace.patch = patch


def add_integration_config(config_module_name):
    """Lets ``ddtrace.config.memcached`` exist before the integration is patched.

    ddtrace 3.x and 4.x accept settings only for names in ``INTEGRATION_CONFIGS``.
    """
    config_module = sys.modules[config_module_name]
    known = getattr(config_module, "INTEGRATION_CONFIGS", None)
    if known is not None and INTEGRATION not in known:
        config_module.INTEGRATION_CONFIGS = frozenset(known) | {INTEGRATION}


def _patch_on_import(monkey, raise_errors, patch_indicator, clients):
    """Does for ``memcached`` what ``_monkey.patch`` does for a built-in integration:
    ``ddtrace_memcached.patch.patch()`` runs when the first client module is imported.
    ddtrace checks that client's version first (safe instrumentation)."""
    on_import = monkey._on_import_factory(
        INTEGRATION, "ddtrace_%s.patch", raise_errors=raise_errors, patch_indicator=patch_indicator
    )
    for client in clients:
        monkey.when_imported(client)(on_import)
    monkey._PATCHED_MODULES.add(INTEGRATION)
