"""libmc: one span per call of a ``libmc.Client`` command, and of a ``ClientPool`` worker's.

libmc (Douban's C++ client) raises for nothing but a key that is not a ``str``: a failed
command returns False or None, and ``client.get_last_error()`` gives its code afterwards.
So each span reads that code when the call returns (reading it changes nothing) and is an
error span when it is not 0 (``libmc.MC_RETURN_<NAME>``, the message naming libmc's
``get_last_strerror()`` and what it means). Where libmc reports 0 although part of a call
was not served, the best signal it offers is used:

- a multi-key call leaves out keys it refuses (over 250 bytes, a space or a control
  character) and keys of a dead server, and reports 0 when another key was served: the
  keys are checked as libmc checks them, and each server's liveness is asked of
  ``get_realtime_host_by_key`` (see :func:`_routed`) before the call;
- ``version()``, ``stats()`` and ``flush_all()`` answer for the live servers only: the
  servers missing from their answer did not answer;
- a value it cannot encode (``set`` returns None) or one over its size limit (False) is
  not sent at all, and the code is still the previous call's: the span says so instead.

``quit()`` returns True whether a server was reached or not (documented).

The host is the server libmc routes the key to: ``get_host_by_key`` (pure: a hash), or,
for a client with ``failover=True``, ``get_realtime_host_by_key``, which walks to the next
live server. That walk tries to reconnect a dead server whose retry time has come, which
is why it is only ever asked before the call, for the keys the call sends: it is the walk
the command makes first, so libmc makes no extra attempt (the retry timeout, 5 s by
default, keeps the server from being tried again; with ``MC_RETRY_TIMEOUT`` set to 0 each
such call tries a dead server twice). A multi-key call names a host only when all its
keys go to one server, else none and the metric ``memcached.servers``.

Wrappers. libmc's methods are compiled (Cython): ``libmc.Client``, a Python subclass,
takes plain-function wrappers (a third of a wrapt ``FunctionWrapper``'s cost, which
matters here: ``get`` calls ``self.get_raw``, ``set`` ``self.set_raw``, ``get_list``
``self.get_multi`` and ``expire`` ``self.touch``, each a traced command too, part of the
outer call's span). ``get``'s inner ``get_raw`` counts its row: a stored ``None`` comes
back as ``None`` from ``get``, but is bytes in ``get_raw``. The workers a ``ClientPool``
hands out (``with pool.client() as mc``) are of a compiled class that cannot be changed:
``ClientPool.client`` hands out a traced proxy of the worker instead (:class:`TracedWorker`),
which ``ThreadedClient`` uses too. ``libmc.ClientUnsafe``, compiled and handed out by no
pool, is not traced.
"""

import contextlib
import logging
import re
from types import MethodType
from typing import Any
from typing import Callable
from typing import Dict
from typing import Iterator
from typing import Optional
from typing import Tuple

from ddtrace.trace import tracer
import libmc
import wrapt

from .. import commands
from .. import core
from .. import overrides
from .. import wrapping
from ..commands import NOT_FOUND_IF_FALSE
from ..commands import NOT_FOUND_IF_NONE
from ..commands import NOT_STORED_IF_FALSE
from ..commands import Arg
from ..commands import Command
from ..commands import Keys
from ..commands import Read
from ..commands import command
from ..records import record

log = logging.getLogger("ddtrace.contrib.memcached")

# libmc sends without waiting for replies per client (``Client(..., noreply=True)``), never
# per call: Libmc.noreply reads the client's setting; the argument is never passed.
_CLIENT_NOREPLY = Arg(None, "noreply")
_DCT = Arg(0, "dct")  # set_multi(dct, ...)

# Each ``*_multi`` method is reported as ``*_many``; ``get_raw``/``set_raw`` as the
# ``get``/``set`` they send, ``get_list`` as ``get_many``, ``expire`` as ``touch``.
COMMANDS = (
    # retrieval: None is a miss; get_raw gives (None, 0) on a miss, bytes (a stored None
    # too) on a hit; gets (value, cas)
    command("get", Keys.ONE, Read.VALUE, nests=True),  # calls self.get_raw
    command("get_raw", Keys.ONE, Read.VALUE, resource="get"),
    command("gets", Keys.ONE, Read.VALUE),
    command("get_multi", Keys.MANY, Read.MANY, resource="get_many"),
    command("get_list", Keys.MANY, Read.MANY, resource="get_many", nests=True),  # calls self.get_multi
    # storage: False with get_last_error() 0 is a "not stored" reply (see Libmc.failure)
    command("set", Keys.ONE, noreply=_CLIENT_NOREPLY, nests=True),  # calls self.set_raw
    command("set_raw", Keys.ONE, resource="set", noreply=_CLIENT_NOREPLY),
    command("set_multi", Keys.MAPPING, resource="set_many", key=_DCT, noreply=_CLIENT_NOREPLY),
    command("add", Keys.ONE, noreply=_CLIENT_NOREPLY, misses=NOT_STORED_IF_FALSE),
    command("replace", Keys.ONE, noreply=_CLIENT_NOREPLY, misses=NOT_STORED_IF_FALSE),
    command("append", Keys.ONE, noreply=_CLIENT_NOREPLY, misses=NOT_STORED_IF_FALSE),
    command("prepend", Keys.ONE, noreply=_CLIENT_NOREPLY, misses=NOT_STORED_IF_FALSE),
    command("append_multi", Keys.MANY, resource="append_many", noreply=_CLIENT_NOREPLY),
    command("prepend_multi", Keys.MANY, resource="prepend_many", noreply=_CLIENT_NOREPLY),
    # cas returns False for a stale token (EXISTS) and for a missing key (NOT_FOUND) alike
    command("cas", Keys.ONE, noreply=_CLIENT_NOREPLY),
    # deletion, arithmetic, touch; delete returns True whether the key was there or not
    command("delete", Keys.ONE, noreply=_CLIENT_NOREPLY),
    command("delete_multi", Keys.MANY, resource="delete_many", noreply=_CLIENT_NOREPLY),
    command("incr", Keys.ONE, noreply=_CLIENT_NOREPLY, misses=NOT_FOUND_IF_NONE),
    command("decr", Keys.ONE, noreply=_CLIENT_NOREPLY, misses=NOT_FOUND_IF_NONE),
    command("touch", Keys.ONE, noreply=_CLIENT_NOREPLY, misses=NOT_FOUND_IF_FALSE),
    command("expire", Keys.ONE, resource="touch", noreply=_CLIENT_NOREPLY, misses=NOT_FOUND_IF_FALSE, nests=True),
    # every server
    command("version"),
    command("stats"),
    command("flush_all"),
    command("quit"),
)
"""Every method of ``libmc.Client`` that talks to a server."""

APP_COMMANDS = COMMANDS
"""What the app calls, in every release: the README's commands table is generated from it."""

_STORES = frozenset(("set", "set_raw", "add", "replace", "append", "prepend", "cas", "append_multi", "prepend_multi"))
_SETS = frozenset(("set", "set_raw", "set_multi"))
_BROADCASTS = frozenset(("version", "stats", "flush_all"))

# --- libmc's codes ------------------------------------------------------------------------

OK = libmc.MC_RETURN_OK
CONN_POLL_ERR = libmc.MC_RETURN_CONN_POLL_ERR  # what quit() expects: the server hung up
INVALID_KEY = "libmc.MC_RETURN_INVALID_KEY_ERR"
SERVER_ERROR = "libmc.MC_RETURN_MC_SERVER_ERR"
NOT_SENT = "libmc.NotSent"
"""``error.type`` of a command libmc dropped before sending, reporting no code of its own."""
TOO_LARGE = (
    "libmc sent nothing: the value is over its size limit (10 MB; 1 MB under a key over 200 bytes), or a "
    "value of the batch could not be encoded"
)

_MEANINGS = {
    "MC_RETURN_INVALID_KEY_ERR": "a key is over 250 bytes or holds a space, \\r, \\n or NUL: libmc sent nothing for it",
    "MC_RETURN_PROGRAMMING_ERR": "the server answered CLIENT_ERROR (incr or decr of a value that is not a number), "
    "or libmc was misused; libmc closed the connection",
    "MC_RETURN_MC_SERVER_ERR": "no live server took the command (refused, unreachable, or marked dead until its "
    "retry time), or the server answered SERVER_ERROR",
    "MC_RETURN_RECV_ERR": "the connection failed or was closed while reading the answer",
    "MC_RETURN_SEND_ERR": "sending the command failed",
    "MC_RETURN_CONN_POLL_ERR": "the connection failed or hung up while waiting",
    "MC_RETURN_POLL_ERR": "polling the connections failed",
    "MC_RETURN_POLL_TIMEOUT_ERR": "no answer within the poll timeout (MC_POLL_TIMEOUT); libmc closed the connection",
    "MC_RETURN_INCOMPLETE_BUFFER_ERR": "the answer was cut short",
}
_NAMES: Dict[int, str] = {getattr(libmc, name): name for name in _MEANINGS if hasattr(libmc, name)}


def code_failure(instance: Any, code: int) -> core.Failure:
    """``(error.type, error.message)`` of libmc's ``code``: ``libmc.MC_RETURN_<NAME>``, and
    ``get_last_strerror()`` (read while the code is the same) with its code and meaning."""
    name = _NAMES.get(code)
    strerror = instance.get_last_strerror() or "error"
    if name is None:
        return "libmc.MC_RETURN_%d" % code, "%s (%d)" % (strerror, code)
    return "libmc." + name, "%s (%d): %s" % (strerror, code, _MEANINGS[name])


# --- the client's settings and its servers -----------------------------------------------


@record
class Settings:
    noreply: bool
    failover: bool
    prefix: bytes
    encoding: str
    do_split: bool
    comp_threshold: int


_DEFAULTS = Settings(False, False, b"", "utf8", True, 0)
_SETTINGS_ATTR = "_ddtrace_memcached_libmc_settings"


def settings(instance: Any) -> Settings:
    """The client's constructor settings, from ``_args()`` (servers, do_split,
    comp_threshold, noreply, prefix, hash_fn, failover, encoding): fixed for its lifetime,
    so kept on a ``Client``; a pool's worker has no ``__dict__`` and reads them each call."""
    found = getattr(instance, _SETTINGS_ATTR, None)
    if type(found) is Settings:
        return found
    try:
        args = instance._args()
        found = Settings(bool(args[3]), bool(args[6]), args[4] or b"", args[7] or "utf8", bool(args[1]), args[2])
    except Exception:  # another libmc: its defaults
        log.debug("could not read the settings of a libmc client", exc_info=True)
        found = _DEFAULTS
    try:
        vars(instance)[_SETTINGS_ATTR] = found
    except TypeError:  # a pool's worker
        pass
    return found


DEFAULT_PORT = 11211
_SPECS_MAX = 1024  # for processes that see many short-lived servers
_SPECS: Dict[str, Tuple[str, Any]] = {}
_NAME_MAPS: Dict[tuple, Dict[str, str]] = {}


def parse(spec: str) -> Tuple[str, Any]:
    """``(name, address)`` of a libmc server spec, as libmc reads it: ``host[:port][ alias]``
    or ``/socket/path[ alias]``. The name is what ``get_host_by_key`` returns (the alias,
    else ``host:port``, else the path); the address is ``(host, port)`` or the path."""
    found = _SPECS.get(spec)
    if found is None:
        parts = spec.split(" ")
        where, alias = parts[0], parts[1] if len(parts) > 1 else None
        if where.startswith("/"):
            found = (alias or where, where)
        else:
            host_port = where.split(":")
            port = int(host_port[1]) if len(host_port) > 1 else DEFAULT_PORT
            found = (alias or "%s:%d" % (host_port[0], port), (host_port[0], port))
        if len(_SPECS) >= _SPECS_MAX:
            _SPECS.clear()
        _SPECS[spec] = found
    return found


def name_map(servers: list) -> Dict[str, str]:
    """``{name: spec}`` of a client's servers: the spec of each name ``get_host_by_key`` gives."""
    key = tuple(servers)
    found = _NAME_MAPS.get(key)
    if found is None:
        if len(_NAME_MAPS) >= _SPECS_MAX:
            _NAME_MAPS.clear()
        found = _NAME_MAPS[key] = {parse(spec)[0]: spec for spec in servers}
    return found


# --- keys as libmc checks them --------------------------------------------------------------

MAX_KEY_LENGTH = 250
_BAD_KEY_CHAR = re.compile("[ \r\n\x00]")


def valid(key: Any, config: Settings) -> bool:
    """Whether libmc sends ``key`` (``utility::isValidKey`` on the key as sent: prefixed,
    encoded): at most 250 bytes, without a space, ``\\r``, ``\\n`` or NUL."""
    if not isinstance(key, str):
        return False
    if _BAD_KEY_CHAR.search(key) is not None or _BAD_KEY_CHAR.search(config.prefix.decode("latin-1")) is not None:
        return False
    length = len(key) if key.isascii() else len(key.encode(config.encoding))
    return length + len(config.prefix) <= MAX_KEY_LENGTH


def invalid_count(keys: Any, config: Settings) -> int:
    """How many of ``keys`` libmc refuses: one pass over them all in C, then one key at a
    time only when that finds a suspect."""
    try:
        joined = "\x01".join(keys)
    except TypeError:  # not all str: libmc raises TypeError for it
        return 0
    limit = MAX_KEY_LENGTH - len(config.prefix)
    if _BAD_KEY_CHAR.search(joined) is None and not config.prefix and joined.isascii():
        if not keys or max(map(len, keys)) <= limit:
            return 0
    return sum(1 for key in keys if not valid(key, config))


CHUNK = 1_000_000
"""libmc splits a value over this many bytes into chunks stored under other keys (``do_split``)."""
_COMPRESS = Arg(3, "compress", True)  # set(key, val, time=0, compress=True)


def refused(instance: Any, cmd: Command, args: tuple, kwargs: dict) -> bool:
    """Whether libmc refuses a set's bytes value over a chunk before sending (``_set``: over
    10 chunks, or over one under a key over 200 bytes), returning False and leaving the
    previous call's code. Known for a value sent as it is (``set_raw``, or ``set`` without
    compression); :meth:`Libmc.failure` catches the rest when that code is 0."""
    value = args[1]
    config = settings(instance)
    if not config.do_split:
        return False  # sent as one item: the server refuses it, with a code
    if cmd.method == "set" and commands.argument(args, kwargs, _COMPRESS) and 0 < config.comp_threshold < len(value):
        return False  # compressed first: its size is not known here
    key = commands.key_of(cmd, args, kwargs)
    key_length = len(key.encode(config.encoding)) + len(config.prefix) if isinstance(key, str) else 0
    return len(value) > 10 * CHUNK or key_length > 200


# --- which server ---------------------------------------------------------------------------


_NO_KEY, _ONE_KEY = Keys.NONE, Keys.ONE  # enum members are slower to reach than module globals


class Libmc(core.Library):
    """A call's server is the client's spec of it (one of ``client.servers``, as given), which
    :meth:`address` reads once per spec; a :class:`core.Fanout`; or None."""

    inner = False  # hooks inside only under get, get_list, set and expire (Command.nests)

    def server(self, call, args, kwargs):
        try:
            cmd = call.command
            servers = call.instance.servers
            if cmd.keys is _ONE_KEY:
                if len(args) > 1 and type(args[1]) is bytes and len(args[1]) > CHUNK and cmd.method in _SETS:
                    if refused(call.instance, cmd, args, kwargs):
                        call.failed(NOT_SENT, TOO_LARGE)
                if len(servers) == 1:
                    return servers[0]
                return _one_key_server(call.instance, servers, commands.key_of(cmd, args, kwargs))
            if cmd.keys is _NO_KEY:  # every server
                return servers[0] if len(servers) == 1 else core.Fanout(len(servers))
            return _many_keys_server(call, servers, args, kwargs)
        except Exception:
            log.debug("could not tell the server of libmc %s", call.command.method, exc_info=True)
            return None

    def address(self, server):
        return parse(server)[1]

    def noreply(self, call, args, kwargs):
        config = getattr(call.instance, _SETTINGS_ATTR, None)
        return (config if type(config) is Settings else settings(call.instance)).noreply

    def key_prefix(self, instance):
        return settings(instance).prefix

    def reply(self, call, result):
        return commands.reply(call.command, result) if call.command.misses else None  # most writes have none

    def found(self, call, result):
        method = call.command.method
        if method == "get_raw":  # (value, flags): a stored None is bytes here
            return 0 if result[0] is None else 1
        if method == "get_list":  # a pool worker's: in key order, None for a miss (or a stored None)
            return sum(1 for value in result if value is not None)
        return super().found(call, result)

    def failure(self, call, result):
        if result is None and call.command.method in _STORES:
            return NOT_SENT, (
                "libmc sent nothing: it could not encode the value (it warned), or the value is too large for "
                "append_multi/prepend_multi"
            )
        code = call.instance.get_last_error()
        if code == OK:
            method = call.command.method
            if result is False and method in _SETS:
                # A set is stored or fails with a code; False with 0 is libmc's own refusal,
                # before sending, which leaves the previous call's code (0 here): see
                # refused(); set_multi also refuses a batch with a value it cannot encode.
                return NOT_SENT, TOO_LARGE
            if method in _BROADCASTS:
                down = _unanswered(call.instance, method, result)
                if down:
                    return SERVER_ERROR, "server_error: %s did not answer (libmc answered for the others, with 0)" % (
                        ", ".join(down)
                    )
            return None
        server = call.server
        if type(server) is core.Fanout and server == 0:
            return None  # no key: nothing was sent, whatever libmc reports
        if code == CONN_POLL_ERR and call.command.method == "quit":
            return None  # the server closed the connection, as asked
        return code_failure(call.instance, code)


def _one_key_server(instance, servers, key):
    """The spec of the server a key is sent to: its server on the hash ring, or with
    ``failover`` the live server libmc walks to (no live server: the key's own server)."""
    name = None
    config = settings(instance)
    if config.failover and valid(key, config):
        name = instance.get_realtime_host_by_key(key)
    if name is None:
        name = instance.get_host_by_key(key)
    return name_map(servers).get(name)


def _many_keys_server(call, servers, args, kwargs):
    """The server of a multi-key call: its one server, or a :class:`core.Fanout`. Before the
    call, tells it the keys libmc will leave out (refused ones, a dead server's): libmc
    reports them only when no key at all was sent."""
    instance, cmd = call.instance, call.command
    keys = commands.keys_of(cmd, args, kwargs)
    if keys is None:  # an iterator: reading it would consume the app's keys
        return None
    if not keys:
        return core.Fanout(0)  # nothing to send (libmc reports server_error for it)
    config = settings(instance)
    invalid = invalid_count(keys, config)
    if invalid:
        call.failed(
            INVALID_KEY,
            "invalid_key_error: %d of %d keys %s: libmc sent nothing for %s (get_last_error() says so only when "
            "no key was sent)"
            % (
                invalid,
                len(keys),
                "is over 250 bytes or holds a space, \\r, \\n or NUL"
                if invalid == 1
                else "are over 250 bytes or hold a space, \\r, \\n or NUL",
                "it" if invalid == 1 else "them",
            ),
        )
    if len(servers) == 1:
        return servers[0]
    if invalid:
        keys = [key for key in keys if valid(key, config)]
    names, dead = _routed(instance, keys, len(servers), config.failover)
    if dead:
        call.failed(
            SERVER_ERROR,
            "server_error: %s down: libmc sent nothing for %s keys (get_last_error() says so only when no server "
            "answered)"
            % (", ".join(dead) + (" is" if len(dead) == 1 else " are"), "its" if len(dead) == 1 else "their"),
        )
    if len(names) == 1:
        return name_map(servers).get(names.pop())
    return core.Fanout(len(names))


def _routed(instance, keys, count, failover):
    """``(names of the servers the keys go to, [dead servers])``, asked before the call.

    The ring gives each key's server (``get_host_by_key``, a hash; the scan stops once every
    server is seen); one key per server then asks ``get_realtime_host_by_key``, which tells
    whether that server is alive as the command's own routing is about to (the same
    connection attempt, made once: see the module's docstring). With ``failover``, the keys
    of a dead server go where libmc walks each of them, asked key by key.
    """
    first: Dict[str, Any] = {}
    for key in keys:
        name = instance.get_host_by_key(key)
        if name not in first:
            first[name] = key
            if len(first) == count:
                break
    names, dead = set(), []
    for name, key in first.items():
        if instance.get_realtime_host_by_key(key) == name:
            names.add(name)
        else:
            dead.append(name)
    if failover and dead:
        moved = [instance.get_realtime_host_by_key(key) for key in keys if instance.get_host_by_key(key) in dead]
        names.update(name for name in moved if name is not None)
        dead = dead if None in moved else []
    return names, sorted(dead)


def _unanswered(instance, method, result):
    """The servers missing from the answer of a broadcast (version, stats, flush_all)."""
    names = name_map(instance.servers)
    if method == "stats":
        answered = {name for name, stats in result.items() if stats}
    else:
        answered = set(result)
    return sorted(name for name in names if name not in answered)


LIBRARY = Libmc()


# --- the wrappers: plain functions on libmc.Client ---------------------------------------------


def _count_get(call, result):
    """Inside ``get``: ``get_raw``'s result tells a hit (a stored None too) from a miss."""
    if call.command.method == "get":
        call.rows = 0 if result[0] is None else 1


def _count_get_list(call, result):
    """Inside ``get_list``: ``get_multi``'s dict holds the keys found (stored Nones too)."""
    if call.command.method == "get_list":
        call.rows = len(result)


_INNER: Dict[str, Optional[Callable]] = {
    "get_raw": _count_get,
    "get_multi": _count_get_list,
    "set_raw": None,
    "touch": None,
}
"""The commands that other commands call (``get``, ``get_list``, ``set``, ``expire``), and
what they tell the outer command's call (its rows)."""


def traced(cmd: Command) -> wrapping.Hook:
    """The wrapper of ``cmd`` on ``libmc.Client``: :func:`core.trace` for a call of the app;
    inside another traced command of the same client (``get`` calls ``get_raw``), part of
    that command's span. A plain function: see the module's docstring."""
    inner = cmd.method in _INNER
    count = _INNER.get(cmd.method)

    def make(original: Callable) -> Callable:
        def command(self, *args, **kwargs):
            try:
                if not tracer.enabled:
                    return original(self, *args, **kwargs)
                if inner:
                    call = core.current()
                    if call is not None and call.instance is self and call.library is LIBRARY:
                        result = original(self, *args, **kwargs)
                        if count is not None:
                            try:
                                count(call, result)
                            except Exception:
                                log.debug("could not count the rows of libmc %s", cmd.method, exc_info=True)
                        return result
                return core.trace(LIBRARY, cmd, MethodType(original, self), self, args, kwargs)
            finally:
                args = kwargs = result = None  # noqa: F841 (see core.trace)

        return command

    return wrapping.Hook(make)


_TRACED = {cmd.method: traced(cmd) for cmd in COMMANDS}


# --- pools ----------------------------------------------------------------------------------


def _worker_command(cmd: Command) -> Callable:
    method = cmd.method

    def command(self, *args, **kwargs):
        try:
            worker = self.__wrapped__
            if not tracer.enabled:
                return getattr(worker, method)(*args, **kwargs)
            return core.trace(LIBRARY, cmd, getattr(worker, method), worker, args, kwargs)
        finally:
            args = kwargs = None

    command.__name__ = command.__qualname__ = method
    return command


class TracedWorker(wrapt.ObjectProxy):
    """A pool's worker (``libmc._client.PyPoolClient``, a compiled class whose methods cannot
    be wrapped), as ``ClientPool.client`` hands it out while patched: its commands are traced,
    everything else is the worker's (``isinstance`` too; ``type()`` is this class). Its
    spans' client is the worker itself; the pool's override covers them (:func:`lend`)."""


for _cmd in COMMANDS:
    setattr(TracedWorker, _cmd.method, _worker_command(_cmd))


@wrapping.ours
def lend(wrapped, instance, args, kwargs):
    """wrapt wrapper for ``ClientPool.client``: ``with pool.client() as mc`` gets a
    :class:`TracedWorker`, under the pool's override and Pin."""
    return _lent(wrapped(*args, **kwargs), instance)


@contextlib.contextmanager
def _lent(checkout, pool) -> Iterator[Any]:
    with checkout as worker, overrides.covering(pool):
        yield TracedWorker(worker)


@wrapping.ours
def threaded_attribute(wrapped, instance, args, kwargs):
    """wrapt wrapper for ``ThreadedClient.__getattr__``, which answers each command with a
    function that borrows a worker of its pool: with an override or Pin on the
    ThreadedClient, the function runs under it."""
    attribute = wrapped(*args, **kwargs)
    try:
        own = vars(instance)
        if callable(attribute) and (overrides.OVERRIDE_ATTR in own or overrides.PIN_ATTR in own):
            return _covered(attribute, instance)
    except Exception:
        log.debug("could not cover a libmc ThreadedClient's command", exc_info=True)
    return attribute


def _covered(function: Callable, client: Any) -> Callable:
    def covered(*args, **kwargs):
        try:
            with overrides.covering(client):
                return function(*args, **kwargs)
        finally:
            args = kwargs = None

    return covered


# --- patching -------------------------------------------------------------------------------


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    for cmd in COMMANDS:
        yield libmc.Client, cmd.method, _TRACED[cmd.method]
    yield libmc.ClientPool, "client", lend
    yield libmc.ThreadedClient, "__getattr__", threaded_attribute


def patch() -> None:
    wrapping.wrap_all(targets())


def unpatch() -> None:
    wrapping.unwrap_all(targets())
