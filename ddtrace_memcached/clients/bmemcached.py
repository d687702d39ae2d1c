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

import logging
from typing import Iterator

import bmemcached
import bmemcached.protocol

from .. import core
from .. import overrides
from .. import registry
from .. import wrapping
from ..commands import NOT_STORED_IF_FALSE
from ..commands import Keys
from ..commands import Read
from ..commands import command
from ..commands import for_version
from ..commands import parse_version

log = logging.getLogger("ddtrace.contrib.memcached")

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

# delete returns True and incr creates a missing counter, whether the key was there or not;
# cas returns False for a missing key and a stale token alike: no miss to tell.
CLIENT_COMMANDS = (
    command("get", Keys.ONE, Read.VALUE),
    command("gets", Keys.ONE, Read.VALUE),
    command("get_multi", Keys.MANY, Read.MANY, resource="get_many"),
    command("set", Keys.ONE),
    command("add", Keys.ONE, misses=NOT_STORED_IF_FALSE),
    command("replace", Keys.ONE, misses=NOT_STORED_IF_FALSE),
    command("cas", Keys.ONE),
    command("set_multi", Keys.MAPPING, resource="set_many"),
    command("set_multi_cas", Keys.MAPPING, since=(0, 32)),
    command("incr", Keys.ONE),
    command("decr", Keys.ONE),
    command("delete", Keys.ONE),
    command("delete_multi", Keys.MANY, resource="delete_many"),
    command("flush_all"),
    command("stats", Keys.ARGS),
)
"""The clients' methods that reach a server: they name the round trips' spans (and say
whether they count rows)."""

APP_COMMANDS = CLIENT_COMMANDS
"""What the app calls, in every release: the README's commands table is generated from it."""

VERSION = parse_version(registry.client_version(__name__))
COMMANDS = for_version(PROTOCOL_COMMANDS, VERSION)
CLIENT_CLASSES = (bmemcached.ReplicatingClient, bmemcached.DistributedClient)


class Bmemcached(core.Library):
    """A ``Protocol``'s round trip to its server."""

    def server(self, call, args, kwargs):
        protocol = call.instance
        if protocol.host:
            return (protocol.host, protocol.port)
        return protocol.server  # a unix socket path

    def found(self, call, result):
        if call.command.method == "get":  # (value, cas): a stored None has a cas, a miss none
            return 0 if not isinstance(result, tuple) or result[1] is None else 1
        return super().found(call, result)


class BmemcachedClient(core.Library):
    """The app's call on a client, which routes it to ``Protocol`` objects."""


LIBRARY = Bmemcached()
CLIENT_LIBRARY = BmemcachedClient()


def error_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__name__ if cls.__module__ == "builtins" else "%s.%s" % (cls.__module__, cls.__qualname__)


def on_connection_error(call, instance, args, kwargs):
    """Before ``Protocol._connection_error``: a socket error the command is about to swallow."""
    exc = args[0] if args else kwargs.get("exception")
    call.failed(error_type(exc), str(exc) or repr(exc))


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    protocol = bmemcached.protocol.Protocol
    for cmd in COMMANDS:  # below the clients' methods on every command: plain functions
        yield protocol, cmd.method, core.as_function(core.trace, LIBRARY, cmd)
    yield protocol, "_connection_error", core.hook(LIBRARY, before=on_connection_error)
    for cls in CLIENT_CLASSES:
        for cmd in for_version(CLIENT_COMMANDS, VERSION):
            yield cls, cmd.method, core.as_function(core.outer, CLIENT_LIBRARY, cmd)


def patch() -> None:
    wrapping.wrap_all(targets())
    overrides.share_across_threads(bmemcached.protocol.Protocol)


def unpatch() -> None:
    wrapping.unwrap_all(targets())
    overrides.unshare_across_threads(bmemcached.protocol.Protocol)
