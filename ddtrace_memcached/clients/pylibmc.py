"""pylibmc: one span per call of a ``pylibmc.Client`` command method.

The command methods live on the C base class ``_pylibmc.client``; they are wrapped on
``pylibmc.client.Client`` (at class level, where they are inherited), so subclasses,
clones, pooled clients and clients created before patching are traced, ``isinstance``
keeps working, and ``c[key]``, ``c[key] = v``, ``del c[key]`` and ``key in c`` (which
call ``get``/``set``/``delete``) give one span of that command.

libmemcached picks the server in C: ``client.hash(key)`` is the index of the key's
server in ``client.addresses``, which is how a span names its host. A multi-key call is
one span, sent by libmemcached to every server its keys live on: it names the host only
when all its keys live on one server, else no host and the metric ``memcached.servers``
(``delete_multi``'s per-key ``delete`` calls are part of its span, as the core makes
every command that a command of the same client calls). A pool's override
covers the commands of ``with pool.reserve() as mc:``; a clone keeps its client's.

While patched, ddtrace's built-in ``pylibmc`` integration is kept quiet
(:func:`_silence_builtin`), and :func:`unpatch` hands back to it.
"""

import contextlib
from functools import partial
import logging
import re
from typing import Any
from typing import Iterator
from typing import Optional

import pylibmc
import pylibmc.client
import pylibmc.pools
import wrapt

from .. import commands
from .. import core
from .. import overrides
from .. import registry
from .. import wrapping
from ..commands import EXISTS
from ..commands import NOT_FOUND
from ..commands import NOT_FOUND_IF_FALSE
from ..commands import NOT_STORED_IF_FALSE
from ..commands import Arg
from ..commands import Keys
from ..commands import Read
from ..commands import command
from ..commands import for_version
from ..commands import parse_version

log = logging.getLogger("ddtrace.contrib.memcached")

_MAPPING = Arg(0, "keys")  # set_multi(keys={...}): the mapping's keyword
# A multi-key method's ``key_prefix``, when it is passed by position.
_PREFIX_1 = Arg(1, "key_prefix")
_PREFIX_2 = Arg(2, "key_prefix")

# Every ``*_multi`` method is reported as ``*_many``, as pymemcache's aliases are.
ALL_COMMANDS = (
    # storage
    command("set", Keys.ONE),
    command("set_multi", Keys.MAPPING, resource="set_many", key=_MAPPING, prefix=_PREFIX_2),
    command("add", Keys.ONE, misses=NOT_STORED_IF_FALSE),
    command("add_multi", Keys.MAPPING, resource="add_many", key=_MAPPING, prefix=_PREFIX_2),
    command("replace", Keys.ONE, misses=NOT_STORED_IF_FALSE),
    command("append", Keys.ONE, misses=NOT_STORED_IF_FALSE),
    command("prepend", Keys.ONE, misses=NOT_STORED_IF_FALSE),
    command("cas", Keys.ONE, misses=((False, EXISTS),)),  # a missing key raises NotFound
    # retrieval: get(key, default) takes the sentinel; gets gives (None, None) on a miss
    command("get", Keys.ONE, Read.ONE),
    command("gets", Keys.ONE, Read.VALUE),
    command("get_multi", Keys.MANY, Read.MANY, resource="get_many", prefix=_PREFIX_1),
    # deletion, arithmetic, touch
    command("delete", Keys.ONE, misses=NOT_FOUND_IF_FALSE),
    command("delete_multi", Keys.MANY, resource="delete_many", prefix=_PREFIX_1, nests=True),
    command("incr", Keys.ONE),  # a missing key raises NotFound
    command("decr", Keys.ONE),
    command("incr_multi", Keys.MANY, resource="incr_many", prefix=_PREFIX_1),
    command("touch", Keys.ONE, misses=NOT_FOUND_IF_FALSE),
    # every server
    command("get_stats", Keys.ARGS, resource="stats"),
    command("flush_all"),
)
"""Every method of ``pylibmc.Client`` that talks to a server."""

APP_COMMANDS = ALL_COMMANDS
"""What the app calls, in every release: the README's commands table is generated from it."""

_EVERY_SERVER = frozenset({"get_stats", "flush_all"})


# pylibmc.Client may be the built-in integration's proxy class: pylibmc.client.Client never is.
Client = pylibmc.client.Client
VERSION = parse_version(registry.client_version(__name__))
COMMANDS = for_version(ALL_COMMANDS, VERSION)


# --- which server -----------------------------------------------------------------------


def _key(key: Any, prefix: Any = None) -> Optional[bytes]:
    """The key as libmemcached hashes it, or None for what pylibmc refuses anyway."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, bytes):
        return None
    if prefix:
        prefix = prefix.encode("utf-8") if isinstance(prefix, str) else prefix
        if not isinstance(prefix, bytes):
            return None
        return prefix + key
    return key


# pylibmc's lead "error %d from %.32s(%.32s)": the key, cut to 32 bytes, in parentheses,
# then maybe ": " and libmemcached's message (which may hold parentheses of its own). A key
# may hold ")" or "): " itself: the last closing parenthesis before ": " is taken, else one
# that ends the message, else (not pylibmc's format after all) everything after the lead.
QUOTED_KEY = re.compile(r"\Aerror -?\d+ from \w+\((?:(.{0,32})\)(?=: )|(.{0,32})\)\Z|(.*))", re.S)


class Pylibmc(core.Library):
    inner = False  # no hooks inside: only delete_multi nests (its per-key deletes)
    key_errors = (pylibmc.Error,)  # "error 3 from memcached_get(<key>): CONNECTION FAILURE"
    key_quote = QUOTED_KEY

    def server(self, call, args, kwargs):
        try:
            return self._server(call.instance, call.command, args, kwargs)
        except Exception:
            log.debug("could not tell the server of pylibmc %s", call.command.method, exc_info=True)
            return None

    @staticmethod
    def _server(instance, cmd, args, kwargs):
        addresses = instance.addresses
        count = len(addresses)
        if count == 1:
            return addresses[0]
        if not count:
            return None
        if cmd.method in _EVERY_SERVER:
            return core.Fanout(count)
        if cmd.keys is Keys.ONE:
            key = _key(commands.key_of(cmd, args, kwargs))
            return None if key is None else addresses[instance.hash(key)]
        keys = commands.keys_of(cmd, args, kwargs)
        if keys is None:
            return None
        prefix = commands.argument(args, kwargs, cmd.prefix)
        found = set()
        for key in keys:
            wire = _key(key, prefix)
            if wire is None:
                return None
            found.add(instance.hash(wire))
            if len(found) == count:
                break
        if len(found) == 1:
            return addresses[found.pop()]
        return core.Fanout(len(found)) if found else None

    def address(self, server):
        """``(host, port)`` or a unix socket path, for one of ``client.addresses``."""
        if isinstance(server, (tuple, list)) and len(server) == 3:  # (type, address, port), as is
            kind, address, port = server
        else:
            kind, address, port, _ = pylibmc.client.translate_server_spec(server)
        return address if kind == pylibmc.server_type_unix else (address, port)

    def raised_reply(self, call, exc):
        # incr/decr/cas of a missing key: "error 16 from memcached_incr(k): NOT FOUND"
        return NOT_FOUND if isinstance(exc, pylibmc.NotFound) else None

    def found(self, call, result):
        if call.command.method == "gets":  # (value, cas); a stored None has a cas
            return 0 if isinstance(result, tuple) and result[1:] == (None,) else 1
        return super().found(call, result)


LIBRARY = Pylibmc()


# --- clones and pools -------------------------------------------------------------------


@wrapping.ours
def clone_with_overrides(wrapped, instance, args, kwargs):
    """wrapt wrapper for ``Client.clone``: the clone keeps the client's override and Pin,
    so a pool filled with clones of a client (``ClientPool.fill``, ``ThreadMappedPool``)
    reports as that client does."""
    clone = wrapped(*args, **kwargs)
    try:
        for name in (overrides.OVERRIDE_ATTR, overrides.PIN_ATTR):
            value = vars(instance).get(name)
            if value is not None and name not in vars(clone):
                vars(clone)[name] = value
    except Exception:
        log.debug("could not copy the overrides of a pylibmc client to its clone", exc_info=True)
    return clone


@wrapping.ours
def reserve_within(wrapped, instance, args, kwargs):
    """wrapt wrapper for a pool's ``reserve``: the pool's override and Pin cover the
    commands of ``with pool.reserve() as mc:``."""
    return _reserved(wrapped(*args, **kwargs), instance)


@contextlib.contextmanager
def _reserved(reservation, pool) -> Iterator[Any]:
    with reservation as client, overrides.covering(pool):
        yield client


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    for cmd in COMMANDS:
        # delete_multi calls delete per key (in C): those calls are part of its span (core.trace).
        yield Client, cmd.method, partial(core.trace, LIBRARY, cmd)
    yield Client, "clone", clone_with_overrides
    yield pylibmc.pools.ClientPool, "reserve", reserve_within
    yield pylibmc.pools.ThreadMappedPool, "reserve", reserve_within


def patch() -> None:
    _silence_builtin()
    wrapping.wrap_all(targets())


def unpatch() -> None:
    wrapping.unwrap_all(targets())
    _restore_builtin()


# --- ddtrace's built-in pylibmc integration --------------------------------------------
#
# It replaces ``pylibmc.Client`` with ``TracedClient``, a ``wrapt.ObjectProxy`` whose
# methods trace in ``_span``. While ours is patched:
# - ``pylibmc.Client`` is the real class again;
# - proxies that already exist forward their calls untraced (``_span`` gives no span),
#   to the real client's methods, which make our spans;
# - its ``patch()`` does nothing.
# Unpatching puts everything back as it was, so the built-in resumes.

_replaced = wrapping.Replaced()


def _no_span(wrapped, instance, args, kwargs):
    """The built-in's ``TracedClient._span``, without a span: the command runs untraced."""
    return instance._no_span()


def _skip_patch(wrapped, instance, args, kwargs):
    log.debug("ddtrace's pylibmc integration not patched: the memcached integration is")


def _silence_builtin() -> None:
    if _replaced:
        return
    try:
        from ddtrace.contrib.internal.pylibmc import client as builtin_client
        from ddtrace.contrib.internal.pylibmc import patch as builtin_patch
    except ImportError:
        return
    if getattr(pylibmc, "_datadog_patch", False):
        _replaced.set(pylibmc, "_datadog_patch", False)
        _replaced.set(pylibmc, "Client", Client)
    _replaced.set(builtin_patch, "patch", wrapt.FunctionWrapper(builtin_patch.patch, _skip_patch))
    traced = getattr(builtin_client, "TracedClient", None)
    if traced is not None and "_span" in vars(traced) and hasattr(traced, "_no_span"):
        _replaced.set(traced, "_span", wrapt.FunctionWrapper(vars(traced)["_span"], _no_span))


def _restore_builtin() -> None:
    _replaced.restore()
