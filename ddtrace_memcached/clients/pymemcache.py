"""pymemcache: one span per command that a ``Client`` sends to its server.

Every command method of ``pymemcache.client.base.Client`` is wrapped at class level, so
subclasses, ``pymemcache.Client`` and clients created before patching are traced, and
``isinstance`` keeps working. ``PooledClient``, ``HashClient`` and ``RetryingClient``
create no spans: they call ``Client`` methods, and only pass their overrides (and retry
attempts) down. ``HashClient``'s spans thus name the node each key went to. A
``PooledClient`` passes them by adopting the clients it creates (:func:`adopting`),
not by a wrapper on each of its methods: a pooled command costs no more than a plain one.

While patched, ddtrace's built-in ``pymemcache`` integration is kept quiet
(:func:`_silence_builtin`), and :func:`unpatch` hands back to it.
"""

import dataclasses
from functools import partial
import gc
import logging
import sys
from typing import Iterator

from ddtrace.trace import tracer
import pymemcache
import pymemcache.client.base
from pymemcache.client.base import PooledClient
import pymemcache.client.hash
from pymemcache.exceptions import MemcacheIllegalInputError
import wrapt

from .. import commands
from .. import core
from .. import overrides
from .. import registry
from .. import wrapping
from ..commands import EXISTS
from ..commands import NOT_FOUND
from ..commands import NOT_FOUND_IF_FALSE
from ..commands import NOT_FOUND_IF_NONE
from ..commands import NOT_STORED_IF_FALSE
from ..commands import Arg
from ..commands import Keys
from ..commands import Read
from ..commands import command
from ..commands import for_version
from ..commands import parse_version

log = logging.getLogger("ddtrace.contrib.memcached")

# Where each command's ``noreply`` sits; None (most commands' default) is the client's
# ``default_noreply``, while incr, decr and cas default to False.
_NOREPLY_1, _NOREPLY_2, _NOREPLY_3 = (Arg(i, "noreply") for i in (1, 2, 3))
_WAITS_2, _WAITS_4 = Arg(2, "noreply", False), Arg(4, "noreply", False)
_CAS_MISSES = ((None, NOT_FOUND), (False, EXISTS))

ALL_COMMANDS = (
    # storage
    command("set", Keys.ONE, noreply=_NOREPLY_3),
    command("set_many", Keys.MAPPING, noreply=_NOREPLY_2),
    command("set_multi", Keys.MAPPING, resource="set_many", noreply=_NOREPLY_2),
    command("add", Keys.ONE, noreply=_NOREPLY_3, misses=NOT_STORED_IF_FALSE),
    command("replace", Keys.ONE, noreply=_NOREPLY_3, misses=NOT_STORED_IF_FALSE),
    command("append", Keys.ONE, noreply=_NOREPLY_3, misses=NOT_STORED_IF_FALSE),
    command("prepend", Keys.ONE, noreply=_NOREPLY_3, misses=NOT_STORED_IF_FALSE),
    command("cas", Keys.ONE, noreply=_WAITS_4, misses=_CAS_MISSES),
    # retrieval
    command("get", Keys.ONE, Read.ONE),
    command("get_many", Keys.MANY, Read.MANY),
    command("get_multi", Keys.MANY, Read.MANY, resource="get_many"),
    command("gets", Keys.ONE, Read.ONE_WITH_CAS),
    command("gets_many", Keys.MANY, Read.MANY),
    # deletion, arithmetic, touch
    command("delete", Keys.ONE, noreply=_NOREPLY_1, misses=NOT_FOUND_IF_FALSE),
    command("delete_many", Keys.MANY, noreply=_NOREPLY_1),
    command("delete_multi", Keys.MANY, resource="delete_many", noreply=_NOREPLY_1),
    command("incr", Keys.ONE, noreply=_WAITS_2, misses=NOT_FOUND_IF_NONE),
    command("decr", Keys.ONE, noreply=_WAITS_2, misses=NOT_FOUND_IF_NONE),
    command("touch", Keys.ONE, noreply=_NOREPLY_2, misses=NOT_FOUND_IF_FALSE),
    # server
    command("stats", Keys.ARGS),
    command("version"),
    command("flush_all", noreply=_NOREPLY_1),
    command("quit"),
    command("cache_memlimit"),
    command("shutdown", since=(3, 5)),
    command("raw_command", Keys.RAW, since=(4, 0)),
)
"""Every method of ``pymemcache.client.base.Client`` that talks to a server."""

APP_COMMANDS = ALL_COMMANDS
"""What the app calls, in every release: the README's commands table is generated from it."""


_BUILTIN_CLIENT = "ddtrace.contrib.internal.pymemcache.client"


def original_classes() -> tuple:
    """pymemcache's own ``Client`` and ``HashClient``, even while the built-in's proxies stand in."""
    builtin_client = sys.modules.get(_BUILTIN_CLIENT)
    if builtin_client is not None:
        return builtin_client._Client, builtin_client._HashClient
    return pymemcache.client.base.Client, pymemcache.client.hash.HashClient


# Not imported by name: ddtrace's built-in integration may have put proxies there.
Client, HashClient = original_classes()
VERSION = parse_version(registry.client_version(__name__))
HAS_RETRYING_CLIENT = VERSION >= (3, 5)
COMMANDS = for_version(ALL_COMMANDS, VERSION)

if HAS_RETRYING_CLIENT:
    from pymemcache.client.retrying import RetryingClient


class _Keys(core.Library):
    """What pymemcache's clients share: a key prefix, and errors that quote the key."""

    key_errors = (MemcacheIllegalInputError,)  # "Key contains whitespace: b'...'" and the like

    def key_prefix(self, instance) -> bytes:
        return getattr(instance, "key_prefix", b"")


class Pymemcache(_Keys):
    inner = False  # no hooks inside

    def server(self, call, args, kwargs):
        return call.instance.server

    def noreply(self, call, args, kwargs):
        noreply = commands.argument(args, kwargs, call.command.noreply)
        return bool(call.instance.default_noreply if noreply is None else noreply)


FAILED_SERVER = "pymemcache.FailedServer"
"""``error.type`` of a ``HashClient`` node that its failed-node state answered for: the
command got the default (``None``, ``False``...) without a request."""
NO_SERVER = "pymemcache.NoServerAvailable"
"""``error.type`` of a ``HashClient`` call that found no node alive (``ignore_exc``): it got
the default without a request."""


class HashRing(_Keys):
    """``HashClient``: the app's call. Its nodes' commands make the spans, under their own
    names (``delete_many`` sends ``delete`` per key); what it answers itself gets a span too."""

    renames = False

    def unspanned(self, call, args, kwargs, result):
        """The nodes the call skipped: those in their retry window (``_failed_clients``, within
        ``retry_timeout``), answered with the default; or no node alive at all."""
        ring = call.instance
        failed = ring._failed_clients
        if call.spans and not failed:  # every node it needed was asked
            return []
        keys = commands.keys_of(call.command, args, kwargs)
        if keys is None:  # every node (flush_all...), or keys we may not read
            nodes = list(ring.clients) if call.command.keys is Keys.NONE else []
        else:
            nodes = [ring.hasher.get_node(key) for key in keys]
        skipped = {}
        for node in nodes:
            client = ring.clients.get(node) if node is not None else None
            server = getattr(client, "server", None)
            if server is None:
                skipped[None] = (NO_SERVER, "All servers seem to be down right now: HashClient returned the default")
            elif server in failed and server not in call.servers:
                skipped[server] = (
                    FAILED_SERVER,
                    "%s failed %d time(s) and is not retried for %ss: HashClient returned the default"
                    % (node, failed[server].get("attempts", 0) + 1, ring.retry_timeout),
                )
        if call.spans:
            skipped.pop(None, None)  # keys with no node, beside keys that were sent
        if not skipped and not call.spans:
            return [(None, None)]  # nothing to send (get_many([])): the call itself
        return list(skipped.items())


LIBRARY = Pymemcache()
HASH_RING = HashRing()


@wrapping.ours
def within_retry(wrapped, instance, args, kwargs):
    """wrapt wrapper for ``RetryingClient._retry(name, func, *args)``: numbers each attempt
    (each call of ``func``), from 1, for the spans it causes."""
    try:
        if not tracer.enabled or len(args) < 2:
            return wrapped(*args, **kwargs)
        try:
            scope = overrides.for_span(instance)
        except Exception:
            log.debug("could not read the overrides of %r", type(instance), exc_info=True)
            return wrapped(*args, **kwargs)
        return wrapped(args[0], _numbered(scope, args[1]), *args[2:], **kwargs)
    finally:
        args = kwargs = None  # noqa: F841 (see core.trace)


def _numbered(scope: overrides.Scope, func):
    """``func``, whose calls are the attempts of a ``RetryingClient``."""
    attempts = 0

    def attempt(*args, **kwargs):
        nonlocal attempts
        attempts += 1
        token = overrides.enter_scope(dataclasses.replace(scope, attempt=attempts))
        try:
            return func(*args, **kwargs)
        finally:
            overrides.leave(token)
            args = kwargs = None  # noqa: F841 (see core.trace)

    return attempt


@wrapping.ours
def adopting(wrapped, instance, args, kwargs):
    """wrapt wrapper for ``PooledClient._create_client``: the pool's override and Pin
    apply to the spans of the clients it creates (see :func:`overrides.adopt`).

    A pool binds ``_create_client`` when it is made: pools made before ``patch()`` are
    found by :func:`patch_existing`.
    """
    client = wrapped(*args, **kwargs)
    try:
        overrides.adopt(client, instance)
    except Exception:
        log.debug("could not pass the overrides of %r to its clients", type(instance), exc_info=True)
    return client


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    for cmd in COMMANDS:
        yield Client, cmd.method, partial(core.trace, LIBRARY, cmd)
        yield HashClient, cmd.method, partial(core.outer, HASH_RING, cmd)
    yield PooledClient, "_create_client", adopting
    if HAS_RETRYING_CLIENT:
        yield RetryingClient, "_retry", within_retry


def patch() -> None:
    _silence_builtin()
    wrapping.wrap_all(targets())
    if HAS_RETRYING_CLIENT:
        # Its __getattr__ answers ddtrace's Pin hooks with functions of the inner client.
        overrides.add_pin_accessors(RetryingClient)


def patch_existing() -> None:
    """Adopts the clients of pools that the app made before ``patch()``, and points those
    pools at the wrapped ``_create_client``. Runs once, only when pymemcache was imported
    before ``patch()``: it goes through the objects the garbage collector tracks."""
    for obj in gc.get_objects():
        # type(), not isinstance(): a lazy object's __class__ would evaluate it.
        if issubclass(type(obj), PooledClient):
            try:
                pool = obj.client_pool
                pool._obj_creator = obj._create_client
                for client in pool.used + pool.free:
                    overrides.adopt(client, obj)
            except Exception:
                log.debug("could not pass the overrides of a %r made before patch()", type(obj), exc_info=True)


def unpatch() -> None:
    wrapping.unwrap_all(targets())
    if HAS_RETRYING_CLIENT:
        overrides.remove_pin_accessors(RetryingClient)
    _restore_builtin()


# --- ddtrace's built-in pymemcache integration -----------------------------------------
#
# It swaps pymemcache's classes for ``wrapt.ObjectProxy`` subclasses and traces in
# ``_WrapperBase._trace_function_as_command``. While ours is patched:
# - its classes are swapped back (its own ``unpatch`` has a typo that breaks ``HashClient``);
# - ``HashClient.client_class``, which its module points at its proxy, is reset;
# - proxies that already exist forward their calls untraced, to our spans;
# - its ``patch()`` does nothing.
# Unpatching puts everything back as it was, so the built-in resumes.

_replaced = wrapping.Replaced()


def _bypass_trace(wrapped, instance, args, kwargs):
    """Runs the command the built-in was about to trace, without its span."""
    func = args[0]
    return func(*args[2:], **kwargs)


def _skip_patch(wrapped, instance, args, kwargs):
    log.debug("ddtrace's pymemcache integration not patched: the memcached integration is")


def _silence_builtin() -> None:
    if _replaced:
        return
    # Importing the built-in's client module points HashClient at its proxy.
    client_class = HashClient.client_class
    try:
        from ddtrace.contrib.internal.pymemcache import client as builtin_client
        from ddtrace.contrib.internal.pymemcache import patch as builtin_patch
    except ImportError:
        return
    _replaced.save(HashClient, "client_class", client_class)
    HashClient.client_class = Client
    if getattr(pymemcache, "_datadog_patch", False):
        _replaced.set(pymemcache, "_datadog_patch", False)
        _replaced.set(pymemcache.client.base, "Client", Client)
        _replaced.set(pymemcache.client.hash, "Client", Client)
        _replaced.set(pymemcache.client.hash, "HashClient", HashClient)
    _replaced.set(builtin_patch, "patch", wrapt.FunctionWrapper(builtin_patch.patch, _skip_patch))
    base = builtin_client._WrapperBase
    bypass = wrapt.FunctionWrapper(base._trace_function_as_command, _bypass_trace)
    _replaced.set(base, "_trace_function_as_command", bypass)


def _restore_builtin() -> None:
    _replaced.restore()
