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
SETTINGS = (ENABLED_ENV, "DD_MEMCACHED_SERVICE", "DD_TRACE_MEMCACHED_CLIENTS", "DD_TRACE_MEMCACHED_COMMAND_ENABLED")
"""Every environment variable of the integration, for ddtrace's registry of the ones it knows."""
ENV_MODULE = "ddtrace.internal.settings.env"  # checks each DD_* read against that registry
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
    """What the self-check knows (one warning per process at most), and what
    ``ddtrace_memcached.unpatch()`` needs to hand the clients back to ddtrace."""

    problem = None  # why registering failed, or None
    asked = False  # ddtrace.patch was called with memcached enabled
    set_up = False  # and the integration's import hooks are in place
    warned = False
    original_patch = None  # ddtrace's own _monkey.patch
    pending = []  # the _Pending import hooks of ddtrace.patch(memcached=True)
    builtins_asked = {}  # built-in -> its patch indicator, each time ddtrace.patch asked for it
    # Kept here for ddtrace_memcached.diagnostics: ddtrace-run may unload and re-import the
    # package's modules after it starts (with gevent installed), never this one.
    diagnostics = {}  # each ddtrace diagnostic -> "ok", or what is missing
    warned_clients = set()  # the unknown DD_TRACE_MEMCACHED_CLIENTS names warned about


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
        _remember_builtins(patch_modules)
        enabled = patch_modules.pop(INTEGRATION, False)
        if enabled:
            _patch_memcached(monkey, raise_errors, enabled, patch_modules)
        return original(raise_errors=raise_errors, **patch_modules)

    patch.__ddtrace_memcached__ = True
    _State.original_patch = original
    monkey.patch = patch
    ddtrace = sys.modules.get("ddtrace")
    if ddtrace is not None and getattr(ddtrace, "patch", None) is original:
        ddtrace.patch = patch
    _check_patch_all(monkey)
    register_settings()
    if _State.problem is not None and _enabled_by_env():
        warn("could not register with ddtrace: %s" % _State.problem)


def _remember_builtins(patch_modules):
    """Notes each built-in that ``ddtrace.patch`` was asked to enable (``ddtrace-run``'s defaults
    included): while ``memcached`` covers its client the built-in is held back, and
    :func:`hand_back` enables it again."""
    try:
        for builtin in _registry().builtins():
            if patch_modules.get(builtin):
                _State.builtins_asked[builtin] = patch_modules[builtin]
    except Exception:  # bookkeeping must never fail ddtrace.patch
        _debug("could not note the built-ins asked for")


def _patch_memcached(monkey, raise_errors, enabled, patch_modules):
    """``memcached`` asked for in ``ddtrace.patch``: ours, or else the built-ins. Never raises."""
    _State.asked = True
    builtins = []
    _diagnose("warn_unknown_clients")
    _diagnose("list_in_startup_log")
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
        _diagnose("list_in_startup_log")  # enabled or not, ddtrace's startup log comes next
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
    """Whether ``ddtrace-run`` would enable ``memcached`` (:func:`switch`)."""
    return switch(INTEGRATION, True)[0]


def switch(integration: str, default: bool):
    """``(enabled, source)``: whether ``ddtrace-run`` enables ``integration``, read as ddtrace
    reads it: ``DD_PATCH_MODULES`` (``name:false``) first, then ``DD_TRACE_<NAME>_ENABLED``,
    then ``default`` (ddtrace's ``PATCH_MODULES``). ``source`` names the setting that decided."""
    for item in os.environ.get("DD_PATCH_MODULES", "").replace(",", " ").split():
        name, _, value = item.partition(":")
        if name.strip() == integration:
            return _asbool(value), "DD_PATCH_MODULES=%s" % item.strip()
    variable = "DD_TRACE_%s_ENABLED" % integration.upper().replace("-", "_")
    if variable in os.environ:
        return _asbool(os.environ[variable]), "%s=%s" % (variable, os.environ[variable])
    return default, "default"


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
    ddtrace checks that client's version first (safe instrumentation). The hooks are
    :class:`_Pending`, so that ``ddtrace_memcached.unpatch()`` can cancel them."""
    on_import = monkey._on_import_factory(
        INTEGRATION, "ddtrace_%s.patch", raise_errors=raise_errors, patch_indicator=patch_indicator
    )
    for client in clients:
        pending = _Pending(on_import)
        _State.pending.append(pending)
        monkey.when_imported(client)(pending)
    patched = getattr(monkey, "_PATCHED_MODULES", None)
    if patched is not None:
        patched.add(INTEGRATION)


class _Pending:
    """An import hook of ``ddtrace.patch(memcached=True)`` until it is cancelled: the import
    hooks ddtrace uses (wrapt's) cannot be removed, only made to do nothing."""

    def __init__(self, on_import):
        self.on_import = on_import
        self.cancelled = False

    def __call__(self, module):
        if not self.cancelled:
            self.on_import(module)


def cancel_pending() -> None:
    """Clients imported from now on are not patched on ``ddtrace.patch(memcached=True)``'s behalf."""
    while _State.pending:
        _State.pending.pop().cancelled = True


def hand_back() -> None:
    """Enables again, through ddtrace's own ``patch``, each built-in integration (pymemcache,
    pylibmc) that ``ddtrace-run`` or the app asked for while ``memcached`` held it back: it
    patches the clients already imported and hooks the others. Never raises."""
    if _State.original_patch is None or not _State.builtins_asked:
        return
    try:
        _State.original_patch(raise_errors=False, **_State.builtins_asked)
    except Exception:
        _debug("could not hand the clients back to ddtrace's built-in integrations")


def register_settings() -> None:
    """Adds :data:`SETTINGS` to ddtrace's supported-configuration registry, so that its debug
    log does not call them unsupported. Never raises.

    ddtrace checks every ``DD_*`` read against a frozenset that its ``env`` module imported by
    name: that name (and the registry module's own, for whatever reads it there) is replaced
    by its union with ours. A ddtrace without that module checks nothing: nothing to do.
    """
    env = sys.modules.get(ENV_MODULE)
    if env is None:
        _State.diagnostics["supported_configurations"] = "ok (this ddtrace checks no settings)"
        return
    try:
        known = env.SUPPORTED_CONFIGURATIONS
        if not set(SETTINGS) <= known:
            extended = frozenset(known) | set(SETTINGS)
            env.SUPPORTED_CONFIGURATIONS = extended
            source = sys.modules.get("ddtrace.internal.settings._supported_configurations")
            if getattr(source, "SUPPORTED_CONFIGURATIONS", None) is known:
                source.SUPPORTED_CONFIGURATIONS = extended
        _State.diagnostics["supported_configurations"] = "ok"
    except Exception as exc:
        _State.diagnostics["supported_configurations"] = "%s: %s" % (ENV_MODULE, _describe(exc))
        _debug("cannot add the memcached settings to ddtrace's registry")


def _diagnose(step: str) -> None:
    """Runs ``ddtrace_memcached.diagnostics.<step>``, which never raises (this guards the import)."""
    try:
        from ddtrace_memcached import diagnostics

        getattr(diagnostics, step)()
    except Exception:
        _debug("diagnostics: %s failed" % step)


def _debug(what: str) -> None:
    import logging

    logging.getLogger("ddtrace.contrib.memcached").debug(what, exc_info=True)
