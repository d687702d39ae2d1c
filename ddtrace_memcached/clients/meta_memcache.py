"""meta-memcache: one span per round trip that ``DefaultExecutor`` makes to a server pool.

meta-memcache routes each command (or each server's share of a ``multi_get``) to a
``ConnectionPool`` and runs it in ``DefaultExecutor.exec_on_pool`` /
``exec_multi_on_pool``: those two are traced, so every span names the one server it
talked to, and a gutter failover or a lease retry is a span of its own.

The executor only sees ``mg``/``ms``/``md``/``ma``. The methods the app calls
(``get``, ``set``, ``multi_get``..., on ``HighLevelCommandsMixin`` and
``MetaCommandsMixin``, so ``CacheClient``, its subclasses and the ``extras`` wrappers)
are wrapped to put their command, and the client's overrides and Pin, in a context
variable for the executor's spans. The outermost call names the spans (``get_typed``
calls ``get``; the app called ``get_typed``).

A pool knows its server only as ``str(ServerAddress)``, which is the ``server_id`` when
one is set: pools are mapped back to their ``ServerAddress`` through the client's pool
providers (see :func:`_address`). With ``raise_on_server_error=False`` the executor
returns ``MISS_DUE_TO_ERROR`` / ``NOT_STORED_DUE_TO_ERROR`` instead of raising: such
spans are marked as errors, the result is left as it is.
"""

import contextvars
from functools import partial
import logging
from typing import Any
from typing import Iterator
from typing import Optional
from typing import Tuple
import weakref

from ddtrace.trace import tracer
import meta_memcache
from meta_memcache.commands.high_level_commands import HighLevelCommandsMixin
from meta_memcache.commands.meta_commands import MetaCommandsMixin
from meta_memcache.executors.default import DefaultExecutor
from meta_memcache.protocol import MISS_DUE_TO_ERROR
from meta_memcache.protocol import NOT_STORED_DUE_TO_ERROR
from meta_memcache.protocol import Success
from meta_memcache.protocol import Value

from .. import commands
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

SUPPORTED = ">=4.0"

# Multi-key reads follow the cross-client convention (pymemcache's get_multi -> get_many):
# multi_X is reported as X_many. Keys.ONE / Keys.MANY only say what is read; the keys of a
# span are those the executor sent to its server (see MetaMemcache.query).
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

_BY_WIRE = {b"mg": META[0], b"ms": META[2], b"md": META[3], b"ma": META[4]}
_MULTI_GET = META[1]


def get_version() -> str:
    return getattr(meta_memcache, "__version__", "")


VERSION = parse_version(get_version())
COMMANDS = for_version(HIGH_LEVEL, VERSION)

# (the app's command, the innermost client object on the way to the executor) or None.
_CALL: contextvars.ContextVar = contextvars.ContextVar("ddtrace_memcached_meta_memcache", default=None)


# --- which server: pool -> ServerAddress ----------------------------------------------

_ADDRESSES: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
_SEEN: "weakref.WeakSet[Any]" = weakref.WeakSet()  # routers whose pools are in _ADDRESSES


def _learn(router: Any) -> None:
    """Maps the pools of ``router``'s pool providers to their ``ServerAddress``."""
    _SEEN.add(router)
    for provider in vars(router).values():
        server_pool = getattr(provider, "_server_pool", None)  # HashRing / NonConsistentHash
        if isinstance(server_pool, dict):
            for address, pool in server_pool.items():
                _ADDRESSES[pool] = address
        pool = getattr(provider, "_connection_pool", None)  # HostConnectionPoolProvider
        address = getattr(provider, "_server_address", None)
        if pool is not None and address is not None:
            _ADDRESSES[pool] = address


def _address(pool: Any) -> Any:
    """``(host, port)`` or a unix socket path, for the tags of a span on ``pool``."""
    address = _ADDRESSES.get(pool)
    if address is None:
        call = _CALL.get()
        router = getattr(call[1], "router", None) if call is not None else None
        if router is not None and router not in _SEEN:
            _learn(router)
            address = _ADDRESSES.get(pool)
    if address is not None:
        host, port = address.host, address.port
    else:  # a router or pool built by hand: what the pool says, "host:port" or "[v6]:port"
        host, _, port = pool.server.rpartition(":")
        if not host or not port.isdigit():
            return None  # a server_id: no host rather than a wrong one
        host, port = host.strip("[]"), int(port)
    if "/" in host:  # a unix socket, ServerAddress(host="/path.sock", port=0)
        return host
    return host, port


# --- the library --------------------------------------------------------------------


def _pool(args: tuple, kwargs: dict) -> Any:
    return args[0] if args else kwargs["pool"]


def _hit(response: Any) -> bool:
    """A key the server has: a value that is not a lease placeholder (won or lost), or
    ``HD`` (``Success``) to an ``mg`` that asked for no value."""
    if type(response) is not Value:
        return type(response) is Success
    win = response.flags.win
    return not win and not (win is False and response.size == 0)


def _key_text(key: Any) -> str:
    key = getattr(key, "key", key)  # a Key: the app's key, not the encoded wire key
    if isinstance(key, bytes):
        return key.decode("utf-8", "backslashreplace")
    return str(key)


class MetaMemcache(core.Library):
    name = "meta_memcache"

    def server(self, instance, command, args, kwargs):
        try:
            return _address(_pool(args, kwargs))
        except Exception:
            log.debug("could not find the server of a meta-memcache pool", exc_info=True)
            return None

    def found(self, command: Command, result: Any) -> Optional[int]:
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

    def failure(self, instance, command, result) -> Optional[Tuple[str, str]]:
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

    def query(self, instance, command, args, kwargs) -> str:
        """The command and the keys sent to this span's server, as the app gave them."""
        if len(args) > 2 or "key" in kwargs:
            keys = [args[2] if len(args) > 2 else kwargs["key"]]
        else:
            key_values = args[2] if len(args) > 2 else kwargs.get("key_values") or ()
            keys = [key for key, _ in key_values]
        parts, length = [command.resource], len(command.resource)
        for key in keys:
            text = _key_text(key)
            parts.append(text)
            length += len(text) + 1
            if length > commands.QUERY_MAX_LENGTH:
                break
        text = " ".join(parts)
        if len(text) > commands.QUERY_MAX_LENGTH:
            text = text[: commands.QUERY_MAX_LENGTH - len(commands.TRUNCATED)] + commands.TRUNCATED
        return text


_SWALLOWED = "meta_memcache.errors.MemcacheServerError"


def _result_name(result: Any) -> str:
    return "MISS_DUE_TO_ERROR" if result is MISS_DUE_TO_ERROR else "NOT_STORED_DUE_TO_ERROR"


LIBRARY = MetaMemcache()


# --- the wrappers ---------------------------------------------------------------------


@wrapping.ours
def within_call(cmd: Command, wrapped, instance, args, kwargs):
    """For the app-facing methods: names the executor's spans, and applies the client's
    overrides and Pin to them. The outermost call keeps its name; an inner client (a
    ``ClientWrapper``'s ``CacheClient``) still adds its own overrides."""
    if not tracer.enabled:  # no span to name
        return wrapped(*args, **kwargs)
    call = _CALL.get()
    token = _CALL.set((cmd if call is None else call[0], instance))
    try:
        return overrides.within(wrapped, instance, args, kwargs)
    finally:
        _CALL.reset(token)


@wrapping.ours
def traced_exec(multi: bool, wrapped, instance, args, kwargs):
    """For ``exec_on_pool`` / ``exec_multi_on_pool``: the span of one server round trip."""
    if not tracer.enabled:
        return wrapped(*args, **kwargs)
    call = _CALL.get()
    if call is not None:
        cmd = call[0]
    else:  # the executor used without a client: name the wire command
        try:
            wire = (args[1] if len(args) > 1 else kwargs["command"]).value
            cmd = _MULTI_GET if multi and wire == b"mg" else _BY_WIRE[wire]
        except Exception:
            log.debug("could not name a meta-memcache command", exc_info=True)
            return wrapped(*args, **kwargs)
    return core.trace(LIBRARY, cmd, wrapped, instance, args, kwargs)


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    for cmd in COMMANDS:
        yield HighLevelCommandsMixin, cmd.method, partial(within_call, cmd)
    for cmd in META:
        yield MetaCommandsMixin, cmd.method, partial(within_call, cmd)
    yield DefaultExecutor, "exec_on_pool", partial(traced_exec, False)
    yield DefaultExecutor, "exec_multi_on_pool", partial(traced_exec, True)


def patch() -> None:
    wrapping.wrap_all(targets())


def unpatch() -> None:
    wrapping.unwrap_all(targets())
