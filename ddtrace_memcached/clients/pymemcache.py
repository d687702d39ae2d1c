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

from functools import partial
import gc
import logging
import sys
from typing import Iterator

import pymemcache
import pymemcache.client.base
from pymemcache.client.base import PooledClient
import pymemcache.client.hash
from pymemcache.exceptions import MemcacheIllegalInputError
import wrapt

from .. import core
from .. import overrides
from .. import registry
from .. import wrapping
from ..commands import Keys
from ..commands import Read
from ..commands import command
from ..commands import for_version
from ..commands import parse_version

log = logging.getLogger("ddtrace.contrib.memcached")

ALL_COMMANDS = (
    # storage
    command("set", Keys.ONE),
    command("set_many", Keys.MAPPING),
    command("set_multi", Keys.MAPPING, resource="set_many"),
    command("add", Keys.ONE),
    command("replace", Keys.ONE),
    command("append", Keys.ONE),
    command("prepend", Keys.ONE),
    command("cas", Keys.ONE),
    # retrieval
    command("get", Keys.ONE, Read.ONE),
    command("get_many", Keys.MANY, Read.MANY),
    command("get_multi", Keys.MANY, Read.MANY, resource="get_many"),
    command("gets", Keys.ONE, Read.ONE_WITH_CAS),
    command("gets_many", Keys.MANY, Read.MANY),
    # deletion, arithmetic, touch
    command("delete", Keys.ONE),
    command("delete_many", Keys.MANY),
    command("delete_multi", Keys.MANY, resource="delete_many"),
    command("incr", Keys.ONE),
    command("decr", Keys.ONE),
    command("touch", Keys.ONE),
    # server
    command("stats", Keys.ARGS),
    command("version"),
    command("flush_all"),
    command("quit"),
    command("cache_memlimit"),
    command("shutdown", since=(3, 5)),
    command("raw_command", Keys.RAW, since=(4, 0)),
)
"""Every method of ``pymemcache.client.base.Client`` that talks to a server."""


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


class Pymemcache(core.Library):
    key_errors = (MemcacheIllegalInputError,)  # "Key contains whitespace: b'...'" and the like

    def server(self, call, args, kwargs):
        return call.instance.server

    def key_prefix(self, instance) -> bytes:
        return getattr(instance, "key_prefix", b"")


LIBRARY = Pymemcache()


@wrapping.ours
def within_retry(wrapped, instance, args, kwargs):
    """wrapt wrapper for ``RetryingClient._retry``: numbers each attempt, from 1."""
    if len(args) < 2:
        return wrapped(*args, **kwargs)
    try:
        scope = overrides.for_span(instance)
    except Exception:
        log.debug("could not read the overrides of %r", type(instance), exc_info=True)
        return wrapped(*args, **kwargs)
    name, func, rest = args[0], args[1], args[2:]
    attempts = 0

    def attempt(*a, **kw):
        nonlocal attempts
        attempts += 1
        return overrides.run_within(scope._replace(attempt=attempts), func, a, kw)

    return wrapped(name, attempt, *rest, **kwargs)


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
        yield HashClient, cmd.method, overrides.within
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
