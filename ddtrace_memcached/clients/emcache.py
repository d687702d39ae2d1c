"""emcache: one span per awaited command, named after the node its key is routed to.

Every command coroutine of ``emcache.client._Client`` (what ``create_client`` returns;
``emcache.Client`` is only its abstract base) is wrapped at class level, so clients
created before patching are traced. The cluster picks a node per key (rendezvous
hashing): a single-key command's span names the node ``Cluster.pick_node`` gives for
its key, the same call emcache makes to route it. Per-node admin commands (``version``,
``stats``, ``flush_all``...) name the node passed as their first argument.

Multi-key commands (``get_many``, ``gets_many``, ``gat_many``, ``gats_many``) send one
request per node, each in a task of its own. Their span covers the whole command (its
errors, timeout and the keys found in all). When the keys go to several nodes, it names
no host (``memcached.servers`` says how many), and each node's round trip gets a child
span of its own: same name and resource, that node's host and the keys it found. The
node is the one whose ``Node.connection()`` the round trip took; the child covers the
request and reply on that connection. A timeout is an error on the command's span; the
round trips it stopped are tagged ``memcached.cancelled``.

With ``autobatching=True``, ``get``/``gets`` calls made in the same loop iteration are
sent together, one request per node, in tasks emcache starts. Each call keeps its own
span, child of its caller's span and named after its key's node; it covers waiting for
the batch to be sent and the batch's round trip, which it shares with the other callers
of that batch. No span is made for the batch itself.
"""

import logging
from typing import Any
from typing import Iterator

import emcache
import emcache.client
from emcache.client_errors import NotFoundCommandError
from emcache.client_errors import NotStoredStorageCommandError
from emcache.client_errors import StorageCommandError
import emcache.node
import emcache.protocol

from .. import commands
from .. import core
from .. import wrapping
from ..commands import EXISTS
from ..commands import NOT_FOUND
from ..commands import NOT_STORED
from ..commands import Arg
from ..commands import Keys
from ..commands import Read
from ..commands import command

log = logging.getLogger("ddtrace.contrib.memcached")

_EXPTIME_FIRST_KEY = Arg(1, "key")  # gat(exptime, key)
_EXPTIME_FIRST_KEYS = Arg(1, "keys")  # gat_many(exptime, keys)

_NOREPLY = Arg(None, "noreply")  # keyword-only

# Misses raise (Keyed.raised_reply); noreply returns at once.
KEYED = (
    # storage
    command("set", Keys.ONE, noreply=_NOREPLY),
    command("add", Keys.ONE, noreply=_NOREPLY),
    command("replace", Keys.ONE, noreply=_NOREPLY),
    command("append", Keys.ONE, noreply=_NOREPLY),
    command("prepend", Keys.ONE, noreply=_NOREPLY),
    command("cas", Keys.ONE, noreply=_NOREPLY),
    # retrieval: an Item or None
    command("get", Keys.ONE, Read.VALUE),
    command("gets", Keys.ONE, Read.VALUE),
    command("gat", Keys.ONE, Read.VALUE, key=_EXPTIME_FIRST_KEY),
    command("gats", Keys.ONE, Read.VALUE, key=_EXPTIME_FIRST_KEY),
    # deletion, arithmetic, touch: named like the other clients' commands
    command("delete", Keys.ONE, noreply=_NOREPLY),
    command("increment", Keys.ONE, resource="incr", noreply=_NOREPLY),
    command("decrement", Keys.ONE, resource="decr", noreply=_NOREPLY),
    command("touch", Keys.ONE, noreply=_NOREPLY),
)
"""The command coroutines of ``_Client`` routed by their key."""

MULTI = (
    # a dict of the keys found
    command("get_many", Keys.MANY, Read.MANY),
    command("gets_many", Keys.MANY, Read.MANY),
    command("gat_many", Keys.MANY, Read.MANY, key=_EXPTIME_FIRST_KEYS),
    command("gats_many", Keys.MANY, Read.MANY, key=_EXPTIME_FIRST_KEYS),
)
"""The command coroutines of ``_Client`` that fan out to the nodes of their keys."""

_ADDRESS = Arg(0, "memcached_host_address")
PER_NODE = (
    command("flush_all"),
    command("version"),
    command("stats"),
    command("verbosity"),
    command("cache_memlimit"),
)
"""The command coroutines of ``_Client`` sent to the node given as the first argument."""

APP_COMMANDS = KEYED + MULTI + PER_NODE
"""What the app calls, in every release: the README's commands table is generated from it."""

ROUND_TRIPS = (
    # (Protocol method, its command): a node's share of a multi-key command
    command("fetch_command", Keys.MANY, Read.MANY, key=Arg(1, "keys")),  # (cmd, keys)
    command("get_and_touch_command", Keys.MANY, Read.MANY, key=Arg(2, "keys")),  # (cmd, exptime, keys)
)
"""``MemcacheAsciiProtocol``'s requests: one node's round trip of a multi-key command."""

Client = emcache.client._Client
Node = emcache.node.Node
Protocol = emcache.protocol.MemcacheAsciiProtocol


def address_of(address: Any) -> Any:
    """``(host, port)`` of a ``MemcachedHostAddress``, the path of a ``MemcachedUnixSocketPath``."""
    path = getattr(address, "path", None)
    if path is not None:
        return path
    return (address.address, address.port)


class Keyed(core.Library):
    inner = False  # no hook inside reads the call

    def raised_reply(self, call, exc):
        """Misses raise: not found (``delete``, ``increment``, ``touch``, and ``cas`` of a
        missing key), not stored (``add``, ``replace``...; for ``cas``, a stale token)."""
        if isinstance(exc, NotFoundCommandError):
            return NOT_FOUND
        if isinstance(exc, NotStoredStorageCommandError):
            return EXISTS if call.command.method == "cas" else NOT_STORED
        if type(exc) is StorageCommandError and "NOT_FOUND" in str(exc):
            return NOT_FOUND
        return None

    def server(self, call, args, kwargs):
        try:
            key = commands.key_of(call.command, args, kwargs)
            return address_of(call.instance._cluster.pick_node(key).memcached_host_address)
        except Exception:
            # No node left (ClusterNoAvailableNodes), a str key: the command raises its
            # own error; the span names no node.
            return None


class Multi(core.Library):
    def server(self, call, args, kwargs):
        """The one node of the keys, or how many: their round trips then name theirs."""
        try:
            nodes = call.instance._cluster.pick_nodes(commands.key_of(call.command, args, kwargs))
            if len(nodes) > 1:
                return core.Fanout(len(nodes))
            return address_of(next(iter(nodes)).memcached_host_address)
        except Exception:
            log.debug("could not route the keys of an emcache command", exc_info=True)
            return None


class PerNode(core.Library):
    inner = False

    def server(self, call, args, kwargs):
        try:
            return address_of(commands.argument(args, kwargs, _ADDRESS))
        except Exception:
            return None


class RoundTrip(core.Library):
    """One node's round trip of a multi-key command (see :func:`trace_round_trip`)."""

    inner = False

    def server(self, call, args, kwargs):
        return call.outer.server  # the node that within_task noted

    def found(self, call, result):
        # (keys, values, flags, cas, client_error) as the node answered
        return len(result[0])


KEYED_LIBRARY, MULTI_LIBRARY, PER_NODE_LIBRARY, ROUND_TRIP = Keyed(), Multi(), PerNode(), RoundTrip()


def remember_node(call, instance, args, kwargs):
    """Before ``Node.connection()``: in a fan-out's per-node task, notes the node for its round trip."""
    if type(call.server) is core.Fanout:
        core.within_task(call, address_of(instance.memcached_host_address))


def trace_round_trip(library, cmd, wrapped, instance, args, kwargs):
    """A child span for one node's round trip of a fan-out; untraced otherwise. Its
    overrides are the client's, whose command it serves."""
    call = core.current()
    if call is None or call.span is not None or call.outer is None or call.outer.library is not MULTI_LIBRARY:
        return wrapped(*args, **kwargs)
    return core.trace_async(library, cmd, wrapped, call.instance, args, kwargs)


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    for library, table in ((KEYED_LIBRARY, KEYED), (MULTI_LIBRARY, MULTI), (PER_NODE_LIBRARY, PER_NODE)):
        for cmd in table:
            yield Client, cmd.method, core.as_function(core.trace_async, library, cmd)
    yield Node, "connection", core.hook(MULTI_LIBRARY, before=remember_node)
    for cmd in ROUND_TRIPS:  # below the client's method on every command: plain functions
        yield Protocol, cmd.method, core.as_function(trace_round_trip, ROUND_TRIP, cmd)


def patch() -> None:
    wrapping.wrap_all(targets())


def unpatch() -> None:
    wrapping.unwrap_all(targets())
