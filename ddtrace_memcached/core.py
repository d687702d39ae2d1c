"""The span of one memcached call, for every client: the per-call record and its lifecycle.

A client module says what it knows through a :class:`Library` (which server a call goes
to, how many keys a read found, which failures it swallows, which errors quote keys) and
wraps its methods with one of three wrappers, bound with ``partial(wrapper, library, command)``
(or installed as plain functions with :func:`as_function`; libmc's call :func:`trace` themselves):

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
from functools import partial
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

    __slots__ = ("library", "command", "instance", "outer", "span", "server", "rows", "failure", "noreply")

    def __init__(self, library: "Library", command: Command, instance: Any, outer: "Optional[Call]", span: Any):
        self.library = library
        self.command = command
        self.instance = instance  # the client object (overrides, routing)
        self.outer = outer  # the call this one runs inside of, if any
        self.span = span  # None: an outer call, whose spans are made below it
        self.server = None  # the library's form of a server (Library.address), a Fanout, or None
        self.rows: Optional[int] = None  # db.row_count, when hooks counted it
        self.failure: Optional[Failure] = None
        self.noreply = False  # sent without waiting for the reply: the span is the write alone

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


class OuterCall(Call):
    """An :func:`outer` call: it has no span of its own, but counts those made below it
    (``spans``), notes the servers of those made right below it (``servers``, a list for a
    library that looks at them, else None) and when it started (``start_ns``)."""

    __slots__ = ("spans", "servers", "start_ns")

    def __init__(self, library: "Library", command: Command, instance: Any, outer: Optional[Call], servers):
        # Not Call.__init__: CPython (3.11+) specializes each attribute store of an __init__
        # for one class, and the stores of one shared by both classes would miss on every
        # other call, outer call and round trip in turn (2-3k instructions per command).
        self.library = library
        self.command = command
        self.instance = instance
        self.outer = outer
        self.span = None
        self.server = None
        self.rows = None
        self.failure = None
        self.noreply = False
        self.spans = 0
        self.servers = servers
        self.start_ns = time_ns()


class Library:
    """What a client module tells the core about its calls. Override what differs."""

    key_errors: Tuple[type, ...] = ()
    """Exceptions whose message may quote the key they refused (see :attr:`key_quote`)."""
    key_quote: Optional[Pattern] = commands.HEAD_QUOTE
    """Finds the quoted key in such a message (:func:`commands.redact`)."""
    swallows = False  # set for libraries that override failure()
    renames = True
    """For a library of :func:`outer` calls: its round trips' spans are named after the app's
    call (False: they keep their own names, which are the app's commands already)."""
    inner = True
    """Whether hooks inside the client read :func:`current` during its calls. False saves
    every call the context variable's set and reset (about 1.5k instructions), but for the
    commands that call other commands (``Command.nests``)."""

    inspects_unspanned = False  # set for libraries that override unspanned()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.swallows = cls.failure is not Library.failure
        cls.inspects_unspanned = cls.unspanned is not Library.unspanned

    def __init__(self) -> None:
        self.server_tags: Dict[Any, "ServerTags"] = {}  # see _server_tags

    def server(self, call: Call, args: tuple, kwargs: dict) -> Any:
        """The server the call goes to, as :meth:`address` understands it; a :class:`Fanout`;
        or None when it is not known before the call (an inner hook may tell it, ``call.at``),
        or when several servers may be involved (then no host is named rather than a wrong one)."""
        return None

    def address(self, server: Any) -> Any:
        """``(host, port)`` or a unix socket path for a server that :meth:`server` (or a hook)
        gave in the client's own form (``client.addresses[i]``), or None when it names no
        host that would be right. Asked once per server: the core caches the tags."""
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

    def noreply(self, call: Call, args: tuple, kwargs: dict) -> bool:
        """Whether the call is sent without waiting for the server's reply (``memcached.noreply``);
        asked when the command has a ``noreply`` argument (``Command.noreply``)."""
        return bool(commands.argument(args, kwargs, call.command.noreply))

    def reply(self, call: Call, result: Any) -> Optional[str]:
        """The miss that a command's ``result`` means (``NOT_FOUND``, ``NOT_STORED``, ``EXISTS``),
        or None: from the command table's ``misses`` by default."""
        return commands.reply(call.command, result)

    def raised_reply(self, call: Call, exc: BaseException) -> Optional[str]:
        """The miss that an exception the client raised means, if it means one (emcache's
        ``NotFoundCommandError``): then the span is no error; the app gets the exception."""
        return None

    def command_of(self, args: tuple, kwargs: dict) -> Command:
        """For a method that sends every command (meta-memcache's executor), wrapped with no
        command of its own: the command this call sends, from its arguments."""
        raise NotImplementedError

    def query(self, call: Call, args: tuple, kwargs: dict) -> str:
        """``memcached.query`` (only when key capture is on): the command and its keys."""
        return commands.query(call.command, args, kwargs, self.key_prefix(call.instance))

    def unspanned(self, call: Call, args: tuple, kwargs: dict, result: Any) -> List[Tuple[Any, Optional[Failure]]]:
        """For an :func:`outer` call that returned: ``(server, failure)`` of each round trip
        the client answered itself instead of making it (so no span was made for it).

        By default: the call itself, when nothing below it made a span; asked only then,
        unless a library overrides it.
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
    marker = Call(call.library, call.command, call.instance, call, None)
    marker.server = server
    _current.set(marker)


# --- naming -----------------------------------------------------------------------------

_OPERATION = tagging.OPERATION
_CONFIGS = settings.configs()  # config.memcached is _CONFIGS[_INTEGRATION], looked up per span
_INTEGRATION = tagging.INTEGRATION


def configure() -> None:
    """Schematizes the operation name; called by ``patch()``, once the schema is known."""
    global _OPERATION
    _OPERATION = settings.operation_name()


_RENAMED: Dict[Tuple[int, int], Command] = {}


def _named(command: Command, app_command: Command) -> Command:
    """:func:`commands.as_part_of`, once per pair of commands. Keyed by identity: commands are
    the client modules' table rows, alive for the process, and a row's hash is a deep one."""
    key = (id(command), id(app_command))
    renamed = _RENAMED.get(key)
    if renamed is None:
        renamed = _RENAMED[key] = commands.as_part_of(command, app_command)
    return renamed


# --- server tags --------------------------------------------------------------------------

_SERVER_TAGS_MAX = 1024  # per library, for processes that see many short-lived servers


def host_and_port(address: Any) -> Tuple[str, Optional[int]]:
    """(out.host, port or None) for a ``(host, port)`` pair or a unix socket path."""
    if isinstance(address, (tuple, list)) and len(address) == 2:
        return str(address[0]), address[1]
    return str(address), None


ServerTags = Tuple[tagging.Attributes, tagging.Attributes, bool]


def _server_tags(library: Library, server: Any) -> ServerTags:
    """The fixed tags of a span to ``server``, the same for a noreply command, and whether
    they may go native, kept in a bounded cache per library (which :func:`_close` reads), keyed by
    the server's value (a client whose server is reassigned gets the new tags)."""
    address = None if server is None else library.address(server)
    attrs = tagging.fixed(None, None) if address is None else tagging.fixed(*host_and_port(address))
    tags = attrs, {**attrs, tagging.NOREPLY: "true"}, tagging.native(attrs)
    try:
        cache = library.server_tags
        if len(cache) >= _SERVER_TAGS_MAX:
            cache.clear()
        cache[server] = tags
    except TypeError:  # unhashable: pymemcache < 4 keeps a list as it was given
        pass
    return tags


# --- the span lifecycle -------------------------------------------------------------------
#
# Everything here runs on every command: what is not the span itself is kept to a few
# dict lookups. Read.* are enum class attributes, slower to reach than module globals.

_READ_NONE, _READ_ONE, _READ_ONE_WITH_CAS = Read.NONE, Read.ONE, Read.ONE_WITH_CAS
_FAST_SPAN = tagging.FAST_SPAN  # None: the public API only


def _open(
    library: Library, command: Command, instance: Any, args: tuple, kwargs: dict, outer: Optional[Call]
) -> Optional[Call]:
    """Starts the span of a call: a child of the active span, named after the app's call.

    None for a command that a traced command of the same client object calls: it is part
    of that command's span (pylibmc's ``delete_multi`` calls ``delete`` per key).
    """
    if command is None:
        command = library.command_of(args, kwargs)
    if outer is not None:
        if outer.instance is instance and outer.library is library:
            return None
        if outer.span is None:
            if outer.command is not command and outer.library.renames:
                command = _named(command, outer.command)
            parent = outer
            while parent is not None and parent.span is None:
                if type(parent) is OuterCall:
                    parent.spans += 1
                parent = parent.outer
    scope = overrides.for_span(instance)
    # Read on every command, so that changes to config.memcached apply at once. Items,
    # not attributes: IntegrationConfig's __getattr__ raises and catches on every read.
    int_config = _CONFIGS[_INTEGRATION]
    span = tracer.trace(
        _OPERATION,
        service=scope.service or int_config["service"] or int_config["_default_service"],
        resource=command.resource,
        span_type=tagging.SPAN_TYPE,
    )
    call = Call(library, command, instance, outer, span)
    try:
        call.server = library.server(call, args, kwargs)
        if type(outer) is OuterCall and outer.servers is not None:
            outer.servers.append(call.server)
        if command.noreply is not None:
            call.noreply = library.noreply(call, args, kwargs)
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
    """Tags what the call learned (its server, rows, a swallowed failure) and finishes the span.

    On ddtrace's native span the fixed tags go in one ``_set_attributes`` call and the row
    count in one ``_set_attribute`` call, what ``set_tag``/``set_metric`` store (see tagging).
    """
    span = call.span
    try:
        server = call.server
        if type(server) is Fanout:  # several servers: none is named
            span.set_metric(tagging.SERVERS, int(server))
            server = None
        try:
            attrs, noreply_attrs, native = call.library.server_tags[server]
        except (KeyError, TypeError):
            attrs, noreply_attrs, native = _server_tags(call.library, server)
        if call.noreply:
            attrs = noreply_attrs
        fast = type(span) is _FAST_SPAN
        if fast and native:
            span._set_attributes(attrs)
        else:
            tagging.set_public(span, attrs)
        rows = call.rows
        if rows is not None:
            if fast and type(rows) is int:
                span._set_attribute(tagging.ROW_COUNT, rows)
            else:
                span.set_metric(tagging.ROW_COUNT, rows)
        if call.failure is not None:
            mark_failed(span, *call.failure)
    except Exception:
        log.debug("could not tag the span of memcached %s", call.command.resource, exc_info=True)
    try:
        span.finish()
    except Exception:
        log.debug("could not finish the span of memcached %s", call.command.resource, exc_info=True)


def _returned(call: Call, result: Any) -> None:
    """Reads what the result says: the keys a read found, a miss (``NOT_FOUND``...), a
    failure the client swallowed. A noreply command's result says nothing of the server."""
    try:
        library = call.library
        if library.swallows and call.failure is None:
            call.failure = library.failure(call, result)
        if call.command.read is not _READ_NONE:
            if call.rows is None:
                call.rows = library.found(call, result)
        elif not call.noreply and call.failure is None:
            reply = library.reply(call, result)
            if reply is not None:
                call.span.set_tag(tagging.STATUS, reply)
    except Exception:
        log.debug("could not read the result of memcached %s", call.command.resource, exc_info=True)


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
        library = call.library
        reply = library.raised_reply(call, exc)
        if reply is not None:  # a miss the client raises: the app handles it, memcached did not fail
            span.set_tag(tagging.STATUS, reply)
            return
        span.set_exc_info(type(exc), exc, exc.__traceback__)
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


@wrapping.ours
def trace(library: Library, command: Command, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
    """The wrapper (in wrapt's form) of every synchronous command; bind the first two with
    ``partial`` for wrapt, or install it with :func:`as_function`.

    Whatever the path, this frame ends without the app's arguments or result: a frame
    outlives its call when an exception refers to it (its traceback, or the ``f_back`` of
    a frame that the client's callback raised in, as pylibmc's ``deserialize``), and nothing
    of the app's (keys, values) may stay referenced by the integration after a call.
    """
    try:
        if not tracer.enabled:
            return wrapped(*args, **kwargs)
        try:
            call = _open(library, command, instance, args, kwargs, _current.get())
        except Exception:
            log.debug("could not start the span of memcached %s", getattr(command, "resource", None), exc_info=True)
            call = None
        if call is None:
            return wrapped(*args, **kwargs)
        token = _current.set(call) if library.inner or call.command.nests else None
        try:
            read = call.command.read
            if read is _READ_ONE or read is _READ_ONE_WITH_CAS:
                sent = _sent(call.command, args, kwargs)
                if sent is not None:
                    return _restored(call, wrapped(*sent[0], **sent[1]), sent[2])
            result = wrapped(*args, **kwargs)
            if (call.command.reads_result and not call.noreply) or library.swallows:
                _returned(call, result)
            return result
        except BaseException as exc:
            _raised(call, exc)
            raise  # the same object, unchanged
        finally:
            if token is not None:
                _current.reset(token)
            _close(call)
    finally:
        args = kwargs = sent = result = None  # noqa: F841


@wrapping.ours
def trace_async(library: Library, command: Command, wrapped: Callable, instance: Any, args: tuple, kwargs: dict):
    """The wrapper (in wrapt's form) of every coroutine command: the span covers the awaited work.

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
    """:func:`trace`'s lifecycle, awaited."""
    try:
        if not tracer.enabled:
            return await wrapped(*args, **kwargs)
        try:
            call = _open(library, command, instance, args, kwargs, _current.get())
        except Exception:
            log.debug("could not start the span of memcached %s", getattr(command, "resource", None), exc_info=True)
            call = None
        if call is None:
            return await wrapped(*args, **kwargs)
        token = _current.set(call) if library.inner or call.command.nests else None
        try:
            read = call.command.read
            if read is _READ_ONE or read is _READ_ONE_WITH_CAS:
                sent = _sent(call.command, args, kwargs)
                if sent is not None:
                    return _restored(call, await wrapped(*sent[0], **sent[1]), sent[2])
            result = await wrapped(*args, **kwargs)
            if (call.command.reads_result and not call.noreply) or library.swallows:
                _returned(call, result)
            return result
        except BaseException as exc:
            if _is_cancellation(exc):
                _tag_cancelled(call.span)
            else:
                _raised(call, exc)
            raise
        finally:
            if token is not None:
                _current.reset(token)
            _close(call)
    finally:
        args = kwargs = sent = result = None  # noqa: F841 (see trace)


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
    """The wrapper (in wrapt's form) of a method whose round trips are spans made below it
    (pymemcache's ``HashClient``, bmemcached's clients, meta-memcache's methods).

    The round trips' spans are named after it and get its overrides and Pin; the
    outermost call names them (``get_typed`` calls ``get``: the app called ``get_typed``).
    If the client answers without a round trip, or refuses the call before one, the call
    gets a span of its own, covering it (:meth:`Library.unspanned`).
    """
    try:
        if not tracer.enabled:
            return wrapped(*args, **kwargs)
        current = _current.get()
        if current is not None and current.instance is instance:
            return wrapped(*args, **kwargs)  # a method that the app's method calls
        try:
            named = command if current is None or current.span is not None else current.command  # the outermost's
            # the servers below it only for a library that looks at them (Library.unspanned)
            call = OuterCall(library, named, instance, current, [] if library.inspects_unspanned else None)
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
                _span_after(call, args, kwargs, None, None, exc, None)
            raise
        else:
            _current.reset(token)
            try:
                if call.spans == 0 or library.inspects_unspanned:
                    for server, failure in library.unspanned(call, args, kwargs, result):
                        _span_after(call, args, kwargs, server, failure, None, result)
            except Exception:
                log.debug("could not trace what memcached %s answered itself", call.command.resource, exc_info=True)
            return result
        finally:
            overrides.leave(scope)
    finally:
        args = kwargs = result = None  # noqa: F841 (see trace)


def _span_after(call: OuterCall, args, kwargs, server: Any, failure: Optional[Failure], exc, result) -> None:
    """The span of a round trip that an outer call did not make (or of the call, when it made
    none): from the call's start until now. ``exc`` is what the call raised; else ``result``
    what it returned, read as the app's command's own result when no ``failure`` says why."""
    try:
        made = _open(call.library, call.command, call.instance, args, kwargs, call.outer)
        if made is None:
            return
        made.span.start_ns = call.start_ns
        made.server = server
        made.failure = failure
        if exc is not None:
            _raised(made, exc)
        elif failure is None:
            _returned(made, result)
        _close(made)
    except Exception:
        log.debug("could not trace memcached %s", call.command.resource, exc_info=True)


# --- plain functions -----------------------------------------------------------------------


def as_function(wrapper: Callable, library: Library, command: Optional[Command]) -> wrapping.Hook:
    """``partial(wrapper, library, command)`` (:func:`trace`, :func:`trace_async` or
    :func:`outer`) installed as a plain function (:func:`wrapping.passing`), not a wrapt
    ``FunctionWrapper``: for the Python methods on a command's path in the clients whose
    commands pass more than one layer (the app's command and what it calls on every command:
    meta-memcache's meta methods and executor, bmemcached's protocol, emcache's requests),
    where wrapt's binding costs 4k instructions more per call (``benchmarks/anatomy.py``).
    The wrapper is called as wrapt calls it, with the method bound to the instance."""

    def make(original: Callable) -> Callable:
        return wrapping.passing(original, wrapping.TRACING, partial(wrapper, library, command), bound=True)

    return wrapping.Hook(make)


# --- hooks inside a client ------------------------------------------------------------------


def hook(library: Library, before: Optional[Callable] = None, after: Optional[Callable] = None) -> wrapping.Hook:
    """A hook on a method that a client runs inside its commands (python-memcached's
    ``_get_server``): ``before(call, instance, args, kwargs)`` and
    ``after(call, instance, args, kwargs, result)`` run around it while a traced call of
    ``library`` is in progress in this context, and tell the call what they learn. Otherwise
    the method runs alone, for the cost of one check. A hook's own failure is logged, never
    raised; the hook's frame ends without the app's arguments (see :func:`trace`).
    """

    def make(original: Callable) -> Callable:
        def hooked(self, args, kwargs):
            try:
                call = _current.get()
                if call is None or call.library is not library:
                    return original(self, *args, **kwargs)
                if before is not None:
                    try:
                        before(call, self, args, kwargs)
                    except Exception:
                        log.debug("a memcached hook failed before %r", original, exc_info=True)
                result = original(self, *args, **kwargs)
                if after is not None:
                    try:
                        after(call, self, args, kwargs, result)
                    except Exception:
                        log.debug("a memcached hook failed after %r", original, exc_info=True)
                return result
            finally:
                args = kwargs = result = None  # noqa: F841 (see trace)

        return wrapping.passing(original, _current.get, hooked)  # None: no call in progress

    return wrapping.Hook(make)
