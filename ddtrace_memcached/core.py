"""The span of one memcached call, for every client: the per-call record and its lifecycle.

A client module says what it knows through a :class:`Library` (which server a call goes
to, how many keys a read found, which failures it swallows, which errors quote keys) and
wraps its methods with one of three wrappers, bound with ``partial(wrapper, library, command)``:

- :func:`trace` (:func:`trace_async` for coroutines): the call is one span, the common case;
- :func:`outer`: the method the app called makes no span itself; the round trips it causes
  below (each traced with :func:`trace`) are its spans, named after it. If none is made
  (a refused key, an answer from the client's own failure state), it makes one itself,
  so that no call the app makes goes unseen.

Each traced call has a :class:`Call` record, the innermost one reachable through
:func:`current` while it runs: what inner hooks learn during the call (the server, a
failure the client swallowed, the rows read) goes into it, and the span gets it when it
finishes. Everything else lives here once: naming, overrides and Pin, opt-in key capture,
error recording, and the guards that keep the integration's own failures from the app.
"""

import contextvars
import logging
from time import time_ns
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional
from typing import Pattern
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

Failure = Tuple[str, str]  # (error.type, error.message) of a failure the client swallowed


class Fanout(int):
    """A server for a call that goes to several servers: how many. The span names no host
    then (one would be wrong) and gets the metric ``memcached.servers``."""


class Call:
    """One traced call the app made, while it runs.

    Made by the wrappers, never by a client module; inner hooks reach the innermost one
    with :func:`current` and tell it what they learn. The span reads it when it finishes.
    """

    __slots__ = ("library", "command", "instance", "outer", "span", "server", "rows", "failure", "spans", "start_ns")

    def __init__(self, library: "Library", command: Command, instance: Any, outer: "Optional[Call]"):
        self.library = library
        self.command = command
        self.instance = instance  # the client object (overrides, routing); cleared at the end
        self.outer = outer  # the call this one runs inside of, if any
        self.span = None  # None: an outer call, whose spans are made below it
        self.server = None  # (host, port), a unix socket path, a Fanout, or None
        self.rows: Optional[int] = None  # db.row_count, when hooks counted it
        self.failure: Optional[Failure] = None
        self.spans = 0  # spans made below an outer call
        self.start_ns = 0  # when an outer call started

    def at(self, server: Any) -> None:
        """The call went to ``server`` (``(host, port)``, a path, or a :class:`Fanout`)."""
        self.server = server

    def failed(self, error_type: str, message: str, latest: bool = False) -> None:
        """The client swallowed a failure (no exception reached the app). The span reports
        the first one (the cause), or with ``latest`` the last (after a client's failover)."""
        if self.failure is None or latest:
            self.failure = (error_type, message)

    def count(self, rows: int = 1) -> None:
        """The call read ``rows`` more keys (``db.row_count``)."""
        self.rows = (self.rows or 0) + rows


class Library:
    """What a client module tells the core about its calls. Override what differs."""

    name = ""
    key_errors: Tuple[type, ...] = ()
    """Exceptions whose message may quote the key they refused (see :attr:`key_quote`)."""
    key_quote: Optional[Pattern] = commands.HEAD_QUOTE
    """Finds the quoted key in such a message (:func:`commands.redact`)."""
    swallows = False  # set for libraries that override failure()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.swallows = cls.failure is not Library.failure

    def __init__(self) -> None:
        self.server_tags: Dict[Any, Tuple[tagging.Attributes, bool]] = {}  # see _server_tags

    def server(self, call: Call, args: tuple, kwargs: dict) -> Any:
        """The server the call goes to, as :meth:`address` understands it; a :class:`Fanout`;
        or None when it is not known before the call (an inner hook may tell it, ``call.at``),
        or when several servers may be involved (then no host is named rather than a wrong one)."""
        return None

    def address(self, server: Any) -> Any:
        """``(host, port)`` or a unix socket path for a server that :meth:`server` (or a hook)
        gave: the client's own form of it, read once per server (``client.addresses[i]``)."""
        return server

    def key_prefix(self, instance: Any) -> Any:
        """What the client puts before every key it sends (for ``memcached.query``)."""
        return b""

    def found(self, call: Call, result: Any) -> Optional[int]:
        """``db.row_count`` of a read, None if unknown; asked when no hook counted rows."""
        return commands.found(call.command, result)

    def failure(self, call: Call, result: Any) -> Optional[Failure]:
        """``(error.type, error.message)`` when ``result`` is a failure the client swallowed."""
        return None

    def query(self, call: Call, args: tuple, kwargs: dict) -> str:
        """``memcached.query`` (only when key capture is on): the command and its keys."""
        return commands.query(call.command, args, kwargs, self.key_prefix(call.instance))

    def unspanned(self, call: Call, args: tuple, kwargs: dict, result: Any) -> List[Tuple[Any, Optional[Failure]]]:
        """For an :func:`outer` call that returned: ``(server, failure)`` of each round trip
        the client answered itself instead of making it (so no span was made for it).

        By default: the call itself, when nothing below it made a span.
        """
        return [(None, None)] if call.spans == 0 else []


# --- the record of the call in progress ------------------------------------------------

_current: contextvars.ContextVar = contextvars.ContextVar("ddtrace_memcached_call", default=None)


def current() -> Optional[Call]:
    """The innermost traced call in progress in this context (thread or task), or None:
    always None while the tracer is disabled."""
    return _current.get()


def within_task(call: Call, server: Any) -> None:
    """In a task that ``call`` started (emcache's per-node requests): the rest of the task's
    work goes to ``server``. Its context is its own, so nothing needs to be undone."""
    marker = Call(call.library, call.command, call.instance, call)
    marker.server = server
    _current.set(marker)


# --- naming -----------------------------------------------------------------------------

_OPERATION = tagging.OPERATION


def configure() -> None:
    """Schematizes the operation name; called by ``patch()``, once the schema is known."""
    global _OPERATION
    _OPERATION = settings.operation_name()


_RENAMED: Dict[Tuple[Command, Command], Command] = {}


def _named(command: Command, app_command: Command) -> Command:
    """A round trip's ``command`` as part of the app's call that caused it: named after
    it, and counting rows if it is a read. Where its keys sit stays the round trip's own."""
    renamed = _RENAMED.get((command, app_command))
    if renamed is None:
        renamed = command._replace(resource=app_command.resource, read=app_command.read)
        _RENAMED[(command, app_command)] = renamed
    return renamed


# --- server tags --------------------------------------------------------------------------

_SERVER_TAGS_MAX = 1024  # per library, for processes that see many short-lived servers


def host_and_port(address: Any) -> Tuple[str, Optional[int]]:
    """(out.host, port or None) for a ``(host, port)`` pair or a unix socket path."""
    if isinstance(address, (tuple, list)) and len(address) == 2:
        return str(address[0]), address[1]
    return str(address), None


def _compute_server_tags(library: Library, server: Any) -> Tuple[tagging.Attributes, bool]:
    attrs = tagging.fixed(*host_and_port(library.address(server))) if server is not None else tagging.fixed(None, None)
    return attrs, tagging.native(attrs)


def _server_tags(library: Library, server: Any) -> Tuple[tagging.Attributes, bool]:
    """The fixed tags of a span to ``server``, computed once per server value (a client
    whose server is reassigned gets the new tags), in a bounded cache per library."""
    cache = library.server_tags
    try:
        return cache[server]
    except KeyError:
        pass
    except TypeError:  # unhashable: pymemcache < 4 keeps a list as it was given
        return _compute_server_tags(library, server)
    if len(cache) >= _SERVER_TAGS_MAX:
        cache.clear()
    tags = cache[server] = _compute_server_tags(library, server)
    return tags


# --- the span lifecycle -------------------------------------------------------------------
#
# Everything here runs on every command: what is not the span itself is kept to a few
# dict lookups. Read.* are enum class attributes, slower to reach than module globals.

_READ_NONE, _READ_ONE, _READ_ONE_WITH_CAS = Read.NONE, Read.ONE, Read.ONE_WITH_CAS
_FAST_SPAN = tagging.FAST_SPAN  # None: the public API only


def _open(library: Library, command: Command, instance: Any, args: tuple, kwargs: dict, outer: Optional[Call]) -> Call:
    """Starts the span of a call: a child of the active span, named after the app's call."""
    if outer is not None:
        if outer.span is None and outer.command is not command:
            command = _named(command, outer.command)
        parent = outer
        while parent is not None and parent.span is None:
            parent.spans += 1
            parent = parent.outer
    call = Call(library, command, instance, outer)
    scope = overrides.for_span(instance)
    # Read on every command, so that changes to config.memcached apply at once. Items,
    # not attributes: IntegrationConfig's __getattr__ raises and catches on every read.
    int_config = settings.integration_config()
    span = call.span = tracer.trace(
        _OPERATION,
        service=scope.service or int_config["service"] or int_config["_default_service"],
        resource=command.resource,
        span_type=tagging.SPAN_TYPE,
    )
    try:
        call.server = library.server(call, args, kwargs)
        if scope.attempt is not None:
            span.set_metric(tagging.RETRY_ATTEMPT, scope.attempt)
        if int_config["command_enabled"]:
            span.set_tag(tagging.QUERY, library.query(call, args, kwargs))
        if scope.tags:
            span.set_tags(scope.tags)
    except Exception:
        log.debug("could not tag the span of memcached %s", command.resource, exc_info=True)
    return call


def _close(call: Call) -> None:
    """Tags what the call learned (its server, rows, a swallowed failure) and finishes the span."""
    span = call.span
    try:
        server = call.server
        if type(server) is Fanout:  # several servers: none is named
            span.set_metric(tagging.SERVERS, int(server))
            server = None
        attrs, native = _server_tags(call.library, server)
        if native and type(span) is _FAST_SPAN:
            span._set_attributes(attrs)  # what set_public sets, in one call: see tagging
        else:
            tagging.set_public(span, attrs)
        if call.rows is not None:
            set_count(span, tagging.ROW_COUNT, call.rows)
        if call.failure is not None:
            mark_failed(span, *call.failure)
    except Exception:
        log.debug("could not tag the span of memcached %s", call.command.resource, exc_info=True)
    call.instance = None
    try:
        span.finish()
    except Exception:
        log.debug("could not finish the span of memcached %s", call.command.resource, exc_info=True)


def _returned(call: Call, result: Any) -> None:
    """Reads what the result says: the keys a read found, a failure the client swallowed."""
    try:
        library = call.library
        if call.command.read is not _READ_NONE and call.rows is None:
            call.rows = library.found(call, result)
        if library.swallows and call.failure is None:
            call.failure = library.failure(call, result)
    except Exception:
        log.debug("could not read the result of memcached %s", call.command.resource, exc_info=True)


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
    span.set_tag(tagging.ERROR_TYPE, error_type)
    span.set_tag(tagging.ERROR_MESSAGE, message)


def _raised(call: Call, exc: BaseException) -> None:
    """The error tags ``with span`` would set, without the keys a client's message quotes.
    The exception is what the app sees: it stands for any failure a hook noted before it."""
    call.failure = None
    try:
        span = call.span
        span.set_exc_info(type(exc), exc, exc.__traceback__)
        library = call.library
        if library.key_errors and isinstance(exc, library.key_errors):
            message = str(exc)
            tag = commands.redact(message, library.key_quote, settings.integration_config()["command_enabled"])
            if tag != message:
                span.set_tag(tagging.ERROR_MESSAGE, tag)
                span.set_tag(tagging.ERROR_STACK, (span.get_tag(tagging.ERROR_STACK) or "").replace(message, tag))
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


def _restored(call: Call, result: Any, default: Any) -> Any:
    """Undoes the sentinel of :func:`_sent`: the app's result, with the rows counted."""
    try:
        result, call.rows = commands.restore_default(call.command, result, default)
    except Exception:
        log.debug("could not count the keys found by memcached %s", call.command.resource, exc_info=True)
        return commands.without_sentinel(result, default)  # the sentinel must never reach the app
    return result


def _is_part_of(outer: Optional[Call], library: Library, instance: Any) -> bool:
    """A command that a traced command of the same client object calls is part of its span
    (pylibmc's ``delete_multi`` calls ``delete`` per key)."""
    return outer is not None and outer.instance is instance and outer.library is library


@wrapping.ours
def trace(library: Library, command: Command, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
    """The wrapt wrapper of every synchronous command; bind the first two with ``partial``."""
    if not tracer.enabled:
        return wrapped(*args, **kwargs)
    outer = _current.get()
    if _is_part_of(outer, library, instance):
        return wrapped(*args, **kwargs)
    try:
        call = _open(library, command, instance, args, kwargs, outer)
    except Exception:
        log.debug("could not start the span of memcached %s", command.resource, exc_info=True)
        return wrapped(*args, **kwargs)
    token = _current.set(call)
    try:
        read = command.read
        if read is _READ_ONE or read is _READ_ONE_WITH_CAS:
            sent = _sent(command, args, kwargs)
            if sent is not None:
                return _restored(call, wrapped(*sent[0], **sent[1]), sent[2])
        result = wrapped(*args, **kwargs)
        if read is not _READ_NONE or library.swallows:
            _returned(call, result)
        return result
    except BaseException as exc:
        _raised(call, exc)
        # A stored exception keeps this frame alive through its traceback: not the app's arguments.
        args = kwargs = sent = None  # noqa: F841
        raise  # the same object, unchanged
    finally:
        _current.reset(token)
        _close(call)


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
    outer = _current.get()
    if _is_part_of(outer, library, instance):
        return await wrapped(*args, **kwargs)
    try:
        call = _open(library, command, instance, args, kwargs, outer)
    except Exception:
        log.debug("could not start the span of memcached %s", command.resource, exc_info=True)
        return await wrapped(*args, **kwargs)
    token = _current.set(call)
    try:
        read = command.read
        if read is _READ_ONE or read is _READ_ONE_WITH_CAS:
            sent = _sent(command, args, kwargs)
            if sent is not None:
                return _restored(call, await wrapped(*sent[0], **sent[1]), sent[2])
        result = await wrapped(*args, **kwargs)
        if read is not _READ_NONE or library.swallows:
            _returned(call, result)
        return result
    except BaseException as exc:
        if _is_cancellation(exc):
            _tag_cancelled(call.span)
        else:
            _raised(call, exc)
        args = kwargs = sent = None  # noqa: F841 (see trace)
        raise
    finally:
        _current.reset(token)
        _close(call)


def _is_cancellation(exc: BaseException) -> bool:
    import asyncio  # only once a coroutine failed: sync-only apps never import it for us

    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return True
    # ddtrace-run's module cleanup can leave two copies of asyncio.exceptions, and the C
    # tasks raise the first copy's CancelledError: known by its name then.
    return any(cls.__name__ == "CancelledError" and cls.__module__ == "asyncio.exceptions" for cls in type(exc).__mro__)


def _tag_cancelled(span) -> None:
    try:
        span.set_tag(tagging.CANCELLED, "true")
    except Exception:
        log.debug("could not tag a cancelled memcached span", exc_info=True)


# --- outer calls ----------------------------------------------------------------------------


@wrapping.ours
def outer(library: Library, command: Command, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
    """The wrapt wrapper of a method whose round trips are spans made below it (pymemcache's
    ``HashClient``, bmemcached's clients, meta-memcache's methods).

    The round trips' spans are named after it and get its overrides and Pin; the
    outermost call names them (``get_typed`` calls ``get``: the app called ``get_typed``).
    If the client answers without a round trip, or refuses the call before one, the call
    gets a span of its own, covering it (:meth:`Library.unspanned`).
    """
    if not tracer.enabled:
        return wrapped(*args, **kwargs)
    current = _current.get()
    if current is not None and current.instance is instance:
        return wrapped(*args, **kwargs)  # a method that the app's method calls
    try:
        call = Call(
            library, command if current is None or current.span is not None else current.command, instance, current
        )
        call.start_ns = time_ns()
        scope = overrides.enter(instance)
    except Exception:
        log.debug("could not trace memcached %s", command.resource, exc_info=True)
        return wrapped(*args, **kwargs)
    token = _current.set(call)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _current.reset(token)
        if call.spans == 0:
            _span_after(call, args, kwargs, None, None, exc)
        args = kwargs = None  # noqa: F841 (see trace)
        raise
    else:
        _current.reset(token)
        try:
            for server, failure in library.unspanned(call, args, kwargs, result):
                _span_after(call, args, kwargs, server, failure, None)
        except Exception:
            log.debug("could not trace what memcached %s answered itself", call.command.resource, exc_info=True)
        return result
    finally:
        overrides.leave(scope)
        call.instance = None


def _span_after(call: Call, args, kwargs, server: Any, failure: Optional[Failure], exc: Optional[BaseException]):
    """The span of an outer call that made none below it: from its start until now."""
    try:
        made = _open(call.library, call.command, call.instance, args, kwargs, call.outer)
        made.span.start_ns = call.start_ns
        made.server = server
        made.failure = failure
        if exc is not None:
            _raised(made, exc)
        _close(made)
    except Exception:
        log.debug("could not trace memcached %s", call.command.resource, exc_info=True)
