"""The span of one memcached command, for every client: start, tags, errors, finish.

A client module says what it knows through a :class:`Library` (which server a call goes
to, how many keys a read found, which of its errors quote keys, which failures it
swallows) and wraps its methods with ``partial(trace, library, command)`` (or
:func:`trace_async` for coroutines). Everything else lives here once: naming and schema,
overrides and Pin, opt-in key capture, error recording, and the guard that keeps the
integration's own failures away from the app.
"""

import logging
from typing import Any
from typing import Callable
from typing import Dict
from typing import Optional
from typing import Tuple

from ddtrace.trace import tracer

from . import commands
from . import overrides
from . import settings
from . import tagging
from . import wrapping
from .commands import Command
from .commands import Read

log = logging.getLogger("ddtrace.contrib.memcached")

ServerTags = Tuple[str, Optional[int]]  # (out.host, network.destination.port or None)


class Library:
    """What a client module tells the core about a command. Override what differs."""

    name = ""
    swallows = False  # set for libraries that override failure()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.swallows = cls.failure is not Library.failure

    def server(self, instance: Any, command: Command, args: tuple, kwargs: dict) -> Any:
        """The server the call goes to: ``(host, port)``, a unix socket path, or None
        when the call may touch several servers (then no host is named rather than a wrong one)."""
        return None

    def key_prefix(self, instance: Any) -> bytes:
        """What the client puts before every key it sends (for ``memcached.query``)."""
        return b""

    def found(self, command: Command, result: Any) -> Optional[int]:
        """``db.row_count`` of a read (``Read.MANY`` or ``Read.VALUE``), None if unknown."""
        return commands.found(command, result)

    def failure(self, instance: Any, command: Command, result: Any) -> Optional[Tuple[str, str]]:
        """``(error.type, error.message)`` when ``result`` is a failure the client swallowed."""
        return None

    def query(self, instance: Any, command: Command, args: tuple, kwargs: dict) -> str:
        """``memcached.query`` (only when key capture is on): the command and its keys."""
        return commands.query(command, args, kwargs, self.key_prefix(instance))

    def quotes_key(self, exc: BaseException) -> bool:
        """Whether the message of ``exc`` quotes the key it refused (see :func:`_record_error`)."""
        return False

    def redacted(self, message: str, keys_enabled: bool) -> str:
        """``error.message`` for a message that :meth:`quotes_key`; pymemcache's ``Head: key`` form
        by default. Override for messages that quote keys elsewhere."""
        return commands.input_error_message(message, keys_enabled)


class Fanout(int):
    """What :meth:`Library.server` returns for a call that goes to several servers: how many.

    The span names no host then (one would be wrong) and gets the metric ``memcached.servers``.
    """


# --- naming -----------------------------------------------------------------------

_OPERATION = "memcached.command"


def configure() -> None:
    """Schematizes the operation name; called by ``patch()``, once the schema is known."""
    global _OPERATION
    _OPERATION = settings.operation_name()


# --- server tags ------------------------------------------------------------------

# server -> (out.host, port or None, the span's fixed tags: tagging.fixed()), bounded
# by _HOST_TAGS_MAX.
_HOST_TAGS: Dict[Any, Tuple[str, Optional[int], Optional[tagging.Attributes]]] = {}
_HOST_TAGS_MAX = 1024  # for processes that see many short-lived servers
_NO_SERVER = (None, None, tagging.fixed(None, None))


def server_tags(server: Any) -> ServerTags:
    """(out.host, port or None) for a ``(host, port)`` pair or a unix socket path."""
    if isinstance(server, (tuple, list)) and len(server) == 2:
        return str(server[0]), server[1]
    return str(server), None


def _host_tags(server: Any) -> Tuple[str, Optional[int], Optional[tagging.Attributes]]:
    """:func:`server_tags` and the span's fixed tags, computed once per server: keyed by
    the value, so a client whose server is reassigned gets the new tags."""
    try:
        tags = _HOST_TAGS.get(server)
    except TypeError:  # unhashable: pymemcache < 4 keeps a list as it was given
        host, port = server_tags(server)
        return host, port, tagging.fixed(host, port)
    if tags is None:
        if len(_HOST_TAGS) >= _HOST_TAGS_MAX:
            _HOST_TAGS.clear()
        host, port = server_tags(server)
        tags = _HOST_TAGS[server] = (host, port, tagging.fixed(host, port))
    return tags


# --- span lifecycle ----------------------------------------------------------------
#
# Everything here runs on every command: what is not the span itself is kept to a few
# dict lookups. Read.* are enum class attributes, slower to reach than module globals.

_READ_NONE, _READ_ONE, _READ_ONE_WITH_CAS = Read.NONE, Read.ONE, Read.ONE_WITH_CAS
_FAST_SPAN = tagging.FAST_SPAN  # None: the public API only


def _start_span(library: Library, command: Command, instance: Any, args: tuple, kwargs: dict):
    scope = overrides.for_span(instance)
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
        server = library.server(instance, command, args, kwargs)
        if type(server) is Fanout:  # several servers: none is named
            span.set_metric("memcached.servers", int(server))
            server = None
        if server is None:
            host, port, fixed = _NO_SERVER
        else:
            try:
                host, port, fixed = _HOST_TAGS[server]  # inlined _host_tags, for a known server
            except (KeyError, TypeError):
                host, port, fixed = _host_tags(server)
        if type(span) is _FAST_SPAN and fixed is not None:
            span._set_attributes(fixed)  # what the else branch sets, in one call: see tagging
        else:
            span.set_tag("component", settings.INTEGRATION)
            span.set_tag("span.kind", "client")
            span.set_tag("db.system", "memcached")
            if host is not None:
                tag_server(span, server)
            span.set_metric("_dd.measured", 1)
        if scope.attempt is not None:
            span.set_metric("memcached.retry.attempt", scope.attempt)
        if int_config["command_enabled"]:
            span.set_tag("memcached.query", library.query(instance, command, args, kwargs))
        if scope.tags:
            span.set_tags(scope.tags)
    except Exception:
        log.debug("could not tag the span of memcached %s", command.resource, exc_info=True)
    return span


def tag_server(span, server: Any) -> None:
    """Names ``server`` on ``span``, for a client that learns it only once the call runs."""
    host, port = server_tags(server)
    span.set_tag("out.host", host)
    span.set_tag("server.address", host)
    if port is not None:
        span.set_metric("network.destination.port", port)


def _finish(span, command: Command) -> None:
    try:
        span.finish()
    except Exception:
        log.debug("could not finish the span of memcached %s", command.resource, exc_info=True)


def _on_result(library: Library, command: Command, span, instance: Any, result: Any) -> None:
    """Tags what the result says: the keys a read found, a failure the client swallowed."""
    try:
        if command.read is not _READ_NONE:
            rows = library.found(command, result)
            if rows is not None:
                set_count(span, "db.row_count", rows)
        failure = library.failure(instance, command, result)
        if failure is not None:
            mark_failed(span, *failure)
    except Exception:
        log.debug("could not read the result of memcached %s", command.resource, exc_info=True)


def set_count(span, key: str, count: int) -> None:
    """``span.set_metric(key, count)`` for an ``int``: on the native span, the one call
    that ``set_metric`` itself makes for an ``int`` under any key but ``_dd.measured``."""
    if type(span) is _FAST_SPAN and type(count) is int:
        span._set_attribute(key, count)
    else:
        span.set_metric(key, count)


def mark_failed(span, error_type: str, message: str) -> None:
    """Marks ``span`` as an error for a failure that the client swallowed (no exception)."""
    span.error = 1
    span.set_tag("error.type", error_type)
    span.set_tag("error.message", message)


def _record_error(library: Library, span, exc: BaseException) -> None:
    """The error tags ``with span`` would set, without the keys a client's message quotes."""
    try:
        span.set_exc_info(type(exc), exc, exc.__traceback__)
        if library.quotes_key(exc):
            message = str(exc)
            tag = library.redacted(message, settings.integration_config()["command_enabled"])
            if tag != message:
                span.set_tag("error.message", tag)
                span.set_tag("error.stack", (span.get_tag("error.stack") or "").replace(message, tag))
    except Exception:
        log.debug("could not record the error on a memcached span", exc_info=True)


def _sent(command: Command, args: tuple, kwargs: dict):
    """The arguments to send for a ``Read.ONE*`` command, and the caller's ``get``
    default (a sentinel default tells a miss from a stored value). None when the call
    is sent as it is."""
    try:
        return commands.with_miss_sentinel(args, kwargs)
    except Exception:
        log.debug("could not prepare memcached %s", command.resource, exc_info=True)
        return None


def _restored(command: Command, span, result: Any, default: Any) -> Any:
    """Undoes the sentinel of :func:`_sent`: the app's result, with ``db.row_count`` set."""
    try:
        result, rows = commands.restore_default(command, result, default)
        if type(span) is _FAST_SPAN:
            span._set_attribute("db.row_count", rows)  # inlined set_count
        else:
            span.set_metric("db.row_count", rows)
    except Exception:
        log.debug("could not count the keys found by memcached %s", command.resource, exc_info=True)
        # The sentinel must never reach the app.
        if result is commands.MISS:
            return default
        if isinstance(result, tuple) and result and result[0] is commands.MISS:
            return (default,) + result[1:]
    return result


@wrapping.ours
def trace(library: Library, command: Command, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
    """The wrapt wrapper of every synchronous command; bind the first two with ``partial``."""
    if not tracer.enabled:
        return wrapped(*args, **kwargs)
    try:
        span = _start_span(library, command, instance, args, kwargs)
    except Exception:
        log.debug("could not start the span of memcached %s", command.resource, exc_info=True)
        return wrapped(*args, **kwargs)
    try:
        read = command.read
        if read is _READ_ONE or read is _READ_ONE_WITH_CAS:
            sent = _sent(command, args, kwargs)
            if sent is not None:
                return _restored(command, span, wrapped(*sent[0], **sent[1]), sent[2])
        result = wrapped(*args, **kwargs)
        if read is not _READ_NONE or library.swallows:
            _on_result(library, command, span, instance, result)
        return result
    except BaseException as exc:
        _record_error(library, span, exc)
        raise  # the same object, unchanged
    finally:
        try:  # inlined _finish
            span.finish()
        except Exception:
            log.debug("could not finish the span of memcached %s", command.resource, exc_info=True)


@wrapping.ours
def trace_async(library: Library, command: Command, wrapped: Callable, instance: Any, args: tuple, kwargs: dict):
    """The wrapt wrapper of every coroutine command: the span covers the awaited work.

    It starts when the coroutine starts (not when it is created), as a child of the
    awaiting task's active span, and finishes when the coroutine returns, raises or is
    cancelled. A cancellation (``asyncio.CancelledError``, e.g. from ``wait_for``, or the
    ``GeneratorExit`` of a coroutine closed unfinished) is not an error: the span is
    finished and tagged ``memcached.cancelled``, as the work stopped because the caller
    stopped waiting, not because memcached failed. That is how ddtrace's Django
    integration treats ASGI cancellation; its aiohttp, asyncpg, aiopg and redis clients
    would mark it an error, which makes every caller timeout (aiocache's ``timeout=5``, a
    client disconnect) look like a cache failure. The timeout itself stays an error on
    the span that sees the ``TimeoutError`` (the caller's, or emcache's own command span).
    """
    return _traced_coroutine(library, command, wrapped, instance, args, kwargs)


async def _traced_coroutine(library, command, wrapped, instance, args, kwargs):
    if not tracer.enabled:
        return await wrapped(*args, **kwargs)
    try:
        span = _start_span(library, command, instance, args, kwargs)
    except Exception:
        log.debug("could not start the span of memcached %s", command.resource, exc_info=True)
        return await wrapped(*args, **kwargs)
    try:
        read = command.read
        if read is _READ_ONE or read is _READ_ONE_WITH_CAS:
            sent = _sent(command, args, kwargs)
            if sent is not None:
                return _restored(command, span, await wrapped(*sent[0], **sent[1]), sent[2])
        result = await wrapped(*args, **kwargs)
        if read is not _READ_NONE or library.swallows:
            _on_result(library, command, span, instance, result)
        return result
    except BaseException as exc:
        if _is_cancellation(exc):
            _tag_cancelled(span)
        else:
            _record_error(library, span, exc)
        raise
    finally:
        _finish(span, command)


def _is_cancellation(exc: BaseException) -> bool:
    import asyncio  # only once a coroutine failed: sync-only apps never import it for us

    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return True
    # ddtrace-run's module cleanup can leave two copies of asyncio.exceptions, and the C
    # tasks raise the first copy's CancelledError: known by its name then.
    return any(cls.__name__ == "CancelledError" and cls.__module__ == "asyncio.exceptions" for cls in type(exc).__mro__)


def _tag_cancelled(span) -> None:
    try:
        span.set_tag("memcached.cancelled", "true")
    except Exception:
        log.debug("could not tag a cancelled memcached span", exc_info=True)
