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
INTEGRATION = "memcached"  # registry.INTEGRATION, known here before the package is imported
ENABLED_ENV = "DD_TRACE_MEMCACHED_ENABLED"
ISSUES_URL = "https://github.com/ddtrace-memcached/ddtrace-memcached/issues"
"""Where the self-check's warning asks users to report an incompatible ddtrace (pyproject's Issues URL)."""

MONKEY_NAMES = ("patch", "config", "PATCH_MODULES", "_on_import_factory", "when_imported")
"""What registering needs from ``ddtrace._monkey`` (and ``INTEGRATION_CONFIGS`` from the module
of its ``config``). All private but ``patch``: any ddtrace release may move them, and then the
self-check warns and ddtrace's built-ins stand in."""
OPTIONAL_MONKEY_NAMES = ("_PATCHED_MODULES", "_patch_all")
"""Used when present: bookkeeping (``_PATCHED_MODULES``) and the check that ``ddtrace-run``
set up the integration (``_patch_all``)."""


def _registry():
    """``ddtrace_memcached.registry``: the clients, and the integration's name. Imported on
    first use (once ddtrace loads), never at interpreter startup; it imports no client."""
    from ddtrace_memcached import registry

    return registry


def covered_clients():
    """The clients ``memcached`` traces: ``DD_TRACE_MEMCACHED_CLIENTS``, else all.

    A client left out stays with ddtrace's built-in integration for it, if it has one.
    """
    return _registry().covered()


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


class _State:
    """What the self-check knows: one warning per process at most."""

    problem = None  # why registering failed, or None
    asked = False  # ddtrace.patch was called with memcached enabled
    set_up = False  # and the integration's import hooks are in place
    warned = False


def state() -> dict:
    """The self-check's findings (``python -m ddtrace_memcached`` reports them)."""
    return {name: getattr(_State, name) for name in ("problem", "asked", "set_up", "warned")}


def register(monkey):
    """Adds ``memcached`` to ddtrace's integrations: defaults, config and ``patch``.

    Never raises: a failure here must not break ``import ddtrace``. When ddtrace is not
    what this module expects, it warns once (:func:`warn`) and leaves ddtrace's built-in
    integrations in charge.
    """
    try:
        _register(monkey)
    except Exception as exc:
        _State.problem = _describe(exc)
        if _enabled_by_env():
            warn("could not register with ddtrace: %s" % _State.problem)


def _register(monkey):
    import functools

    original = monkey.patch
    if getattr(original, "__ddtrace_memcached__", False):
        return
    missing = [name for name in MONKEY_NAMES if not hasattr(monkey, name)]
    if missing:
        _State.problem = "ddtrace._monkey has no %s" % ", ".join(missing)
    else:
        try:
            config_module = type(monkey.config).__module__
            add_integration_config(config_module)
            if INTEGRATION not in getattr(sys.modules[config_module], "INTEGRATION_CONFIGS", ()):
                # ddtrace would refuse config.memcached: every span would fail to start.
                _State.problem = "%s has no INTEGRATION_CONFIGS" % config_module
            else:
                monkey.PATCH_MODULES.setdefault(INTEGRATION, True)
        except Exception as exc:
            _State.problem = _describe(exc)

    @functools.wraps(original)
    def patch(raise_errors=True, **patch_modules):
        enabled = patch_modules.pop(INTEGRATION, False)
        if enabled:
            _patch_memcached(monkey, raise_errors, enabled, patch_modules)
        return original(raise_errors=raise_errors, **patch_modules)

    patch.__ddtrace_memcached__ = True
    monkey.patch = patch
    ddtrace = sys.modules.get("ddtrace")
    if ddtrace is not None and getattr(ddtrace, "patch", None) is original:
        ddtrace.patch = patch
    _check_patch_all(monkey)
    if _State.problem is not None and _enabled_by_env():
        warn("could not register with ddtrace: %s" % _State.problem)


def _patch_memcached(monkey, raise_errors, enabled, patch_modules):
    """``memcached`` asked for in ``ddtrace.patch``: ours, or else the built-ins. Never raises."""
    _State.asked = True
    builtins = []
    try:
        clients = covered_clients()
        builtins = [_registry().BY_MODULE[client].builtin for client in clients]
        if _State.problem is None:
            _patch_on_import(monkey, raise_errors, enabled, clients)
            _State.set_up = True
    except Exception as exc:
        _State.problem = _describe(exc)
    if _State.set_up:
        for builtin in builtins:
            # Ours takes precedence: the built-in would trace every command again.
            patch_modules.pop(builtin, None)
        return
    warn("ddtrace.patch(memcached=True) could not enable it: %s" % _State.problem)
    for builtin in builtins:
        if builtin is not None:
            patch_modules.setdefault(builtin, True)


def _check_patch_all(monkey):
    """Wraps ``_patch_all`` (``ddtrace-run``, ``import ddtrace.auto``) to warn when it ends
    without asking for ``memcached`` although the user did not switch it off."""
    import functools

    original = getattr(monkey, "_patch_all", None)
    if original is None or getattr(original, "__ddtrace_memcached__", False):
        return

    @functools.wraps(original)
    def _patch_all(**patch_modules):
        result = original(**patch_modules)
        wanted = patch_modules.get(INTEGRATION, _enabled_by_env())
        if wanted and not _State.asked:
            who = "ddtrace-run (or import ddtrace.auto)" if _bootstrapping() else "ddtrace._monkey._patch_all()"
            warn("%s ended without enabling it, and it was not switched off" % who)
        return result

    _patch_all.__ddtrace_memcached__ = True
    monkey._patch_all = _patch_all


def _bootstrapping() -> bool:
    return "ddtrace.bootstrap.preload" in sys.modules


def _enabled_by_env() -> bool:
    """Whether ``ddtrace-run`` would enable ``memcached``, read as ddtrace reads it:
    ``DD_PATCH_MODULES`` (``memcached:false``) first, then ``DD_TRACE_MEMCACHED_ENABLED``."""
    for item in os.environ.get("DD_PATCH_MODULES", "").replace(",", " ").split():
        name, _, value = item.partition(":")
        if name.strip() == INTEGRATION:
            return _asbool(value)
    return _asbool(os.environ.get(ENABLED_ENV, "true"))


def _asbool(value: str) -> bool:
    return value.strip().lower() in ("true", "1")  # ddtrace's asbool


def _describe(exc: BaseException) -> str:
    return "%s: %s" % (type(exc).__name__, exc)


def warn(what: str) -> None:
    """Logs the self-check's one WARNING: what failed, the fallback, where to report it.

    On ``ddtrace.contrib.memcached``, which reaches stderr through the handler ddtrace puts
    on its ``ddtrace`` logger, or through :data:`logging.lastResort` before it does.
    """
    if _State.warned:
        return
    _State.warned = True
    import logging

    try:
        builtins = ", ".join(sorted(_registry().builtins()))
    except Exception:  # a warning about a broken install must not fail too
        builtins = "the memcached clients it knows"
    logging.getLogger("ddtrace.contrib.memcached").warning(
        "ddtrace-memcached %s cannot enable the memcached integration with ddtrace %s: %s. "
        "Fallback in effect: ddtrace's built-in integrations for %s trace those clients (on by default under "
        "ddtrace-run); to use this integration anyway, call ddtrace_memcached.patch() in the application. "
        "Please report this at %s",
        _version("ddtrace-memcached"),
        _version("ddtrace"),
        what,
        builtins,
        ISSUES_URL,
    )


def _version(distribution: str) -> str:
    try:
        from importlib.metadata import version

        return version(distribution)
    except Exception:
        return "(version unknown)"


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
    patched = getattr(monkey, "_PATCHED_MODULES", None)
    if patched is not None:
        patched.add(INTEGRATION)
