"""What ddtrace's own diagnostics say of the integration, and the warnings about its settings.

ddtrace knows only its own integrations, so without help its diagnostics misreport ours:
its startup log (``DD_TRACE_STARTUP_LOGS``) lists ``pymemcache`` as enabled but not
instrumented and never ``memcached``, and under ``DD_TRACE_DEBUG`` it logs "Unsupported
Datadog configuration variable accessed" for every ``DD_*MEMCACHED*`` setting. Both are
taught through what ddtrace itself reads: its supported-configuration registry (by the
``.pth`` hook, ``register_settings``, as ddtrace loads), and the dict its startup log prints
(``ddtrace.internal.debug.collect``, here). Both are private, so each step checks what it
uses first; if a ddtrace release moves it, tracing is unaffected and :func:`state` says what
is missing (``python -m ddtrace_memcached`` prints it).

It imports nothing of ddtrace at import time: the ``.pth`` hook calls it from inside
``ddtrace.patch`` and ``ddtrace-run``'s ``_patch_all``.
"""

import functools
import logging
import sys
from typing import Dict
from typing import Optional

import _ddtrace_memcached_hook as hook

from . import registry

log = logging.getLogger("ddtrace.contrib.memcached")

SERVICE_ENV = "DD_MEMCACHED_SERVICE"
COMMAND_ENABLED_ENV = "DD_TRACE_MEMCACHED_COMMAND_ENABLED"
SETTINGS = hook.SETTINGS  # every environment variable of the integration, which the hook registers
ENV_MODULE = hook.ENV_MODULE
DEBUG_MODULE = "ddtrace.internal.debug"  # collect(): the startup log's dict

_state: Dict[str, str] = hook._State.diagnostics  # what registered, or what is missing
_warned: set = hook._State.warned_clients


def state() -> Dict[str, str]:
    """For each of ddtrace's diagnostics, ``"ok"``, or what is missing to take part in it."""
    return dict(_state)


def list_in_startup_log() -> None:
    """Wraps ddtrace's ``debug.collect`` so that its ``integrations`` show ``memcached``
    (:func:`startup_log_entry`) and the built-ins it replaces as replaced. Idempotent;
    never raises. Runs once ddtrace has imported that module (when ``ddtrace-run`` or
    ``ddtrace.patch`` asks for ``memcached``), before ddtrace writes its startup log."""
    debug = sys.modules.get(DEBUG_MODULE)
    if debug is None:
        _state["startup_log"] = "%s is not loaded" % DEBUG_MODULE
        return
    try:
        collect = debug.collect
        if not getattr(collect, "__ddtrace_memcached__", False):

            @functools.wraps(collect)
            def collect_with_memcached(*args, **kwargs):
                info = collect(*args, **kwargs)
                try:
                    _amend(info["integrations"])
                except Exception:  # the startup log must come out, with or without us
                    log.debug("could not add memcached to ddtrace's startup log", exc_info=True)
                return info

            collect_with_memcached.__ddtrace_memcached__ = True
            debug.collect = collect_with_memcached
        _state["startup_log"] = "ok"
    except Exception as exc:
        _state["startup_log"] = "%s: %s" % (DEBUG_MODULE, hook._describe(exc))
        log.debug("cannot list memcached in ddtrace's startup log", exc_info=True)


def _amend(integrations: dict) -> None:
    entry = startup_log_entry()
    integrations[registry.INTEGRATION] = entry
    if not entry["enabled"]:
        return
    for module in entry["clients"]:
        builtin = registry.BY_MODULE[module].builtin
        if builtin in integrations and isinstance(integrations[builtin], dict):
            integrations[builtin].update(enabled=False, instrumented=False, replaced_by=registry.INTEGRATION)


def startup_log_entry() -> dict:
    """``memcached`` in the shape of ddtrace's own entries, with the clients it covers: each
    one's version, and whether the app has imported it and it is traced."""
    from . import __version__
    from .patch import is_patched
    from .patch import patched_clients

    found = hook.state()
    enabled = bool(found["asked"] or is_patched())
    traced = patched_clients()
    clients = {}
    for module in registry.covered():
        clients[module] = dict(
            version=registry.version(registry.BY_MODULE[module]) or None,
            imported=module in sys.modules,
            traced=module in traced,
        )
    return dict(
        enabled=enabled,
        instrumented=bool(found["set_up"] or is_patched()),
        module_version=__version__,
        module_imported=any(client["imported"] for client in clients.values()),
        config=_config() if enabled else None,
        clients=clients,
    )


def _config() -> Optional[dict]:
    from . import settings

    try:
        settings.register()  # the defaults, which patch() adds only once a client is imported
        config = settings.integration_config()
        service = config.get("service") or config.get("_default_service")
        return dict(service=service, command_enabled=bool(config.get("command_enabled")))
    except Exception:
        return None


def warn_unknown_clients() -> None:
    """One warning per process for names in ``DD_TRACE_MEMCACHED_CLIENTS`` that name no client:
    they cover nothing, and without a word the client would silently stay untraced (or with
    ddtrace's built-in)."""
    selection = registry.select()
    unknown = [name for name in selection.unknown if name not in _warned]
    if not unknown:
        return
    _warned.update(unknown)
    log.warning(
        "%s=%r: %s %s no memcached client, ignored; the memcached integration covers %s. Valid names: %s",
        registry.CLIENTS_ENV,
        selection.value,
        ", ".join(repr(name) for name in unknown),
        "names" if len(unknown) == 1 else "name",
        ", ".join(selection.modules) or "no client",
        registry.described(),
    )
