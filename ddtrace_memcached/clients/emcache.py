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
no host (``memcached.servers`` says how many), and each node's round trip gets a child span of its own: same name and
resource, that node's host and the keys it found. The node is the one whose
``Node.connection()`` the round trip took; the child covers the request and reply on
that connection. A timeout is an error on the command's span; the round trips it
stopped are tagged ``memcached.cancelled``.

With ``autobatching=True``, ``get``/``gets`` calls made in the same loop iteration are
sent together, one request per node, in tasks emcache starts. Each call keeps its own
span, child of its caller's span and named after its key's node; it covers waiting for
the batch to be sent and the batch's round trip, which it shares with the other callers
of that batch. No span is made for the batch itself.
"""

import contextvars
from functools import partial
from typing import Any
from typing import Iterator

from ddtrace.trace import tracer
import emcache
import emcache.client
import emcache.node
import emcache.protocol

from .. import core
from .. import wrapping
from ..commands import Command
from ..commands import Keys
from ..commands import Read
from ..commands import command
from ..commands import parse_version

SUPPORTED = ">=1.3.1"

_BY_KEY = "key"  # routed by their key
_BY_KEYS = "keys"  # fan out to the nodes of their keys
_BY_ADDRESS = "address"  # sent to the node given as the first argument

COMMANDS = (
    # (command, routing, exptime comes first)
    # storage
    (command("set", Keys.ONE), _BY_KEY, False),
    (command("add", Keys.ONE), _BY_KEY, False),
    (command("replace", Keys.ONE), _BY_KEY, False),
    (command("append", Keys.ONE), _BY_KEY, False),
    (command("prepend", Keys.ONE), _BY_KEY, False),
    (command("cas", Keys.ONE), _BY_KEY, False),
    # retrieval: Item or None, a dict of the keys found
    (command("get", Keys.ONE, Read.VALUE), _BY_KEY, False),
    (command("gets", Keys.ONE, Read.VALUE), _BY_KEY, False),
    (command("gat", Keys.ONE, Read.VALUE), _BY_KEY, True),
    (command("gats", Keys.ONE, Read.VALUE), _BY_KEY, True),
    (command("get_many", Keys.MANY, Read.MANY), _BY_KEYS, False),
    (command("gets_many", Keys.MANY, Read.MANY), _BY_KEYS, False),
    (command("gat_many", Keys.MANY, Read.MANY), _BY_KEYS, True),
    (command("gats_many", Keys.MANY, Read.MANY), _BY_KEYS, True),
    # deletion, arithmetic, touch: named like the other clients' commands
    (command("delete", Keys.ONE), _BY_KEY, False),
    (command("increment", Keys.ONE, resource="incr"), _BY_KEY, False),
    (command("decrement", Keys.ONE, resource="decr"), _BY_KEY, False),
    (command("touch", Keys.ONE), _BY_KEY, False),
    # per node
    (command("flush_all"), _BY_ADDRESS, False),
    (command("version"), _BY_ADDRESS, False),
    (command("stats"), _BY_ADDRESS, False),
    (command("verbosity"), _BY_ADDRESS, False),
    (command("cache_memlimit"), _BY_ADDRESS, False),
)
"""Every command coroutine of ``_Client``."""


def get_version() -> str:
    try:
        from importlib.metadata import version

        return version("emcache")
    except Exception:
        return getattr(getattr(emcache, "version", None), "__version__", "")


VERSION = parse_version(get_version())
Client = emcache.client._Client
Node = emcache.node.Node
Protocol = emcache.protocol.MemcacheAsciiProtocol


def address_of(address: Any) -> Any:
    """``(host, port)`` of a ``MemcachedHostAddress``, the path of a ``MemcachedUnixSocketPath``."""
    path = getattr(address, "path", None)
    if path is not None:
        return path
    return (address.address, address.port)


# While a multi-key command of a client fans out to several nodes: (client, command, nodes).
# Its per-node tasks copy it; set nowhere else.
_FAN_OUT: contextvars.ContextVar = contextvars.ContextVar("ddtrace_memcached_emcache_fan_out", default=None)
# In a per-node task of a fan-out: the node whose connection it took.
_NODE: contextvars.ContextVar = contextvars.ContextVar("ddtrace_memcached_emcache_node", default=None)


class Emcache(core.Library):
    name = "emcache"

    def __init__(self, routing: str):
        self.routing = routing

    def server(self, instance, command, args, kwargs):
        try:
            if self.routing == _BY_ADDRESS:
                return address_of(args[0] if args else kwargs["memcached_host_address"])
            if self.routing == _BY_KEYS:
                fan_out = _FAN_OUT.get()
                if fan_out is not None:
                    return core.Fanout(fan_out[2])  # several nodes: the round trips name theirs
                keys = args[0] if args else kwargs["keys"]
                return address_of(instance._cluster.pick_node(next(iter(keys))).memcached_host_address)
            key = args[0] if args else kwargs["key"]
            return address_of(instance._cluster.pick_node(key).memcached_host_address)
        except Exception:
            # No keys, no node left (ClusterNoAvailableNodes), a str key: the command
            # raises its own error; the span names no node.
            return None


class RoundTrip(core.Library):
    """One node's round trip of a multi-key command."""

    name = "emcache"

    def server(self, instance, command, args, kwargs):
        node = _NODE.get()
        return None if node is None else address_of(node.memcached_host_address)

    def found(self, command, result):
        # (keys, values, flags, cas, client_error) as the node answered
        return len(result[0])


LIBRARIES = {routing: Emcache(routing) for routing in (_BY_KEY, _BY_KEYS, _BY_ADDRESS)}
ROUND_TRIP = RoundTrip()


@wrapping.ours
def trace_exptime_first(library: core.Library, cmd: Command, wrapped, instance, args, kwargs):
    """``gat(exptime, key)`` and the like: the key is read from after the exptime."""
    if not args:
        return core.trace_async(library, cmd, wrapped, instance, args, kwargs)
    exptime = args[0]
    return core.trace_async(library, cmd, lambda *a, **kw: wrapped(exptime, *a, **kw), instance, args[1:], kwargs)


@wrapping.ours
def trace_fan_out(library: core.Library, cmd: Command, exptime_first: bool, wrapped, instance, args, kwargs):
    """A multi-key command: when its keys go to several nodes, its round trips get spans."""
    return _fan_out(library, cmd, exptime_first, wrapped, instance, args, kwargs)


async def _fan_out(library, cmd, exptime_first, wrapped, instance, args, kwargs):
    nodes = _nodes(instance, args, kwargs, exptime_first) if tracer.enabled else 0
    token = _FAN_OUT.set((instance, cmd, nodes)) if nodes > 1 else None
    try:
        if exptime_first:
            return await trace_exptime_first(library, cmd, wrapped, instance, args, kwargs)
        return await core.trace_async(library, cmd, wrapped, instance, args, kwargs)
    finally:
        if token is not None:
            _FAN_OUT.reset(token)


def _nodes(instance, args, kwargs, exptime_first: bool) -> int:
    """How many nodes the keys go to; 0 if unknown."""
    try:
        keys = args[1 if exptime_first else 0] if len(args) > exptime_first else kwargs["keys"]
        return len(instance._cluster.pick_nodes(keys))
    except Exception:
        core.log.debug("could not route the keys of an emcache command", exc_info=True)
        return 0


@wrapping.ours
def remember_node(wrapped, instance, args, kwargs):
    """``Node.connection()``: in a fan-out's per-node task, notes the node for its round trip."""
    if _FAN_OUT.get() is not None:
        _NODE.set(instance)  # the task's own context: gone with the task
    return wrapped(*args, **kwargs)


@wrapping.ours
def trace_round_trip(keys_at: int, wrapped, instance, args, kwargs):
    """``fetch_command(cmd, keys)``, ``get_and_touch_command(cmd, exptime, keys)``: a child
    span for one node's round trip of a fan-out; untraced otherwise."""
    fan_out = _FAN_OUT.get()
    if fan_out is None or _NODE.get() is None or len(args) <= keys_at:
        return wrapped(*args, **kwargs)
    client, cmd, _ = fan_out
    return core.trace_async(ROUND_TRIP, cmd, lambda *_: wrapped(*args, **kwargs), client, (args[keys_at],), {})


def _wrapper(cmd: Command, routing: str, exptime_first: bool):
    library = LIBRARIES[routing]
    if routing == _BY_KEYS:
        return partial(trace_fan_out, library, cmd, exptime_first)
    if exptime_first:
        return partial(trace_exptime_first, library, cmd)
    return partial(core.trace_async, library, cmd)


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    for cmd, routing, exptime_first in COMMANDS:
        yield Client, cmd.method, _wrapper(cmd, routing, exptime_first)
    yield Node, "connection", remember_node
    yield Protocol, "fetch_command", partial(trace_round_trip, 1)
    yield Protocol, "get_and_touch_command", partial(trace_round_trip, 2)


def patch() -> None:
    wrapping.wrap_all(targets())


def unpatch() -> None:
    wrapping.unwrap_all(targets())
