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
(``delete_multi``'s per-key ``delete`` calls are part of its span). A pool's override
covers the commands of ``with pool.reserve() as mc:``; a clone keeps its client's.

While patched, ddtrace's built-in ``pylibmc`` integration is kept quiet
(:func:`_silence_builtin`), and :func:`unpatch` hands back to it.
"""

from collections.abc import Collection
from collections.abc import Mapping
import contextlib
import contextvars
from functools import partial
import logging
import re
from typing import Any
from typing import Dict
from typing import Iterator
from typing import Optional

import pylibmc
import pylibmc.client
import pylibmc.pools
import wrapt

from .. import commands
from .. import core
from .. import overrides
from .. import wrapping
from ..commands import REDACTED
from ..commands import Keys
from ..commands import Read
from ..commands import command
from ..commands import for_version
from ..commands import parse_version

log = logging.getLogger("ddtrace.contrib.memcached")

SUPPORTED = ">=1.6"

# Every ``*_multi`` method is reported as ``*_many``, as pymemcache's aliases are.
ALL_COMMANDS = (
    # storage
    command("set", Keys.ONE),
    command("set_multi", Keys.MAPPING, resource="set_many"),
    command("add", Keys.ONE),
    command("add_multi", Keys.MAPPING, resource="add_many"),
    command("replace", Keys.ONE),
    command("append", Keys.ONE),
    command("prepend", Keys.ONE),
    command("cas", Keys.ONE),
    # retrieval: get(key, default) takes the sentinel; gets gives (None, None) on a miss
    command("get", Keys.ONE, Read.ONE),
    command("gets", Keys.ONE, Read.VALUE),
    command("get_multi", Keys.MANY, Read.MANY, resource="get_many"),
    # deletion, arithmetic, touch
    command("delete", Keys.ONE),
    command("delete_multi", Keys.MANY, resource="delete_many"),
    command("incr", Keys.ONE),
    command("decr", Keys.ONE),
    command("incr_multi", Keys.MANY, resource="incr_many"),
    command("touch", Keys.ONE),
    # every server
    command("get_stats", Keys.ARGS, resource="stats"),
    command("flush_all"),
)
"""Every method of ``pylibmc.Client`` that talks to a server."""

# Where a multi-key method takes ``key_prefix`` when it is passed by position.
_PREFIX_POSITION = {"get_multi": 1, "delete_multi": 1, "incr_multi": 1, "set_multi": 2, "add_multi": 2}
_EVERY_SERVER = frozenset({"get_stats", "flush_all"})


def get_version() -> str:
    return getattr(pylibmc, "__version__", "")


# pylibmc.Client may be the built-in integration's proxy class: pylibmc.client.Client never is.
Client = pylibmc.client.Client
VERSION = parse_version(get_version())
COMMANDS = for_version(ALL_COMMANDS, VERSION)


# --- which server -----------------------------------------------------------------------

_SERVERS: Dict[Any, Any] = {}  # server spec -> (host, port) or a unix socket path
_SERVERS_MAX = 1024


def _server(spec: Any) -> Any:
    """``(host, port)`` or a unix socket path, for one of ``client.addresses``."""
    try:
        server = _SERVERS.get(spec)
    except TypeError:  # unhashable: a list
        server = None
    if server is None:
        if isinstance(spec, (tuple, list)) and len(spec) == 3:  # (type, address, port), as is
            kind, address, port = spec
        else:
            kind, address, port, _ = pylibmc.client.translate_server_spec(spec)
        server = address if kind == pylibmc.server_type_unix else (address, port)
        if len(_SERVERS) >= _SERVERS_MAX:
            _SERVERS.clear()
        try:
            _SERVERS[spec] = server
        except TypeError:
            pass
    return server


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


def _multi_keys(command, args: tuple, kwargs: dict):
    """The keys of a multi-key call and its ``key_prefix``; None for keys we may not read."""
    keys = args[0] if args else kwargs.get("keys")
    if isinstance(keys, Mapping):
        keys = keys.keys()
    elif not isinstance(keys, Collection) or isinstance(keys, (str, bytes)):
        return None, None  # an iterator would be consumed
    position = _PREFIX_POSITION[command.method]
    prefix = args[position] if len(args) > position else kwargs.get("key_prefix")
    return keys, prefix


class Pylibmc(core.Library):
    name = "pylibmc"

    def server(self, instance, command, args, kwargs):
        try:
            return self._server(instance, command, args, kwargs)
        except Exception:
            log.debug("could not tell the server of pylibmc %s", command.method, exc_info=True)
            return None

    @staticmethod
    def _server(instance, command, args, kwargs):
        addresses = instance.addresses
        count = len(addresses)
        if count == 1:
            return _server(addresses[0])
        if not count:
            return None
        if command.method in _EVERY_SERVER:
            return core.Fanout(count)
        if command.keys is Keys.ONE:
            key = _key(args[0] if args else kwargs.get("key"))
            return None if key is None else _server(addresses[instance.hash(key)])
        keys, prefix = _multi_keys(command, args, kwargs)
        if keys is None:
            return None
        found = set()
        for key in keys:
            wire = _key(key, prefix)
            if wire is None:
                return None
            found.add(instance.hash(wire))
            if len(found) == count:
                break
        if len(found) == 1:
            return _server(addresses[found.pop()])
        return core.Fanout(len(found)) if found else None

    def query(self, instance, command, args, kwargs) -> str:
        # A multi-key call's keys as sent: with its own key_prefix.
        if command.method in _PREFIX_POSITION:
            keys, prefix = _multi_keys(command, args, kwargs)
            if keys is not None:
                prefix = prefix.encode("utf-8") if isinstance(prefix, str) else prefix
                return commands.query(command, (keys,), {}, prefix if isinstance(prefix, bytes) else b"")
        return super().query(instance, command, args, kwargs)

    def found(self, command, result):
        if command.method == "gets":  # (value, cas); a stored None has a cas
            return 0 if isinstance(result, tuple) and result[1:] == (None,) else 1
        return super().found(command, result)

    def quotes_key(self, exc: BaseException) -> bool:
        # "error 3 from memcached_get(<key>): CONNECTION FAILURE"
        return isinstance(exc, pylibmc.Error) and _QUOTED_KEY.match(str(exc)) is not None

    def redacted(self, message: str, keys_enabled: bool) -> str:
        return message if keys_enabled else redact_key(message)


# pylibmc's lead "error %d from %.32s(%.32s)": the key, cut to 32 bytes, in parentheses,
# then maybe ": " and libmemcached's message (which may hold parentheses of its own).
_QUOTED_KEY = re.compile(r"error -?\d+ from \w+\(")
_KEY_MAX = 32


def redact_key(message: str) -> str:
    """``message`` with the key that pylibmc's lead quotes replaced by ``REDACTED``."""
    lead = _QUOTED_KEY.match(message)
    if lead is None:
        return message
    start = lead.end()
    # The key's closing parenthesis comes at most 32 characters on, before ": " and
    # libmemcached's message (which may hold parentheses), or ends the message when there
    # is none. A key may hold ")" or "): " itself: the last such one is taken.
    window = range(start, min(len(message), start + _KEY_MAX + 1))
    closing = [i for i in window if message[i] == ")"]
    before_message = [i for i in closing if message.startswith(": ", i + 1)]
    at_end = [i for i in closing if i + 1 == len(message)]
    end = (before_message or at_end or [None])[-1]
    if end is None:  # not pylibmc's format after all: keep nothing after the lead
        return message[:start] + REDACTED + ")"
    return message[:start] + REDACTED + message[end:]


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


# ``delete_multi`` calls ``self.delete`` once per key (in C): those calls are part of its
# one span, not spans of their own, as every other multi-key call is one span.
_in_delete_multi: contextvars.ContextVar = contextvars.ContextVar("ddtrace_memcached_pylibmc_multi", default=False)


@wrapping.ours
def trace_delete(command, wrapped, instance, args, kwargs):
    """wrapt wrapper for ``delete``: no span of its own inside ``delete_multi``."""
    if _in_delete_multi.get():
        return wrapped(*args, **kwargs)
    return core.trace(LIBRARY, command, wrapped, instance, args, kwargs)


@wrapping.ours
def trace_delete_multi(command, wrapped, instance, args, kwargs):
    """wrapt wrapper for ``delete_multi``: one span, which its per-key deletes are part of."""
    token = _in_delete_multi.set(True)
    try:
        return core.trace(LIBRARY, command, wrapped, instance, args, kwargs)
    finally:
        _in_delete_multi.reset(token)


_WRAPPERS = {"delete": trace_delete, "delete_multi": trace_delete_multi}


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    for cmd in COMMANDS:
        special = _WRAPPERS.get(cmd.method)
        yield Client, cmd.method, partial(special, cmd) if special else partial(core.trace, LIBRARY, cmd)
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
