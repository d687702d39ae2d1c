"""python-memcached (``memcache``): one span per ``Client`` command.

python-memcached has no per-server function: a command picks its server inside the call
(``Client._get_server``, which connects, marks dead servers and fails over), and the
multi-key commands write to every server and then read from every server, inline. So:

- the span covers the public method; its host is the server ``_get_server`` returned
  (seen by wrapping it, never by calling it), or the client's only server;
- ``get_multi``/``set_multi``/``delete_multi`` make one span, which names a host only
  when every key went to the same server (``_map_and_prefix_keys``'s answer);
  ``get_stats``/``flush_all``/``quit_all`` name one only for a client of one server;
- failures it swallows (it returns 0/None instead of raising) make the span an error:
  ``_Host.mark_dead`` (a socket failure, with its reason) or ``_get_server`` finding no
  live server (a server marked dead earlier, skipped without I/O);
- ``db.row_count`` of ``get``/``gets`` counts the values received (``_recv_value``),
  as a stored ``None`` and a dead server both return None.

``Client`` is a ``threading.local``: its Pin and override are shared across threads
(:func:`overrides.share_across_threads`).
"""

import logging
import re
import socket
from typing import Any
from typing import Iterator

import memcache

from .. import core
from .. import overrides
from .. import wrapping
from ..commands import EXISTS
from ..commands import NOT_FOUND
from ..commands import NOT_FOUND_IF_NONE
from ..commands import NOT_STORED_IF_FALSE
from ..commands import Arg
from ..commands import Keys
from ..commands import Read
from ..commands import command

log = logging.getLogger("ddtrace.contrib.memcached")

# Where each command's ``noreply`` sits.
_NOREPLY_1, _NOREPLY_2, _NOREPLY_3, _NOREPLY_4 = (Arg(i, "noreply") for i in (1, 2, 3, 4))

# A failure it swallows returns 0 (an int), never False: see the hooks below.
COMMANDS = (
    command("set", Keys.ONE, noreply=_NOREPLY_4),
    command("add", Keys.ONE, noreply=_NOREPLY_4, misses=NOT_STORED_IF_FALSE),
    command("replace", Keys.ONE, noreply=_NOREPLY_4, misses=NOT_STORED_IF_FALSE),
    command("append", Keys.ONE, noreply=_NOREPLY_4, misses=NOT_STORED_IF_FALSE),
    command("prepend", Keys.ONE, noreply=_NOREPLY_4, misses=NOT_STORED_IF_FALSE),
    command("cas", Keys.ONE, noreply=_NOREPLY_4, misses=((False, EXISTS),)),
    command("set_multi", Keys.MAPPING, resource="set_many", noreply=_NOREPLY_4),
    command("get", Keys.ONE, Read.VALUE),
    command("gets", Keys.ONE, Read.VALUE),
    command("get_multi", Keys.MANY, Read.MANY, resource="get_many"),
    # delete returns 1 whether the key was there or not: no miss to tell
    command("delete", Keys.ONE, noreply=_NOREPLY_1),
    command("delete_multi", Keys.MANY, resource="delete_many", noreply=_NOREPLY_3),
    command("incr", Keys.ONE, noreply=_NOREPLY_2, misses=NOT_FOUND_IF_NONE),
    command("decr", Keys.ONE, noreply=_NOREPLY_2, misses=NOT_FOUND_IF_NONE),
    command("touch", Keys.ONE, noreply=_NOREPLY_2, misses=((0, NOT_FOUND),)),
    command("get_stats", Keys.ARGS, resource="stats"),
    command("get_slab_stats", resource="stats"),
    command("get_slabs", resource="stats"),
    command("flush_all"),
    command("quit_all", resource="quit"),
)
"""Every method of ``memcache.Client`` that talks to a server (absent ones are skipped)."""

APP_COMMANDS = COMMANDS
"""What the app calls, in every release: the README's commands table is generated from it."""

_MULTI = frozenset(("get_multi", "set_multi", "delete_multi"))
_COUNTED = frozenset(("get", "gets"))

MARKED_DEAD = "memcache.MarkedDead"
"""``error.type`` of a span whose server failed and was marked dead (the message says why)."""
NO_LIVE_SERVER = "memcache.NoLiveServer"
"""``error.type`` of a span whose key found no live server (all marked dead): nothing was sent."""


def address(host: Any) -> Any:
    """``(ip, port)`` of a TCP ``_Host``, the path of a unix one."""
    if getattr(host, "family", None) == socket.AF_UNIX:
        return host.address
    return (host.ip, host.port)


class Memcache(core.Library):
    key_errors = (memcache.Client.MemcachedKeyError,)
    key_quote = re.compile(r"\(key=(.*?)\)?\Z", re.S)  # "Control/space characters not allowed (key=b'...')"

    def server(self, call, args, kwargs):
        servers = getattr(call.instance, "servers", None)
        if servers and len(servers) == 1:
            return address(servers[0])
        if servers and (call.command.keys is Keys.NONE or call.command.keys is Keys.ARGS):
            return core.Fanout(len(servers))  # stats, flush_all, quit: every server
        return None  # several servers: told by the hooks once the client picks them

    def found(self, call, result):
        if call.command.method in _COUNTED:
            return 0  # no value received (_recv_value counts them): whatever get returned
        return super().found(call, result)


LIBRARY = Memcache()


def on_get_server(call, instance, args, kwargs, result):
    """After ``Client._get_server``: the server a single-key command uses, or none alive."""
    host = result[0]
    if host is None:
        call.failed(NO_LIVE_SERVER, "no live memcached server for the key")
    elif call.command.method not in _MULTI:
        call.at(address(host))


def on_map_keys(call, instance, args, kwargs, result):
    """After ``Client._map_and_prefix_keys``: the servers of a multi-key command's keys."""
    hosts = list(result[0])
    if len(hosts) == 1:
        call.at(address(hosts[0]))
    elif len(hosts) > 1:
        call.at(core.Fanout(len(hosts)))


def on_mark_dead(call, instance, args, kwargs):
    """Before ``_Host.mark_dead``: a socket failure that the command is about to swallow."""
    reason = args[0] if args else kwargs.get("reason")
    host, port = core.host_and_port(address(instance))
    server = host if port is None else "%s:%s" % (host, port)
    call.failed(MARKED_DEAD, "%s marked dead: %s" % (server, reason), latest=True)
    if call.command.method in _COUNTED:
        call.rows = 0  # a value read before the failure is not returned


def on_value(call, instance, args, kwargs, result):
    """After ``Client._recv_value``: runs once per value received, never on a miss."""
    if call.command.method in _COUNTED:
        call.count()


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    for cmd in COMMANDS:
        yield memcache.Client, cmd.method, core.as_function(core.trace, LIBRARY, cmd)
    yield memcache.Client, "_get_server", core.hook(LIBRARY, after=on_get_server)
    yield memcache.Client, "_map_and_prefix_keys", core.hook(LIBRARY, after=on_map_keys)
    yield memcache.Client, "_recv_value", core.hook(LIBRARY, after=on_value)
    yield memcache._Host, "mark_dead", core.hook(LIBRARY, before=on_mark_dead)


def patch() -> None:
    wrapping.wrap_all(targets())
    overrides.share_across_threads(memcache.Client)


def unpatch() -> None:
    wrapping.unwrap_all(targets())
    overrides.unshare_across_threads(memcache.Client)
