"""meta-memcache: one span per round trip that ``DefaultExecutor`` makes to a server pool.

meta-memcache routes each command (or each server's share of a ``multi_get``) to a
``ConnectionPool`` and runs it in ``DefaultExecutor.exec_on_pool`` /
``exec_multi_on_pool``: those two are traced, so every span names the one server it
talked to, and a gutter failover or a lease retry is a span of its own.

The executor only sees ``mg``/``ms``/``md``/``ma``. The methods the app calls
(``get``, ``set``, ``multi_get``..., on ``HighLevelCommandsMixin`` and
``MetaCommandsMixin``, so ``CacheClient``, its subclasses and the ``extras`` wrappers)
are outer calls (:func:`core.outer`): they name the executor's spans, and pass them the
client's overrides and Pin. The outermost call names the spans (``get_typed`` calls
``get``; the app called ``get_typed``).

A pool knows its server only as ``str(ServerAddress)``, which is the ``server_id`` when
one is set: pools are mapped back to their ``ServerAddress`` through the client's pool
providers (see :func:`_server`). With ``raise_on_server_error=False`` the executor
returns ``MISS_DUE_TO_ERROR`` / ``NOT_STORED_DUE_TO_ERROR`` instead of raising: such
spans are marked as errors, the result is left as it is.
"""

import logging
from typing import Any
from typing import Dict
from typing import Iterator
from typing import Optional
from typing import Tuple
import weakref

from meta_memcache.commands.high_level_commands import HighLevelCommandsMixin
from meta_memcache.commands.meta_commands import MetaCommandsMixin
from meta_memcache.executors.default import DefaultExecutor
from meta_memcache.protocol import MISS_DUE_TO_ERROR
from meta_memcache.protocol import NOT_STORED_DUE_TO_ERROR
from meta_memcache.protocol import Conflict
from meta_memcache.protocol import MetaCommand
from meta_memcache.protocol import Miss
from meta_memcache.protocol import NotStored
from meta_memcache.protocol import Success
from meta_memcache.protocol import Value

from .. import commands
from .. import core
from .. import registry
from .. import wrapping
from ..commands import EXISTS
from ..commands import NOT_FOUND
from ..commands import NOT_STORED
from ..commands import Arg
from ..commands import Command
from ..commands import Keys
from ..commands import Read
from ..commands import command
from ..commands import for_version
from ..commands import parse_version

log = logging.getLogger("ddtrace.contrib.memcached")

# Multi-key reads follow the cross-client convention (pymemcache's get_multi -> get_many):
# multi_X is reported as X_many. The keys of a span are those the executor sent to its
# server (EXECUTOR); these rows name the spans and say what the app's call reads.
HIGH_LEVEL = (
    command("get", Keys.ONE, Read.VALUE),
    command("get_cas", Keys.ONE, Read.VALUE),
    command("get_typed", Keys.ONE, Read.VALUE),
    command("get_cas_typed", Keys.ONE, Read.VALUE),
    command("get_or_lease", Keys.ONE, Read.VALUE),
    command("get_or_lease_cas", Keys.ONE, Read.VALUE),
    command("multi_get", Keys.MANY, Read.MANY, resource="get_many"),
    command("multi_get_cas", Keys.MANY, Read.MANY, resource="get_cas_many"),
    command("touch", Keys.ONE),
    command("set", Keys.ONE),
    command("set_cas", Keys.ONE),
    command("refill", Keys.ONE),
    command("delete", Keys.ONE),
    command("invalidate", Keys.ONE),
    command("delta", Keys.ONE),
    command("delta_initialize", Keys.ONE),
    command("delta_and_get", Keys.ONE),
    command("delta_initialize_and_get", Keys.ONE),
)
"""``HighLevelCommandsMixin``'s methods that reach a server."""

META = (
    command("meta_get", Keys.ONE, Read.VALUE),
    command("meta_multiget", Keys.MANY, Read.MANY),
    command("meta_set", Keys.ONE),
    command("meta_delete", Keys.ONE),
    command("meta_arithmetic", Keys.ONE),
)
"""``MetaCommandsMixin``'s methods; each also names a wire command used without them."""

APP_COMMANDS = HIGH_LEVEL + META
"""What the app calls, in every release: the README's commands table is generated from it."""

# exec_on_pool(pool, command, key, value, flags, ...): RequestFlags.no_reply says noreply
_KEY, _FLAGS = Arg(2, "key"), Arg(4, "flags")
EXECUTOR = {
    # (wire command, multi): the round trip, named after the meta method that sends it
    (MetaCommand.META_GET, False): command("meta_get", Keys.ONE, Read.VALUE, key=_KEY, noreply=_FLAGS),
    (MetaCommand.META_SET, False): command("meta_set", Keys.ONE, key=_KEY, noreply=_FLAGS),
    (MetaCommand.META_DELETE, False): command("meta_delete", Keys.ONE, key=_KEY, noreply=_FLAGS),
    (MetaCommand.META_ARITHMETIC, False): command("meta_arithmetic", Keys.ONE, key=_KEY, noreply=_FLAGS),
    # exec_multi_on_pool(pool, command, key_values, flags, ...)
    (MetaCommand.META_GET, True): command(
        "meta_multiget", Keys.PAIRS, Read.MANY, key=Arg(2, "key_values"), noreply=Arg(3, "flags")
    ),
}
"""``DefaultExecutor``'s round trips: named after the app's call when there is one."""

VERSION = parse_version(registry.client_version(__name__))
COMMANDS = for_version(HIGH_LEVEL, VERSION)


# --- which server: pool -> ServerAddress ----------------------------------------------

# id(pool) -> (weakref to the pool, its ServerAddress), the entry removed when the pool
# dies. Not a WeakKeyDictionary: its get() is a Python call that makes a weakref to hash,
# on every command (with Enum.__hash__, see MetaMemcache: about 1k instructions); the
# weakref read here tells a reused id.
_ADDRESSES: Dict[int, Tuple["weakref.ref[Any]", Any]] = {}
_SEEN: "weakref.WeakSet[Any]" = weakref.WeakSet()  # routers whose pools are in _ADDRESSES


def _remember(pool: Any, address: Any) -> None:
    key, table = id(pool), _ADDRESSES
    table[key] = (weakref.ref(pool, lambda _, key=key, table=table: table.pop(key, None)), address)


def _learn(router: Any) -> None:
    """Maps the pools of ``router``'s pool providers to their ``ServerAddress``."""
    _SEEN.add(router)
    for provider in vars(router).values():
        server_pool = getattr(provider, "_server_pool", None)  # HashRing / NonConsistentHash
        if isinstance(server_pool, dict):
            for address, pool in server_pool.items():
                _remember(pool, address)
        pool = getattr(provider, "_connection_pool", None)  # HostConnectionPoolProvider
        address = getattr(provider, "_server_address", None)
        if pool is not None and address is not None:
            _remember(pool, address)


def _server(pool: Any, client: Any) -> Any:
    """The ``ServerAddress`` of ``pool`` (``client`` is the app's client whose router chose it,
    if known), or what the pool says of its server for a router or pool built by hand."""
    entry = _ADDRESSES.get(id(pool))
    if entry is not None and entry[0]() is pool:
        return entry[1]
    router = getattr(client, "router", None)
    if router is not None and router not in _SEEN:
        _learn(router)
        return _server(pool, None)
    return pool.server


def _address(server: Any) -> Any:
    """``(host, port)`` or a unix socket path, for :func:`_server`'s answer."""
    if isinstance(server, str):  # "host:port" or "[v6]:port"
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            return None  # a server_id: no host rather than a wrong one
        host, port = host.strip("[]"), int(port)
    else:
        host, port = server.host, server.port
    if "/" in host:  # a unix socket, ServerAddress(host="/path.sock", port=0)
        return host
    return host, port


# --- the libraries ----------------------------------------------------------------------


def _hit(response: Any) -> bool:
    """A key the server has: a value that is not a lease placeholder (won or lost), or
    ``HD`` (``Success``) to an ``mg`` that asked for no value."""
    if type(response) is not Value:
        return type(response) is Success
    win = response.flags.win
    return not win and not (win is False and response.size == 0)


_SWALLOWED = "meta_memcache.errors.MemcacheServerError"
_REPLIES = {Miss: NOT_FOUND, NotStored: NOT_STORED, Conflict: EXISTS}


def _result_name(result: Any) -> str:
    return "MISS_DUE_TO_ERROR" if result is MISS_DUE_TO_ERROR else "NOT_STORED_DUE_TO_ERROR"


class MetaMemcache(core.Library):
    """One round trip of ``DefaultExecutor`` to a server pool (``multi``: of a multi-get)."""

    inner = False  # no hook inside a round trip reads the call

    def __init__(self, multi: bool):
        super().__init__()
        # EXECUTOR's rows of this kind of round trip, keyed by the id of the enum member (alive
        # as long as its class): hashing a member is a Python call (Enum.__hash__).
        self.by_wire = {id(wire): cmd for (wire, of_multi), cmd in EXECUTOR.items() if of_multi is multi}

    def command_of(self, args, kwargs) -> Command:
        """The executor runs every command: named after the wire command it sends."""
        return self.by_wire[id(args[1] if len(args) > 1 else kwargs["command"])]

    def server(self, call, args, kwargs):
        try:
            outer = call.outer
            return _server(args[0] if args else kwargs["pool"], outer.instance if outer is not None else None)
        except Exception:
            log.debug("could not find the server of a meta-memcache pool", exc_info=True)
            return None

    def found(self, call, result) -> Optional[int]:
        """Counted from the responses: a stored None is a hit, a lease placeholder is not.
        None when the server could not be asked (a swallowed failure)."""
        if isinstance(result, dict):
            responses = result.values()
            if any(r is MISS_DUE_TO_ERROR for r in responses):
                return None
            return sum(1 for response in responses if _hit(response))
        if result is MISS_DUE_TO_ERROR:
            return None
        return 1 if _hit(result) else 0

    def address(self, server):
        return _address(server)

    def noreply(self, call, args, kwargs) -> bool:
        """The executor's ``RequestFlags`` say it: ``no_reply``."""
        return bool(getattr(commands.argument(args, kwargs, call.command.noreply), "no_reply", False))

    def reply(self, call, result) -> Optional[str]:
        """A miss, from the response's type (a read's miss is its db.row_count)."""
        return _REPLIES.get(type(result))

    def failure(self, call, result) -> Optional[core.Failure]:
        if result is MISS_DUE_TO_ERROR or result is NOT_STORED_DUE_TO_ERROR:
            return _SWALLOWED, "%s (raise_on_server_error is off)" % _result_name(result)
        if isinstance(result, dict):
            failed = [r for r in result.values() if r is MISS_DUE_TO_ERROR or r is NOT_STORED_DUE_TO_ERROR]
            if failed:
                return _SWALLOWED, "%s for %d of %d keys (raise_on_server_error is off)" % (
                    _result_name(failed[0]),
                    len(failed),
                    len(result),
                )
        return None


class MetaMemcacheClient(core.Library):
    """The app's call on a client, which its router sends to the executor."""


LIBRARY, MULTI_LIBRARY = MetaMemcache(multi=False), MetaMemcache(multi=True)
CLIENT_LIBRARY = MetaMemcacheClient()


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    for cmd in COMMANDS:
        yield HighLevelCommandsMixin, cmd.method, core.as_function(core.outer, CLIENT_LIBRARY, cmd)
    # Below the high-level methods on every command: plain functions (core.as_function).
    for cmd in META:
        yield MetaCommandsMixin, cmd.method, core.as_function(core.outer, CLIENT_LIBRARY, cmd)
    yield DefaultExecutor, "exec_on_pool", core.as_function(core.trace, LIBRARY, None)
    yield DefaultExecutor, "exec_multi_on_pool", core.as_function(core.trace, MULTI_LIBRARY, None)


def patch() -> None:
    wrapping.wrap_all(targets())


def unpatch() -> None:
    wrapping.unwrap_all(targets())
