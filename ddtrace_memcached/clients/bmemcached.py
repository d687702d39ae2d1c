"""python-binary-memcached (``bmemcached``): one span per server round trip.

Each ``bmemcached.protocol.Protocol`` talks to one server, and each of its command
methods is one request/response on its socket: those make the spans, so they name the
server each call reached. The clients (``ReplicatingClient``, also ``bmemcached.Client``,
and ``DistributedClient``) route keys to ``Protocol`` objects and make no span of their
own; their wrappers pass down their overrides/Pin and the command the app called, which
becomes the resource (``gets`` reaches ``Protocol.get``; ``get_multi`` is ``get_many``).
So a ``ReplicatingClient`` write makes one span per replica, and a miss one ``get`` span
per server it asked.

bmemcached swallows socket errors (it returns False/None/``{}`` instead of raising):
``Protocol._connection_error`` runs on each, and makes the span an error
(``error.type`` the exception's type; a server still within its retry delay reports
``OSError: Delaying reconnection attempt``). ``Protocol`` is a ``threading.local``:
its Pin and override are shared across threads (:func:`overrides.share_across_threads`).
"""

import contextvars
from functools import partial
import logging
from typing import Dict
from typing import Iterator
from typing import Tuple

import bmemcached
import bmemcached.protocol
from ddtrace.trace import tracer

from .. import core
from .. import overrides
from .. import wrapping
from ..commands import Command
from ..commands import Keys
from ..commands import Read
from ..commands import command
from ..commands import for_version
from ..commands import parse_version

log = logging.getLogger("ddtrace.contrib.memcached")

SUPPORTED = ">=0.31"

PROTOCOL_COMMANDS = (
    command("get", Keys.ONE, Read.VALUE),
    command("get_multi", Keys.MANY, Read.MANY, resource="get_many"),
    command("set", Keys.ONE),
    command("add", Keys.ONE),
    command("replace", Keys.ONE),
    command("cas", Keys.ONE),
    command("set_multi", Keys.MAPPING, resource="set_many"),
    command("set_multi_cas", Keys.MAPPING, since=(0, 32)),
    command("incr", Keys.ONE),
    command("decr", Keys.ONE),
    command("delete", Keys.ONE),
    command("delete_multi", Keys.MANY, resource="delete_many"),
    command("flush_all"),
    command("stats", Keys.ARGS),
    command("noop"),
    command("authenticate"),
)
"""Every method of ``Protocol`` that makes a round trip to its server."""

CLIENT_COMMANDS = {
    "get": "get",
    "gets": "gets",
    "get_multi": "get_many",
    "set": "set",
    "add": "add",
    "replace": "replace",
    "cas": "cas",
    "set_multi": "set_many",
    "set_multi_cas": "set_multi_cas",
    "incr": "incr",
    "decr": "decr",
    "delete": "delete",
    "delete_multi": "delete_many",
    "flush_all": "flush_all",
    "stats": "stats",
}
"""The clients' methods that reach a server -> the resource of their spans."""


def get_version() -> str:
    version = getattr(bmemcached, "__version__", "")
    if not version:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("python-binary-memcached")
        except Exception:
            version = ""
    return version


VERSION = parse_version(get_version())
COMMANDS = for_version(PROTOCOL_COMMANDS, VERSION)
CLIENT_CLASSES = (bmemcached.ReplicatingClient, bmemcached.DistributedClient)

_COMMAND: contextvars.ContextVar = contextvars.ContextVar("ddtrace_memcached_bmemcached_command", default=None)
_FAILURE: contextvars.ContextVar = contextvars.ContextVar("ddtrace_memcached_bmemcached_failure", default=None)


class _Failure:
    """The socket error a ``Protocol`` call swallowed, if any."""

    __slots__ = ("error",)

    def __init__(self):
        self.error = None


class Bmemcached(core.Library):
    name = "bmemcached"

    def server(self, instance, command, args, kwargs):
        if instance.host:
            return (instance.host, instance.port)
        return instance.server  # a unix socket path

    def found(self, command, result):
        if command.method == "get":  # (value, cas): a stored None has a cas, a miss none
            return 0 if not isinstance(result, tuple) or result[1] is None else 1
        return super().found(command, result)

    def failure(self, instance, command, result):
        failure = _FAILURE.get()
        return failure.error if failure is not None else None


LIBRARY = Bmemcached()

_RENAMED: Dict[Tuple[str, str], Command] = {}


def _as(cmd: Command, resource: str) -> Command:
    """``cmd`` under the resource of the client command that caused it."""
    renamed = _RENAMED.get((cmd.method, resource))
    if renamed is None:
        renamed = _RENAMED[(cmd.method, resource)] = cmd._replace(resource=resource)
    return renamed


@wrapping.ours
def trace(cmd, wrapped, instance, args, kwargs):
    """:func:`core.trace` of a ``Protocol`` method, named after the app's command."""
    if not tracer.enabled:  # no span to name or to mark failed
        return wrapped(*args, **kwargs)
    resource = _COMMAND.get()
    if resource is not None and resource != cmd.resource:
        cmd = _as(cmd, resource)
    token = _FAILURE.set(_Failure())
    try:
        return core.trace(LIBRARY, cmd, wrapped, instance, args, kwargs)
    finally:
        _FAILURE.reset(token)


@wrapping.ours
def within_command(resource, wrapped, instance, args, kwargs):
    """A client method: its overrides, and its name for the spans (the outermost wins)."""
    if not tracer.enabled:  # no span to name
        return wrapped(*args, **kwargs)
    if _COMMAND.get() is not None:
        return overrides.within(wrapped, instance, args, kwargs)
    token = _COMMAND.set(resource)
    try:
        return overrides.within(wrapped, instance, args, kwargs)
    finally:
        _COMMAND.reset(token)


def error_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__name__ if cls.__module__ == "builtins" else "%s.%s" % (cls.__module__, cls.__qualname__)


@wrapping.ours
def on_connection_error(wrapped, instance, args, kwargs):
    """``Protocol._connection_error``: a socket error the command is about to swallow."""
    failure = _FAILURE.get()
    if failure is not None and failure.error is None:  # the first is the cause
        try:
            exc = args[0] if args else kwargs.get("exception")
            failure.error = (error_type(exc), str(exc) or repr(exc))
        except Exception:
            log.debug("could not read a bmemcached connection error", exc_info=True)
    return wrapped(*args, **kwargs)


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    protocol = bmemcached.protocol.Protocol
    for cmd in COMMANDS:
        yield protocol, cmd.method, partial(trace, cmd)
    yield protocol, "_connection_error", on_connection_error
    for cls in CLIENT_CLASSES:
        for method, resource in CLIENT_COMMANDS.items():
            yield cls, method, partial(within_command, resource)


def patch() -> None:
    wrapping.wrap_all(targets())
    overrides.share_across_threads(bmemcached.protocol.Protocol)


def unpatch() -> None:
    wrapping.unwrap_all(targets())
    overrides.unshare_across_threads(bmemcached.protocol.Protocol)
