"""Traces ``pymemcache``: one span per command that a ``Client`` sends to a server.

Every command method of ``pymemcache.client.base.Client`` is wrapped at class level
with :func:`wrapt.wrap_function_wrapper`, so subclasses, ``pymemcache.Client`` and
clients created before :func:`patch` are traced, and ``isinstance`` keeps working.
``PooledClient``, ``HashClient`` and ``RetryingClient`` create no spans: they call
``Client`` methods, and only pass their overrides (and retry attempts) down.
"""

from functools import partial
import logging
from typing import Any
from typing import Dict
from typing import Optional
from typing import Tuple

from ddtrace.trace import tracer
import pymemcache
from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheIllegalInputError
import wrapt

from . import builtin
from . import commands
from . import overrides
from . import settings
from .commands import Command
from .commands import Read

log = logging.getLogger("ddtrace.contrib.memcached")


def get_version() -> str:
    return getattr(pymemcache, "__version__", "")


def _supported_versions() -> Dict[str, str]:
    return {"pymemcache": ">=3.4"}


def _parse_version(version: str) -> tuple:
    parts = []
    for part in version.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


# Not imported by name: ddtrace's built-in integration may have put proxies there.
Client, HashClient = builtin.original_classes()
PYMEMCACHE_VERSION = _parse_version(get_version())
HAS_RETRYING_CLIENT = PYMEMCACHE_VERSION >= (3, 5)
COMMANDS = commands.commands_for(PYMEMCACHE_VERSION)

if HAS_RETRYING_CLIENT:
    from pymemcache.client.retrying import RetryingClient

_OPERATION = "memcached.command"  # schematized again by patch(), once the schema is known


# --- span lifecycle --------------------------------------------------------------
#
# Everything here runs on every command: what is not the span itself is kept to a few
# dict lookups. Read.* are enum class attributes, slower to reach than module globals.

_READ_ONE, _READ_ONE_WITH_CAS, _READ_MANY = Read.ONE, Read.ONE_WITH_CAS, Read.MANY
_HOST_TAGS: Dict[Any, Tuple[str, Optional[int]]] = {}  # server -> (out.host, port or None)


def _server_tags(server) -> tuple:
    """(out.host, port or None) for a ``(host, port)`` pair or a unix socket path."""
    if isinstance(server, (tuple, list)) and len(server) == 2:
        return str(server[0]), server[1]
    return str(server), None


def _host_tags(server) -> tuple:
    """:func:`_server_tags`, computed once per server: keyed by the value, so a client
    whose ``server`` is reassigned gets the new tags."""
    try:
        tags = _HOST_TAGS.get(server)
    except TypeError:  # unhashable: pymemcache < 4 keeps a list as it was given
        return _server_tags(server)
    if tags is None:
        if len(_HOST_TAGS) >= 1024:  # bounded, for processes that see many short-lived servers
            _HOST_TAGS.clear()
        tags = _HOST_TAGS[server] = _server_tags(server)
    return tags


def _start_span(command: Command, client, args, kwargs):
    scope = overrides.for_span(client)
    # Read on every command, so that changes to config.memcached apply at once. Items,
    # not attributes: IntegrationConfig's __getattr__ raises and catches on every read.
    int_config = settings.integration_config()
    span = tracer.trace(
        _OPERATION,
        service=scope.service or int_config["service"] or int_config["_default_service"],
        resource=command.resource,
        span_type="cache",
    )
    try:
        host, port = _host_tags(client.server)
        span.set_tag("component", settings.INTEGRATION)
        span.set_tag("span.kind", "client")
        span.set_tag("db.system", "memcached")
        span.set_tag("out.host", host)
        span.set_tag("server.address", host)
        if port is not None:
            span.set_metric("network.destination.port", port)
        span.set_metric("_dd.measured", 1)
        if scope.attempt is not None:
            span.set_metric("memcached.retry.attempt", scope.attempt)
        if int_config["command_enabled"]:
            span.set_tag("memcached.query", commands.query(command, args, kwargs, getattr(client, "key_prefix", b"")))
        if scope.tags:
            span.set_tags(scope.tags)
    except Exception:
        log.debug("could not tag the span of memcached %s", command.resource, exc_info=True)
    return span


def _trace_command(command: Command, wrapped, instance, args, kwargs):
    """The one wrapper of every ``Client`` command; ``command`` is bound with partial."""
    if not tracer.enabled:
        return wrapped(*args, **kwargs)
    try:
        span = _start_span(command, instance, args, kwargs)
    except Exception:
        log.debug("could not start the span of memcached %s", command.resource, exc_info=True)
        return wrapped(*args, **kwargs)

    try:
        read = command.read
        if read is _READ_ONE or read is _READ_ONE_WITH_CAS:
            return _read_one(command, span, wrapped, args, kwargs)
        result = wrapped(*args, **kwargs)
        if read is _READ_MANY:
            try:
                span.set_metric("db.row_count", commands.found(result))
            except Exception:
                log.debug("could not count the keys found by memcached %s", command.resource, exc_info=True)
        return result
    except BaseException as exc:
        _record_error(span, exc)
        raise  # the same object, unchanged
    finally:
        try:
            span.finish()
        except Exception:
            log.debug("could not finish the span of memcached %s", command.resource, exc_info=True)


def _record_error(span, exc: BaseException) -> None:
    """The error tags ``with span`` would set, without the keys pymemcache quotes."""
    try:
        span.set_exc_info(type(exc), exc, exc.__traceback__)
        if isinstance(exc, MemcacheIllegalInputError):
            message = str(exc)
            tag = commands.input_error_message(message, settings.integration_config()["command_enabled"])
            if tag != message:
                span.set_tag("error.message", tag)
                span.set_tag("error.stack", (span.get_tag("error.stack") or "").replace(message, tag))
    except Exception:
        log.debug("could not record the error on a memcached span", exc_info=True)


def _read_one(command: Command, span, wrapped, args, kwargs):
    """``get``/``gets`` with a sentinel default, so that a miss is told from a hit."""
    try:
        sent_args, sent_kwargs, default = commands.with_miss_sentinel(args, kwargs)
    except Exception:
        log.debug("could not prepare memcached %s", command.resource, exc_info=True)
        return wrapped(*args, **kwargs)
    result = wrapped(*sent_args, **sent_kwargs)
    try:
        result, rows = commands.restore_default(command, result, default)
        span.set_metric("db.row_count", rows)
    except Exception:
        log.debug("could not count the keys found by memcached %s", command.resource, exc_info=True)
        # The sentinel must never reach the app.
        if result is commands.MISS:
            return default
        if isinstance(result, tuple) and result and result[0] is commands.MISS:
            return (default,) + result[1:]
    return result


# --- patching --------------------------------------------------------------------


def _is_ours(attribute) -> bool:
    wrapper = attribute._self_wrapper
    return wrapper in (overrides.within, overrides.within_retry) or getattr(wrapper, "func", None) is _trace_command


def _wrap(cls, method: str, wrapper) -> None:
    """Wraps ``cls.method`` unless our wrapper is already anywhere in its chain."""
    attribute = vars(cls).get(method)
    if attribute is None:
        return
    while isinstance(attribute, wrapt.FunctionWrapper):
        if _is_ours(attribute):
            return
        attribute = attribute.__wrapped__
    wrapt.wrap_function_wrapper(cls, method, wrapper)


def _unwrap(cls, method: str) -> None:
    """Removes our wrapper, also from under a wrapper someone put on top of it."""
    outer, attribute = None, vars(cls).get(method)
    while isinstance(attribute, wrapt.FunctionWrapper):
        if _is_ours(attribute):
            if outer is None:
                setattr(cls, method, attribute.__wrapped__)
            else:
                outer.__wrapped__ = attribute.__wrapped__
            return
        outer, attribute = attribute, attribute.__wrapped__


def _targets():
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    for command in COMMANDS:
        yield Client, command.method, partial(_trace_command, command)
        yield PooledClient, command.method, overrides.within
        yield HashClient, command.method, overrides.within
    if HAS_RETRYING_CLIENT:
        yield RetryingClient, "_retry", overrides.within_retry


def patch() -> None:
    """Traces pymemcache. Idempotent; takes precedence over ddtrace's ``pymemcache``."""
    global _OPERATION
    settings.register()
    _OPERATION = settings.operation_name()
    builtin.silence()
    for cls, method, wrapper in _targets():
        _wrap(cls, method, wrapper)
    if HAS_RETRYING_CLIENT:
        # Its __getattr__ answers ddtrace's Pin hooks with functions of the inner client.
        for name, accessor in overrides.PIN_ACCESSORS.items():
            if name not in vars(RetryingClient):
                setattr(RetryingClient, name, accessor)


def unpatch() -> None:
    """Restores every method :func:`patch` wrapped. Idempotent."""
    for cls, method, _ in _targets():
        _unwrap(cls, method)
    if HAS_RETRYING_CLIENT:
        for name, accessor in overrides.PIN_ACCESSORS.items():
            if vars(RetryingClient).get(name) is accessor:
                delattr(RetryingClient, name)
    builtin.restore()
